"""The notes handlers' decisions (services.notes.handlers) on an in-memory fake store, with
the real NotesGenerator (offline extractor, lexicon-only risk) and a scripted LLM: no
database, no broker, no HTTP."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from structlog.testing import capture_logs

from services.notes import handlers
from services.notes.service import NotesGenerator
from shared.contracts.events import (
    MergedSegment,
    NotesFailed,
    NotesReady,
    NotesRegenerate,
    SessionDeleted,
    SpeakerInfo,
    TranscriptMerged,
)
from shared.resilience import CircuitBreaker, CircuitOpenError, PermanentError, TransientError
from shared.telemetry import ServiceMetrics
from tests.unit.fakes_stages import FakeLLM, FakeNotesRuns, NotesEffects, counter, envelope_of

SECRET = "I have been thinking about killing myself"  # transcript text: must never reach a log


async def run_inline(fn, *args):
    return fn(*args)


def merged(sid: uuid.UUID | None = None, version: int = 1, inline: bool = True) -> TranscriptMerged:
    segments = [
        MergedSegment(start=0.0, end=4.0, speaker="SPEAKER_00", role="THERAPIST", text="How has your sleep been?"),
        MergedSegment(start=4.0, end=9.0, speaker="SPEAKER_01", role="CLIENT", text=f"Bad. {SECRET}."),
        MergedSegment(start=9.0, end=14.0, speaker="SPEAKER_00", role="THERAPIST",
                      text="This week I'd like you to keep a sleep diary."),
    ]
    return TranscriptMerged(
        session_id=sid or uuid.uuid4(), version=version, language="en", duration_s=14.0,
        segments=segments if inline else None, segments_ref=None if inline else "file:///blobs/merged.json",
        diarized=True, full_text="", speakers=[SpeakerInfo(label="SPEAKER_00", role="THERAPIST"),
                                               SpeakerInfo(label="SPEAKER_01", role="CLIENT")])


def make(llm: FakeLLM | None = None, store: FakeNotesRuns | None = None, blobs: dict | None = None):
    store, effects = store or FakeNotesRuns(), NotesEffects()
    breaker = CircuitBreaker("llm", failure_threshold=1, open_s=60)
    blobs = blobs or {}

    async def load_segments(uri: str):
        if uri not in blobs:
            raise FileNotFoundError(uri)
        return blobs[uri]

    deps = handlers.NotesDeps(
        store=store, generator=NotesGenerator(run_inline, llm), breaker=breaker, load_segments=load_segments,
        progress=effects.progress, tick=effects.tick, wake=effects.wake, metrics=ServiceMetrics("notes"),
        consumer="notes", stale_s=60.0, worker="this-host:1", sleep=effects.sleep)
    return deps, store, effects


def only(store: FakeNotesRuns, kind: type):
    found = [e for e in store.enqueued if isinstance(e, kind)]
    assert len(found) == 1, store.enqueued
    return found[0]


# --- transcript.merged --------------------------------------------------------------------------
async def test_first_run_offline_publishes_notes_ready_and_records_the_run():
    deps, store, effects = make()
    event = merged()
    envelope = envelope_of(event)
    await handlers.on_transcript_merged(envelope, deps)
    ready = only(store, NotesReady)
    assert ready.engine.backend == "offline" and ready.transcript_version == 1 and ready.timing.audio_s == 14.0
    assert any("sleep diary" in a.task.lower() for a in ready.notes.action_items)
    assert ready.notes.risk_flags, "the lexicon safety net flags the disclosure"
    [row] = store.runs.values()
    assert (row.run.request_key, row.run.backend, row.status, row.run.attempt) == ("auto", "offline", "done", 1)
    assert store.jobs[event.session_id][0] == "done" and envelope.event_id in store.inbox
    assert store.inputs[event.session_id] == event and effects.wakes == 1
    assert [t[1] for t in effects.ticks] == [0.0, 0.1]


async def test_duplicate_delivery_runs_nothing_twice():
    llm = FakeLLM()
    deps, store, _ = make(llm)
    event = merged()
    envelope = envelope_of(event)
    await handlers.on_transcript_merged(envelope, deps)
    await handlers.on_transcript_merged(envelope, deps)  # redelivery: same ce_id
    await handlers.on_transcript_merged(envelope_of(event), deps)  # duplicate publish: new ce_id
    assert llm.calls == 1 and len(store.enqueued) == 1
    assert counter(deps.metrics.duplicates, "notes") == 2


async def test_stale_transcript_version_is_ignored():
    llm = FakeLLM()
    deps, store, _ = make(llm)
    sid = uuid.uuid4()
    await handlers.on_transcript_merged(envelope_of(merged(sid, version=2)), deps)
    await handlers.on_transcript_merged(envelope_of(merged(sid, version=1)), deps)
    assert llm.calls == 1 and [e.transcript_version for e in store.enqueued] == [2]
    assert store.inputs[sid].version == 2 and counter(deps.metrics.duplicates, "notes") == 1


async def test_newer_transcript_version_gets_its_own_run():
    deps, store, _ = make()
    sid = uuid.uuid4()
    await handlers.on_transcript_merged(envelope_of(merged(sid, version=1)), deps)
    await handlers.on_transcript_merged(envelope_of(merged(sid, version=2)), deps)
    assert [e.transcript_version for e in store.enqueued] == [1, 2]


async def test_crashed_run_is_retaken_with_the_next_attempt():
    llm = FakeLLM()
    deps, store, _ = make(llm)
    event = merged()
    store.add_run(event.session_id, 1, "auto", "llm", worker="crashed-host:1", stale=True)
    await handlers.on_transcript_merged(envelope_of(event), deps)
    ready = only(store, NotesReady)
    [row] = store.runs.values()
    assert row.status == "done" and row.run.attempt == 2 and row.worker == "this-host:1"
    assert ready.engine.backend == "llm" and llm.calls == 1


async def test_run_held_by_a_live_worker_is_waited_for_and_never_paid_twice():
    llm = FakeLLM()
    deps, store, effects = make(llm)
    event = merged()
    row = store.add_run(event.session_id, 1, "auto", "llm", worker="other-host:2")

    def other_worker_finishes() -> None:
        row.status = "done"

    effects.on_sleep.append(other_worker_finishes)
    await handlers.on_transcript_merged(envelope_of(event), deps)
    assert len(effects.sleeps) == 1 and llm.calls == 0 and store.enqueued == []
    assert counter(deps.metrics.duplicates, "notes") == 1


async def test_run_lost_to_a_retake_publishes_nothing():
    store = FakeNotesRuns()

    class RetakenMidRun(FakeLLM):
        async def generate(self, segments, speakers):
            [row] = store.runs.values()
            row.run = row.run.__class__(**{**row.run.__dict__, "attempt": row.run.attempt + 1})
            return await super().generate(segments, speakers)

    deps, _, effects = make(RetakenMidRun(), store)
    await handlers.on_transcript_merged(envelope_of(merged()), deps)
    assert store.enqueued == [] and effects.wakes == 0


async def test_segments_by_reference_are_loaded_and_a_missing_blob_fails_permanently():
    event = merged(inline=False)
    inline = merged()
    deps, store, _ = make(blobs={event.segments_ref: [s.model_dump(mode="json") for s in inline.segments]})
    await handlers.on_transcript_merged(envelope_of(event), deps)
    assert only(store, NotesReady).notes.action_items

    deps, store, _ = make()
    await handlers.on_transcript_merged(envelope_of(merged(inline=False)), deps)
    failed = only(store, NotesFailed)
    assert (failed.error.kind, failed.error.code) == ("permanent", "transcript_missing")


# --- backend choice -----------------------------------------------------------------------------
@pytest.mark.parametrize("configured, requested, backend", [
    (False, None, "offline"),  # no endpoint: offline by default
    (True, None, "llm"),  # an endpoint: llm by default
    (True, "offline", "offline"),
    (True, " LLM ", "llm"),
])
async def test_backend_choice(configured, requested, backend):
    llm = FakeLLM() if configured else None
    deps, store, _ = make(llm)
    event = merged()
    await handlers.on_transcript_merged(envelope_of(event), deps)
    store.enqueued.clear()
    await handlers.on_regenerate(envelope_of(NotesRegenerate(session_id=event.session_id, backend=requested)), deps)
    assert only(store, NotesReady).engine.backend == backend
    assert llm is None or llm.calls == (1 if backend == "llm" else 0) + 1


async def test_llm_requested_without_an_endpoint_fails_clearly():
    """ADR 0012: no silent substitution: notes.failed, permanent, llm_not_configured."""
    deps, store, _ = make(None)
    event = merged()
    await handlers.on_transcript_merged(envelope_of(event), deps)
    store.enqueued.clear()
    await handlers.on_regenerate(envelope_of(NotesRegenerate(session_id=event.session_id, backend="llm")), deps)
    failed = only(store, NotesFailed)
    assert (failed.error.kind, failed.error.code) == ("permanent", "llm_not_configured")
    assert "offline" in failed.error.message


async def test_upload_choice_on_transcript_merged_is_honoured():
    """The upload's notes_backend rides on transcript.merged: "offline" with an LLM configured
    never calls it."""
    llm = FakeLLM()
    deps, store, _ = make(llm)
    await handlers.on_transcript_merged(envelope_of(merged().model_copy(update={"notes_backend": "offline"})), deps)
    assert only(store, NotesReady).engine.backend == "offline" and llm.calls == 0


async def test_unknown_backend_fails_the_run_once():
    deps, store, _ = make()
    event = merged()
    await handlers.on_transcript_merged(envelope_of(event), deps)
    command = envelope_of(NotesRegenerate(session_id=event.session_id, backend="gpt-9"))
    await handlers.on_regenerate(command, deps)
    await handlers.on_regenerate(command, deps)
    failed = only(store, NotesFailed)
    assert (failed.error.kind, failed.error.code) == ("permanent", "unknown_notes_backend")
    assert store.runs[(event.session_id, 1, command.event_id)].run.backend == "gpt-9"


# --- notes.regenerate ---------------------------------------------------------------------------
async def test_regenerate_adds_a_run_beside_the_first_and_is_idempotent():
    llm = FakeLLM()
    deps, store, _ = make(llm)
    event = merged()
    await handlers.on_transcript_merged(envelope_of(event), deps)
    command = envelope_of(NotesRegenerate(session_id=event.session_id, backend="offline"))
    await handlers.on_regenerate(command, deps)
    await handlers.on_regenerate(command, deps)  # the same command redelivered
    assert [(e.engine.backend, e.transcript_version) for e in store.enqueued] == [("llm", 1), ("offline", 1)]
    assert [(k[2], r.status) for k, r in store.runs.items()] == [("auto", "done"), (command.event_id, "done")]
    assert llm.calls == 1


async def test_regenerate_without_a_transcript_does_nothing():
    deps, store, _ = make()
    await handlers.on_regenerate(envelope_of(NotesRegenerate(session_id=uuid.uuid4())), deps)
    assert store.enqueued == [] and store.runs == {}


# --- failures -----------------------------------------------------------------------------------
@pytest.mark.parametrize("error, kind, code, message", [
    (PermanentError("llm_unauthorized", "The notes model rejected the credentials."), "permanent",
     "llm_unauthorized", "The notes model rejected the credentials."),
    (TransientError("llm_unavailable", "The notes model is unavailable."), "transient", "llm_unavailable",
     "The notes model is unavailable."),
    (ValueError(f"could not parse: {SECRET}"), "transient", "notes_internal_error",
     "Notes could not be generated (internal error)."),
])
async def test_llm_failure_gives_notes_failed_with_a_safe_message(error, kind, code, message):
    deps, store, _ = make(FakeLLM(error))
    deps.breaker = CircuitBreaker("llm", failure_threshold=5, open_s=60)  # stays closed
    event = merged()
    with capture_logs() as logs:
        await handlers.on_transcript_merged(envelope_of(event), deps)
    failed = only(store, NotesFailed)
    assert (failed.error.kind, failed.error.code, failed.error.message) == (kind, code, message)
    assert failed.attempts == 1 and failed.transcript_version == 1
    assert store.jobs[event.session_id] == ("failed", {"version": 1, "code": code})
    assert counter(deps.metrics.failures, "notes", kind) == 1
    assert SECRET not in repr(logs) and "could not parse" not in repr(logs)


async def test_open_breaker_pauses_then_resumes_without_failing_the_session():
    llm = FakeLLM(CircuitOpenError("llm", 5.0), CircuitOpenError("llm", 5.0))
    deps, store, effects = make(llm)
    deps.breaker.record_failure()  # threshold 1: open
    await handlers.on_transcript_merged(envelope_of(merged()), deps)
    assert llm.calls == 3 and len(effects.sleeps) == 2
    assert effects.messages == ["Waiting for the notes model to become available"]  # one tick per pause
    assert only(store, NotesReady).engine.backend == "llm" and deps.paused_s >= 0
    assert deps.metrics.breaker_state.labels("llm")._value.get() == 1


async def test_transient_error_with_the_breaker_open_pauses_too():
    llm = FakeLLM(TransientError("llm_unavailable", "down"))
    deps, store, effects = make(llm)
    deps.breaker.record_failure()
    await handlers.on_transcript_merged(envelope_of(merged()), deps)
    assert llm.calls == 2 and len(effects.sleeps) == 1 and only(store, NotesReady)


async def test_shutdown_mid_run_releases_the_claim():
    store = FakeNotesRuns()

    class Hangs(FakeLLM):
        async def generate(self, segments, speakers):
            raise asyncio.CancelledError

    deps, _, _ = make(Hangs(), store)
    with pytest.raises(asyncio.CancelledError):
        await handlers.on_transcript_merged(envelope_of(merged()), deps)
    [row] = store.runs.values()
    assert store.released == [row.run] and row.status == "running" and store.enqueued == []


# --- deleted sessions ---------------------------------------------------------------------------
async def test_tombstoned_session_stores_nothing_and_runs_nothing():
    llm = FakeLLM()
    deps, store, _ = make(llm)
    event = merged()
    store.buried.add(event.session_id)
    await handlers.on_transcript_merged(envelope_of(event), deps)
    assert store.inputs == {} and store.runs == {} and store.enqueued == [] and llm.calls == 0


async def test_session_deleted_mid_claim_runs_nothing():
    deps, store, _ = make()
    event = merged()
    await store.remember_input(event, None)
    store.buried.add(event.session_id)  # deleted by another process after the input was stored
    await handlers.run_notes(envelope_of(event), deps, event, "auto", None)
    assert store.runs == {} and store.enqueued == []


async def test_session_deleted_forgets_runs_and_input_so_regenerate_is_a_no_op():
    deps, store, _ = make()
    event = merged()
    await handlers.on_transcript_merged(envelope_of(event), deps)
    with capture_logs() as logs:
        await handlers.on_session_deleted(envelope_of(SessionDeleted(session_id=event.session_id)), deps)
    assert store.runs == {} and store.inputs == {} and event.session_id not in store.jobs
    assert [entry.get("runs") for entry in logs if entry["event"] == "notes_session_forgotten"] == [1]
    store.enqueued.clear()
    await handlers.on_regenerate(envelope_of(NotesRegenerate(session_id=event.session_id)), deps)
    assert store.enqueued == []
