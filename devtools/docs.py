"""Generates the published contracts: docs/events/<topic>.json (JSON Schema of each
payload), docs/events/notes.schema.json, docs/events/asyncapi.json, and the README's
settings table. `make docs` runs it; a test fails when the files are stale."""

from __future__ import annotations

import json
from pathlib import Path

from shared.contracts.events import TOPIC_MODELS, Topic
from shared.contracts.notes import ClinicalNotes
from shared.envelope import SPECVERSION, ce_type

ROOT = Path(__file__).resolve().parents[1]
EVENTS_DIR = ROOT / "docs" / "events"

DESCRIPTIONS = {
    Topic.AUDIO_UPLOADED: "A recording was accepted; transcription and diarization start.",
    Topic.TRANSCRIPT_READY: "Transcript with word timings.",
    Topic.TRANSCRIPT_FAILED: "Transcription failed (fatal for the session).",
    Topic.DIARIZATION_READY: "Who spoke when.",
    Topic.DIARIZATION_FAILED: "Diarization failed (recoverable: the transcript is merged without speakers).",
    Topic.TRANSCRIPT_MERGED: "Speaker-labelled transcript with roles.",
    Topic.NOTES_READY: "Structured clinical notes with risk flags.",
    Topic.NOTES_FAILED: "Notes failed; the transcript stays available.",
    Topic.SESSION_PROGRESS: "A stage's progress tick.",
    Topic.SESSION_STATUS: "The session's status (seq is monotonic per session).",
    Topic.SESSION_DELETED: "The session was deleted: forget everything about it.",
    Topic.NOTES_REGENERATE: "Command: re-run notes, optionally with another backend.",
    Topic.TRANSCRIPT_REMERGE: "Command: re-merge transcript and diarization.",
}


def event_schemas() -> dict[str, dict]:
    return {topic.value: model.model_json_schema() for topic, model in TOPIC_MODELS.items()}


def asyncapi() -> dict:
    headers_schema = {
        "type": "object",
        "required": ["ce_id", "ce_type", "ce_source", "ce_time", "ce_specversion", "traceparent"],
        "properties": {
            "ce_id": {"type": "string"}, "ce_type": {"type": "string"}, "ce_source": {"type": "string"},
            "ce_time": {"type": "string", "format": "date-time"}, "ce_specversion": {"const": SPECVERSION},
            "ce_subject": {"type": "string", "description": "session id"},
            "content-type": {"const": "application/json"}, "traceparent": {"type": "string"},
        },
    }
    channels, messages = {}, {}
    for topic, model in TOPIC_MODELS.items():
        name = model.__name__
        messages[name] = {
            "name": name, "title": ce_type(topic), "summary": DESCRIPTIONS[topic], "contentType": "application/json",
            "headers": headers_schema, "payload": model.model_json_schema(ref_template="#/components/schemas/{model}"),
            "bindings": {"kafka": {"key": {"type": "string", "description": "session id"}}},
        }
        channels[topic.value] = {"address": topic.value, "messages": {name: {"$ref": f"#/components/messages/{name}"}}}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "TherapyBridge events", "version": "1.0.0",
                 "description": "CloudEvents 1.0 binary mode over Kafka; key = session id; `<topic>.dlq` holds rejects."},
        "channels": channels,
        "components": {"messages": messages},
    }


def generate() -> dict[Path, str]:
    files = {EVENTS_DIR / f"{topic}.json": json.dumps(schema, indent=2, sort_keys=True) + "\n"
             for topic, schema in event_schemas().items()}
    files[EVENTS_DIR / "notes.schema.json"] = json.dumps(ClinicalNotes.model_json_schema(), indent=2, sort_keys=True) + "\n"
    files[EVENTS_DIR / "asyncapi.json"] = json.dumps(asyncapi(), indent=2, sort_keys=True) + "\n"
    return files


README = ROOT / "README.md"
TABLE_START, TABLE_END = "<!-- settings:start -->", "<!-- settings:end -->"


def readme_with_settings(readme: str) -> str:
    """The README with its settings table regenerated from shared.settings."""
    from shared.settings import settings_markdown

    head, rest = readme.split(TABLE_START, 1)
    _, tail = rest.split(TABLE_END, 1)
    return f"{head}{TABLE_START}\n{settings_markdown()}\n{TABLE_END}{tail}"


def write() -> None:
    EVENTS_DIR.mkdir(parents=True, exist_ok=True)
    for path, content in generate().items():
        path.write_text(content)
    README.write_text(readme_with_settings(README.read_text()))
    print(f"wrote {len(generate())} files to {EVENTS_DIR}")


if __name__ == "__main__":
    write()
