"""The progress service's decisions on an in-memory store: no database, no broker."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

from shared.contracts.events import (
    AudioRef, AudioUploaded, DiarizationReady, Engine, ErrorInfo, NotesEngine, NotesFailed, NotesReady,
    SessionDeleted, SessionProgress, SessionStatus, Stage, Timing, TranscriptFailed, TranscriptMerged, TranscriptReady,
)
from shared.contracts.notes import ClinicalNotes
from shared.telemetry import ServiceMetrics
from services.progress import handlers
from services.progress.handlers import ProgressDeps
from tests.unit.fakes import Clock, FakeProgressStore, delivery

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
TIMING = Timing(started_at=NOW, finished_at=NOW, processing_s=1, audio_s=60, rtf=0.02)
DEADLINE_S = 600.0


def uploaded(sid):
    return AudioUploaded(session_id=sid, owner_id=uuid.uuid4(), audio=AudioRef(
        uri="blob://a", sha256="0", bytes=1, content_type="audio/wav", duration_s=60))


def transcript(sid):
    return TranscriptReady(session_id=sid, language="en", duration_s=60, segments=[], engine=Engine(backend="x"),
                           timing=TIMING)


def diarization(sid):
    return DiarizationReady(session_id=sid, turns=[], speaker_count=2, engine=Engine(backend="x"), timing=TIMING)


def merged(sid, version=1):
    return TranscriptMerged(session_id=sid, version=version, diarized=True, segments=[])


def notes(sid):
    return NotesReady(session_id=sid, notes=ClinicalNotes(), engine=NotesEngine(backend="offline"))


def tick(sid, stage, fraction):
    return SessionProgress(session_id=sid, stage=stage, fraction=fraction, message="working")


class Progress:
    def __init__(self) -> None:
        self.store, self.clock, self.metrics = FakeProgressStore(), Clock(), ServiceMetrics("progress")
        # Re-drives are off here (stall = deadline): tests/unit/test_progress_redrive.py covers them.
        self.deps = ProgressDeps(store=self.store, clock=self.clock, metrics=self.metrics, service="progress",
                                 stage_deadline_s=DEADLINE_S, stage_stall_s=DEADLINE_S)

    async def deliver(self, event, event_id: str | None = None):
        envelope = delivery(event, event_id=event_id)
        handler = handlers.on_session_deleted if isinstance(event, SessionDeleted) else handlers.on_pipeline_event
        await handler(event, envelope, self.deps)
        return envelope

    def statuses(self, sid=None) -> list[SessionStatus]:
        return [s for s in self.store.events(SessionStatus) if sid is None or s.session_id == sid]

    def counter(self, name: str, labels: dict) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def progress() -> Progress:
    return Progress()


async def test_happy_path_ends_processed_with_monotonic_seq_and_percent(progress):
    sid = uuid.uuid4()
    for event in (uploaded(sid), tick(sid, Stage.transcription, 0.5), transcript(sid), diarization(sid),
                  merged(sid), notes(sid)):
        await progress.deliver(event)
    statuses = progress.statuses(sid)
    assert [s.seq for s in statuses] == list(range(1, len(statuses) + 1))
    percents = [s.percent for s in statuses]
    assert percents == sorted(percents) and percents[-1] == 100
    assert statuses[-1].status == "processed"
    assert progress.counter("tb_sessions_total", {"status": "processed"}) == 1
    assert progress.store.views[sid]["seq"] == statuses[-1].seq
    assert [s.seq for s in progress.store.history] == [s.seq for s in statuses]


async def test_percent_never_goes_backwards(progress):
    sid = uuid.uuid4()
    await progress.deliver(uploaded(sid))
    for fraction in (0.2, 0.9, 0.4, 0.1):
        await progress.deliver(tick(sid, Stage.transcription, fraction))
        await progress.deliver(tick(sid, Stage.diarization, fraction))
    percents = [s.percent for s in progress.statuses(sid)]
    assert percents == sorted(percents)
    assert progress.store.views[sid]["view"].stages["transcription"].fraction == 0.9


async def test_a_tick_that_changes_nothing_publishes_nothing(progress):
    sid = uuid.uuid4()
    await progress.deliver(uploaded(sid))
    await progress.deliver(tick(sid, Stage.transcription, 0.5))
    before = len(progress.statuses(sid))
    await progress.deliver(tick(sid, Stage.transcription, 0.5))  # ticks are not claimed: a repeat is a no-op
    assert len(progress.statuses(sid)) == before


async def test_transcript_failed_is_terminal(progress):
    sid = uuid.uuid4()
    await progress.deliver(uploaded(sid))
    await progress.deliver(TranscriptFailed(session_id=sid, error=ErrorInfo(kind="permanent", code="x", message="bad audio")))
    last = progress.statuses(sid)[-1]
    assert (last.status, last.error) == ("failed", "bad audio")
    assert progress.counter("tb_sessions_total", {"status": "failed"}) == 1
    count = len(progress.statuses(sid))
    await progress.deliver(tick(sid, Stage.diarization, 0.7))  # nothing moves a failed session
    assert len(progress.statuses(sid)) == count


async def test_notes_failed_ends_processed_with_the_error(progress):
    sid = uuid.uuid4()
    for event in (uploaded(sid), transcript(sid), diarization(sid), merged(sid)):
        await progress.deliver(event)
    await progress.deliver(NotesFailed(session_id=sid, error=ErrorInfo(kind="transient", code="llm", message="LLM down")))
    last = progress.statuses(sid)[-1]
    assert last.status == "processed" and "LLM down" in last.error
    assert progress.store.results[sid]["notes_error"]["code"] == "llm"


async def test_duplicate_delivery_changes_nothing_and_is_counted(progress):
    sid = uuid.uuid4()
    first = await progress.deliver(uploaded(sid))
    await progress.deliver(transcript(sid), event_id="t-1")
    count = len(progress.statuses(sid))
    await progress.deliver(uploaded(sid), event_id=first.event_id)
    await progress.deliver(transcript(sid), event_id="t-1")
    assert len(progress.statuses(sid)) == count
    assert progress.counter("tb_duplicate_events_total", {"consumer": "progress"}) == 2


async def test_results_are_kept_and_a_stale_merge_is_ignored(progress):
    sid = uuid.uuid4()
    for event in (uploaded(sid), transcript(sid), diarization(sid), merged(sid, version=2), notes(sid)):
        await progress.deliver(event)
    count = len(progress.statuses(sid))
    await progress.deliver(merged(sid, version=1))  # an older merge arriving late
    assert progress.store.results[sid]["merged_version"] == 2
    assert set(progress.store.results[sid]) >= {"transcript", "diarization", "merged", "notes", "notes_engine"}
    assert len(progress.statuses(sid)) == count and progress.statuses(sid)[-1].status == "processed"


async def test_a_remerge_reopens_a_processed_session(progress):
    sid = uuid.uuid4()
    for event in (uploaded(sid), transcript(sid), diarization(sid), merged(sid), notes(sid)):
        await progress.deliver(event)
    await progress.deliver(merged(sid, version=2))
    assert progress.statuses(sid)[-1].status == "extracting_notes"
    assert progress.store.results[sid]["merged_version"] == 2


async def test_reconciler_fails_only_stalled_sessions(progress):
    stalled, busy, done = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await progress.deliver(uploaded(stalled))
    for event in (uploaded(done), transcript(done), diarization(done), merged(done), notes(done)):
        await progress.deliver(event)
    progress.clock.advance(DEADLINE_S - 10)
    await progress.deliver(uploaded(busy))
    assert await handlers.reconcile(progress.deps) == 0
    progress.clock.advance(20)
    assert await handlers.reconcile(progress.deps) == 1
    last = progress.statuses(stalled)[-1]
    assert last.status == "failed" and "Processing stalled" in last.error and "transcription" in last.error
    assert progress.statuses(busy)[-1].status == "preprocessing"
    assert progress.statuses(done)[-1].status == "processed"
    assert progress.counter("tb_sessions_total", {"status": "failed"}) == 1


async def test_session_deleted_forgets_the_read_model(progress):
    sid = uuid.uuid4()
    await progress.deliver(uploaded(sid))
    await progress.deliver(transcript(sid))
    await progress.deliver(SessionDeleted(session_id=sid))
    assert sid not in progress.store.views and sid not in progress.store.results
    assert not [s for s in progress.store.history if s.session_id == sid]
    assert sid in progress.store.buried


async def test_quality_warnings_of_the_merge_are_kept_for_the_api(progress):
    from shared.contracts.events import QualityWarning

    sid = uuid.uuid4()
    event = merged(sid)
    event.quality_warnings = [QualityWarning(kind="long_silence", severity="info", start_s=3.0, end_s=48.0,
                                             message="No speech transcribed for 45 s")]
    for e in (uploaded(sid), transcript(sid), diarization(sid), event):
        await progress.deliver(e)
    assert progress.store.results[sid]["quality_warnings"] == [
        {"kind": "long_silence", "severity": "info", "start_s": 3.0, "end_s": 48.0, "message": "No speech transcribed for 45 s"}]


async def test_a_late_copy_of_the_same_merge_does_not_strand_the_session(progress):
    # Seen after a broker lost its records: notes.ready (re-driven) arrives before the first
    # delivery of the merge it was written from; that merge reopens the notes stage, the
    # notes service has nothing new to say, and the re-driven notes.ready is a duplicate.
    sid = uuid.uuid4()
    for event in (uploaded(sid), transcript(sid), diarization(sid)):
        await progress.deliver(event)
    first_notes = await progress.deliver(notes(sid))
    await progress.deliver(merged(sid, version=1))
    assert progress.statuses(sid)[-1].status == "extracting_notes"
    await progress.deliver(notes(sid), event_id=first_notes.event_id)  # the reconciler's re-drive
    assert progress.statuses(sid)[-1].status == "processed"
    # Still a duplicate once applied, and never for notes older than the stored merge.
    count = len(progress.statuses(sid))
    await progress.deliver(notes(sid), event_id=first_notes.event_id)
    assert len(progress.statuses(sid)) == count
    await progress.deliver(merged(sid, version=2))
    await progress.deliver(notes(sid), event_id=first_notes.event_id)  # notes of version 1
    assert progress.statuses(sid)[-1].status == "extracting_notes"
