"""In-memory fakes for the audio-stage and notes handlers: dicts instead of PostgreSQL,
lists instead of the outbox and the broker. They keep the same contracts as the real
stores (shared.jobs.StageJobStore, services.notes.runs.NotesRunStore) so the handlers'
decisions can be tested with no database and no broker."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from uuid import UUID

from shared.contracts.events import AudioRef, AudioUploaded, Event, NotesEngine, TranscriptMerged, topic_of
from shared.contracts.notes import ClinicalNotes
from shared.envelope import Envelope, new_traceparent
from services.notes.runs import Claim, Finish, Run


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


# --- notes -------------------------------------------------------------------------------------
@dataclass
class FakeRunRow:
    run: Run
    status: str = "running"
    worker: str = ""
    stale: bool = False  # no heartbeat for stale_s
    values: dict = field(default_factory=dict)


class FakeNotesRuns:
    """notes_inputs, notes_runs, the notes job, the inbox, tombstones and the outbox as dicts."""

    def __init__(self, consumer: str = "notes") -> None:
        self.consumer = consumer
        self.inputs: dict[UUID, TranscriptMerged] = {}
        self.runs: dict[tuple[UUID, int, str], FakeRunRow] = {}
        self.jobs: dict[UUID, tuple[str, dict]] = {}
        self.inbox: set[str] = set()
        self.buried: set[UUID] = set()
        self.enqueued: list[Event] = []
        self.heartbeats = 0
        self.released: list[Run] = []

    def add_run(self, sid: UUID, version: int, request_key: str, backend: str, status: str = "running",
                worker: str = "other-host:1", stale: bool = False) -> FakeRunRow:
        run = Run(len(self.runs) + 1, sid, version, request_key, backend, 1)
        row = self.runs[(sid, version, request_key)] = FakeRunRow(run, status, worker, stale)
        return row

    async def remember_input(self, merged: TranscriptMerged, traceparent: str | None) -> int | None:
        if merged.session_id in self.buried:
            return None
        stored = self.inputs.get(merged.session_id)
        if stored is None or stored.version <= merged.version:
            self.inputs[merged.session_id] = merged
        return self.inputs[merged.session_id].version

    async def latest_input(self, session_id: UUID) -> TranscriptMerged | None:
        return self.inputs.get(session_id)

    async def claim(self, session_id: UUID, version: int, request_key: str, backend: str, worker: str,
                    stale_s: float) -> Claim:
        if session_id in self.buried:
            return Claim("buried")
        row = self.runs.get((session_id, version, request_key))
        if row is None:
            row = self.add_run(session_id, version, request_key, backend, worker=worker)
            self.jobs[session_id] = ("running", {})
            return Claim("claimed", row.run)
        if row.status != "running":
            return Claim("finished")
        if not (row.stale or row.worker == worker):
            return Claim("held")
        row.run = replace(row.run, attempt=row.run.attempt + 1, backend=backend)
        row.worker, row.stale = worker, False
        self.jobs[session_id] = ("running", {})
        return Claim("retaken", row.run)

    async def heartbeat(self, run: Run) -> None:
        self.heartbeats += 1

    async def release(self, run: Run) -> None:
        self.released.append(run)

    async def finish(self, run: Run, event_id: str, finish: Finish, traceparent: str | None) -> bool:
        row = self.runs.get((run.session_id, run.version, run.request_key))
        if row is None or row.run.attempt != run.attempt or row.status != "running":
            return False
        row.status, row.values = finish.status, finish.values
        self.inbox.add(event_id)
        self.jobs[run.session_id] = (finish.status, finish.job_detail)
        self.enqueued.append(finish.event)
        return True

    async def forget(self, session_id: UUID) -> int:
        keys = [k for k in self.runs if k[0] == session_id]
        for key in keys:
            del self.runs[key]
        self.inputs.pop(session_id, None)
        self.jobs.pop(session_id, None)
        self.buried.add(session_id)
        return len(keys)


class FakeLLM:
    """Stands in for LLMNotesBackend: scripted outcomes, one per call (an exception or "ok")."""

    def __init__(self, *outcomes) -> None:
        self.outcomes, self.calls = list(outcomes), 0

    async def generate(self, segments, speakers) -> tuple[ClinicalNotes, NotesEngine]:
        self.calls += 1
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        if isinstance(outcome, BaseException):
            raise outcome
        notes = ClinicalNotes(topic_summary="Work stress and sleep.", session_mood="low", mood_trajectory="stable",
                              therapist_notes="Follow up on sleep.", patient_summary="We talked about sleep.")
        return notes, NotesEngine(backend="llm", model="test-model", prompt_tokens=900, completion_tokens=300,
                                  calls=1, cost_usd=0.01)

    async def aclose(self) -> None:
        pass


@dataclass
class NotesEffects:
    """What the notes handlers did outside the store."""

    ticks: list[tuple[UUID, float, str]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)
    wakes: int = 0
    on_sleep: list = field(default_factory=list)  # callables run at each sleep (the world moves on)

    def progress(self, session_id: UUID, traceparent: str | None):
        return lambda fraction, message="": self.ticks.append((session_id, fraction, message))

    async def tick(self, session_id: UUID, message: str, traceparent: str | None) -> None:
        self.messages.append(message)

    def wake(self) -> None:
        self.wakes += 1

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.on_sleep:
            self.on_sleep.pop(0)()
