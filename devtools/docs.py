"""Generates the published contracts: docs/events/<topic>.json (JSON Schema of each
payload), docs/events/notes.schema.json, docs/events/asyncapi.json (AsyncAPI 3.0 from
the topology in shared/topology.py), and the README's settings and topic tables.
`make docs` runs it; tests fail when the files are stale."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic.json_schema import models_json_schema

from shared.contracts.events import TOPIC_MODELS, Event, Topic
from shared.contracts.notes import ClinicalNotes
from shared.envelope import SPECVERSION, ce_type
from shared.topology import SERVICES, TOPIC_SUMMARIES, ServiceTopology, consumers_of, producers_of

ROOT = Path(__file__).resolve().parents[1]
EVENTS_DIR = ROOT / "docs" / "events"
SCHEMA_REF = "#/components/schemas/{model}"
KAFKA_BINDING_VERSION = "0.5.0"

HEADERS_SCHEMA = {
    "type": "object",
    "description": "CloudEvents 1.0 binary-mode attributes and the W3C trace context, as Kafka record headers.",
    "required": ["ce_id", "ce_type", "ce_source", "ce_time", "ce_specversion", "traceparent"],
    "properties": {
        "ce_id": {"type": "string"}, "ce_type": {"type": "string"},
        "ce_source": {"type": "string", "description": "the producing service"},
        "ce_time": {"type": "string", "format": "date-time"}, "ce_specversion": {"const": SPECVERSION},
        "ce_subject": {"type": "string", "description": "session id"},
        "content-type": {"const": "application/json"}, "traceparent": {"type": "string"},
    },
}


def event_schemas() -> dict[str, dict]:
    return {topic.value: model.model_json_schema() for topic, model in TOPIC_MODELS.items()}


def component_schemas() -> dict[str, dict]:
    """Every payload model and every model they reference, flat, with $refs into
    #/components/schemas (pydantic would otherwise nest them under each payload's $defs)."""
    _, definitions = models_json_schema([(model, "validation") for model in TOPIC_MODELS.values()],
                                        ref_template=SCHEMA_REF)
    schemas = dict(sorted(definitions["$defs"].items()))
    schemas["CloudEventHeaders"] = HEADERS_SCHEMA
    return schemas


def channel_id(topic: Topic) -> str:
    return topic.value.replace(".", "_")


def operation_id(service: ServiceTopology, action: str, topic: Topic) -> str:
    return f"{service.name}_{action}_{channel_id(topic)}"


def asyncapi_message(topic: Topic, model: type[Event]) -> dict:
    return {
        "name": model.__name__, "title": ce_type(topic), "summary": TOPIC_SUMMARIES[topic],
        "contentType": "application/json",
        "headers": {"$ref": "#/components/schemas/CloudEventHeaders"},
        "payload": {"$ref": SCHEMA_REF.format(model=model.__name__)},
        "bindings": {"kafka": {"key": {"type": "string", "description": "session id"},
                               "bindingVersion": KAFKA_BINDING_VERSION}},
    }


def asyncapi_operation(service: ServiceTopology, action: str, topic: Topic) -> dict:
    channel, message = channel_id(topic), service.payload(topic).__name__
    verb = "consumes" if action == "receive" else "produces"
    operation = {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "messages": [{"$ref": f"#/channels/{channel}/messages/{message}"}],
        "summary": f"{service.name} {verb} {topic.value}",
        "tags": [{"name": service.name}],
    }
    if action == "receive":
        if service.group:
            operation["description"] = f"Consumer group `{service.group}`: one replica handles each record."
            operation["bindings"] = {"kafka": {"groupId": {"type": "string", "enum": [service.group]},
                                               "bindingVersion": KAFKA_BINDING_VERSION}}
        else:
            operation["description"] = "No consumer group: every replica reads every record."
    return operation


