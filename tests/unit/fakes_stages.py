"""In-memory fakes for the audio-stage and notes handlers: dicts instead of PostgreSQL,
lists instead of the outbox and the broker. They keep the same contracts as the real
stores (shared.jobs.StageJobStore, services.notes.runs.NotesRunStore) so the handlers'
decisions can be tested with no database and no broker."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from uuid import UUID

from shared.contracts.events import AudioRef, AudioUploaded, Event, topic_of
from shared.envelope import Envelope, new_traceparent


def envelope_of(event: Event, event_id: str | None = None) -> Envelope:
    return Envelope(topic=topic_of(event).value, event=event, event_id=event_id or str(uuid.uuid4()),
                    source="test", traceparent=new_traceparent(), headers={})


def upload_event(session_id: UUID | None = None) -> AudioUploaded:
    return AudioUploaded(session_id=session_id or uuid.uuid4(), owner_id=uuid.uuid4(), audio=AudioRef(
        uri="file:///nowhere/audio.flac", sha256="0" * 64, bytes=10, content_type="audio/flac", duration_s=11.0))


def counter(metric, *labels: str) -> float:
    return metric.labels(*labels)._value.get()


# --- audio stages ----------------------------------------------------------------------------
class FakeStageJobs:
    """stage_jobs rows, the inbox and the outbox of one stage, as dicts and lists."""

    def __init__(self) -> None:
        self.status: dict[UUID, str] = {}
        self.attempts: dict[UUID, int] = {}
        self.detail: dict[UUID, dict] = {}
        self.inbox: set[str] = set()
        self.enqueued: list[Event] = []

    async def begin(self, session_id: UUID) -> int | None:
        if self.status.get(session_id) in ("done", "failed"):
            return None
        self.status[session_id] = "running"
        self.attempts[session_id] = self.attempts.get(session_id, 0) + 1
        return self.attempts[session_id]

    async def complete(self, session_id: UUID, event_id: str, result: Event, traceparent: str | None,
                       detail: dict) -> bool:
        if self.status.get(session_id) == "done":
            return False
        self.inbox.add(event_id)
        self.status[session_id], self.detail[session_id] = "done", detail
        self.enqueued.append(result)
        return True

    async def fail(self, session_id: UUID, failed: Event, traceparent: str | None, code: str) -> bool:
        if self.status.get(session_id) in ("done", "failed"):
            return False
        self.status[session_id], self.detail[session_id] = "failed", {"code": code}
        self.enqueued.append(failed)
        return True


@dataclass
class StageEffects:
    """What the stage handlers did outside the store."""

    ticks: list[tuple[UUID, float, str]] = field(default_factory=list)
    dead_letters: list[tuple[str, str]] = field(default_factory=list)  # (topic, reason)
    forgotten: list[UUID] = field(default_factory=list)
    wakes: int = 0
    sleeps: list[float] = field(default_factory=list)

    def progress(self, session_id: UUID, traceparent: str | None):
        return lambda fraction, message="": self.ticks.append((session_id, fraction, message))

    async def dead_letter(self, envelope: Envelope, reason: str) -> None:
        self.dead_letters.append((envelope.topic, reason))

    async def forget(self, session_id: UUID) -> None:
        self.forgotten.append(session_id)

    def wake(self) -> None:
        self.wakes += 1

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
