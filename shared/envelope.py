"""CloudEvents 1.0 binary mode over Kafka: attributes as ``ce_*`` headers, the JSON
payload as the value, plus a W3C ``traceparent`` header on every record."""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from shared.contracts.events import TOPIC_MODELS, Event, Topic, topic_of

SPECVERSION = "1.0"
TYPE_PREFIX = "org.therapybridge."
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def new_traceparent(trace_id: str | None = None) -> str:
    trace_id = trace_id or os.urandom(16).hex()
    return f"00-{trace_id}-{os.urandom(8).hex()}-01"


def child_traceparent(parent: str | None) -> str:
    """Same trace, new span id: one trace per session from upload to notes."""
    match = _TRACEPARENT.match(parent or "")
    return new_traceparent(match.group(1) if match else None)


def trace_id_of(traceparent: str | None) -> str | None:
    match = _TRACEPARENT.match(traceparent or "")
    return match.group(1) if match else None


def ce_type(topic: Topic | str) -> str:
    return TYPE_PREFIX + (topic.value if isinstance(topic, Topic) else topic)


def build_headers(
    event: Event, source: str, traceparent: str | None = None, event_id: str | None = None
) -> dict[str, str]:
    topic = topic_of(event)
    return {
        "ce_id": event_id or str(uuid.uuid4()),
        "ce_type": ce_type(topic),
        "ce_source": source,
        "ce_time": datetime.now(timezone.utc).isoformat(),
        "ce_specversion": SPECVERSION,
        "ce_subject": str(event.session_id),
        "content-type": "application/json",
        # The parent span as given (a span that is exported); a new trace only without one.
        "traceparent": traceparent if _TRACEPARENT.match(traceparent or "") else new_traceparent(),
    }


def encode(event: Event) -> bytes:
    return event.model_dump_json().encode()


def decode(topic: str, value: bytes) -> Event:
    model = TOPIC_MODELS[Topic(topic)]
    return model.model_validate_json(value)


@dataclass(frozen=True)
class RawRecord:
    """A record as it came off its topic: what a dead-letter copy preserves."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Envelope:
    """What a consumer gets: the typed event, its CloudEvents attributes and the record
    it was parsed from (None when built in a test)."""

    topic: str
    event: Event
    event_id: str
    source: str
    traceparent: str | None
    headers: dict[str, str]
    record: RawRecord | None = None


def normalise_headers(raw) -> dict[str, str]:
    """Kafka headers arrive as a list of (key, bytes) pairs or a dict."""
    items = raw.items() if isinstance(raw, dict) else (raw or [])
    out = {}
    for key, value in items:
        out[key] = value.decode() if isinstance(value, (bytes, bytearray)) else str(value)
    return out
