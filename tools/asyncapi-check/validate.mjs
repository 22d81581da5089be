// Validates an AsyncAPI document with the official parser (@asyncapi/parser).
// Usage: node validate.mjs <asyncapi.json>. Prints every diagnostic; exits 1 when any
// has error severity (0), 2 when the file cannot be read, 0 otherwise.
import { readFile } from 'node:fs/promises';
import { Parser, DiagnosticSeverity } from '@asyncapi/parser';

const path = process.argv[2];
if (!path) {
  console.error('usage: node validate.mjs <asyncapi.json>');
  process.exit(2);
}
let text;
try {
  text = await readFile(path, 'utf8');
} catch (err) {
  console.error(`cannot read ${path}: ${err.code ?? err}`);
  process.exit(2);
}
const parser = new Parser();
const { document, diagnostics } = await parser.parse(text, { source: path });
const names = { 0: 'error', 1: 'warning', 2: 'info', 3: 'hint' };
for (const d of diagnostics) {
  console.log(`${names[d.severity] ?? d.severity} ${d.code} at ${(d.path ?? []).join('.') || '/'}: ${d.message}`);
}
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
if (errors.length > 0 || !document) {
  console.log(`INVALID: ${errors.length} error(s)`);
  process.exit(1);
}
console.log(`VALID: ${document.operations().length} operations, ${document.channels().length} channels, ` +
            `${document.components().schemas().length} component schemas`);