def asyncapi() -> dict:
    """AsyncAPI 3.0 from shared.topology: a channel per topic, an operation per (service,
    topic, send|receive), and components holding every message and schema they reference."""
    channels, messages, operations = {}, {}, {}
    for topic, model in TOPIC_MODELS.items():
        name = model.__name__
        messages[name] = asyncapi_message(topic, model)
        channels[channel_id(topic)] = {"address": topic.value, "description": TOPIC_SUMMARIES[topic],
                                       "messages": {name: {"$ref": f"#/components/messages/{name}"}}}
    for service in SERVICES.values():
        for action, topics in (("receive", service.consumes), ("send", service.produces)):
            for topic in topics:
                operations[operation_id(service, action, topic)] = asyncapi_operation(service, action, topic)
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "TherapyBridge events", "version": "1.0.0",
                 "description": "CloudEvents 1.0 binary mode over Kafka; key = session id. Every consumer writes "
                                "records it rejects to `<topic>.dlq`. Generated from shared/topology.py "
                                "by `make docs`.",
                 "tags": [{"name": s.name, "description": s.summary} for s in SERVICES.values()]},
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": component_schemas(), "messages": messages},
    }


def generate() -> dict[Path, str]:
    files = {EVENTS_DIR / f"{topic}.json": json.dumps(schema, indent=2, sort_keys=True) + "\n"
             for topic, schema in event_schemas().items()}
    files[EVENTS_DIR / "notes.schema.json"] = json.dumps(ClinicalNotes.model_json_schema(), indent=2, sort_keys=True) + "\n"
    files[EVENTS_DIR / "asyncapi.json"] = json.dumps(asyncapi(), indent=2, sort_keys=True) + "\n"
    return files


README = ROOT / "README.md"
SETTINGS_MARKERS = ("<!-- settings:start -->", "<!-- settings:end -->")
TOPICS_MARKERS = ("<!-- topics:start -->", "<!-- topics:end -->")
COMMON_FIELDS = {"schema_version", "session_id"}  # every payload has them; the table lists the rest


def replace_between(text: str, markers: tuple[str, str], body: str) -> str:
    start, end = markers
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def readme_with_settings(readme: str) -> str:
    """The README with its settings table regenerated from shared.settings."""
    from shared.settings import settings_markdown

    return replace_between(readme, SETTINGS_MARKERS, settings_markdown())


def consumer_label(service: ServiceTopology) -> str:
    return service.name if service.group == service.name else f"{service.name} (group: {service.group or 'none'})"


def topics_markdown() -> str:
    """The README's topic table, one row per topic, from shared.topology."""
    rows = ["| topic | producers | consumers | payload (besides session_id, schema_version) | what |",
            "|---|---|---|---|---|"]
    for topic, model in TOPIC_MODELS.items():
        fields = ", ".join(f for f in model.model_fields if f not in COMMON_FIELDS) or "nothing else"
        producers = ", ".join(s.name for s in producers_of(topic)) or "nobody"
        consumers = ", ".join(consumer_label(s) for s in consumers_of(topic)) or "other systems"
        payload = f"[{model.__name__}](docs/events/{topic.value}.json): {fields}"
        rows.append(f"| `{topic.value}` | {producers} | {consumers} | {payload} | {TOPIC_SUMMARIES[topic]} |")
    rows.append("| `<topic>.dlq` | every consumer | operators | the original record + `dlq_error_kind`, "
                "`dlq_error_message`, `dlq_service` headers | A record its consumer rejected or kept failing on. |")
    rows += ["", "Generated from `shared/topology.py` by `make docs`; the AsyncAPI document has one operation per "
                 "(service, topic, send or receive)."]
    return "\n".join(rows)


def readme_with_topics(readme: str) -> str:
    return replace_between(readme, TOPICS_MARKERS, topics_markdown())


def current_readme(readme: str) -> str:
    return readme_with_topics(readme_with_settings(readme))


def write() -> None:
    EVENTS_DIR.mkdir(parents=True, exist_ok=True)
    files = generate()
    for path, content in files.items():
        path.write_text(content)
    README.write_text(current_readme(README.read_text()))
    print(f"wrote {len(files)} files to {EVENTS_DIR} and the README's settings and topic tables")


if __name__ == "__main__":
    write()
