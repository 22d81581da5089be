"""Development-only tools: the local stack behind `make run`, the local Tansu broker and
the generator of docs/events and the README's generated tables. Not part of the runtime
package, so the container image does not ship them."""
