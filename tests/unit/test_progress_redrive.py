"""The reconciler's re-drive decisions on the in-memory progress store: which event a
stranded session gets again, how often, and when only the deadline is left."""

from __future__ import annotations

import uuid

import pytest

from services.progress import handlers
from services.progress.handlers import ProgressDeps, events_to_resend
from shared.contracts.events import SessionDeleted, SessionStatus, Stage
from shared.telemetry import ServiceMetrics
from tests.unit.fakes import Clock, FakeProgressStore
from tests.unit.test_progress_handlers import diarization, merged, notes, tick, transcript, uploaded

STALL_S, DEADLINE_S, MAX = 60.0, 600.0, 2


class Reconciler:
    def __init__(self) -> None:
        self.store, self.clock = FakeProgressStore(), Clock()
        self.deps = ProgressDeps(store=self.store, clock=self.clock, metrics=ServiceMetrics("progress"),
                                 service="progress", stage_deadline_s=DEADLINE_S, stage_stall_s=STALL_S,
                                 redrive_max=MAX)

    async def happened(self, *events, seen: bool = True) -> None:
        """Each event was sent through the outbox; ``seen``: progress also consumed it."""
        from tests.unit.fakes import delivery

        for event in events:
            self.store.sent(event, self.clock())
            if seen:
                handler = handlers.on_session_deleted if isinstance(event, SessionDeleted) else handlers.on_pipeline_event
                await handler(event, delivery(event), self.deps)

    async def after(self, seconds: float) -> int:
        self.clock.advance(seconds)
        return await handlers.reconcile(self.deps)

    def last_status(self, sid) -> SessionStatus:
        return [s for s in self.store.events(SessionStatus) if s.session_id == sid][-1]


@pytest.fixture
def rec() -> Reconciler:
    return Reconciler()


async def test_a_stalled_transcription_gets_its_upload_again_a_bounded_number_of_times(rec):
    sid = uuid.uuid4()
    await rec.happened(uploaded(sid), tick(sid, Stage.transcription, 0.2))
    assert await rec.after(STALL_S - 1) == 0
    assert await rec.after(2) == 1
    assert rec.store.resent(sid) == ["audio.uploaded"]
    assert await rec.after(STALL_S / 2) == 0, "re-driven moments ago: wait a stall period"
    assert await rec.after(STALL_S) == 1
    assert await rec.after(STALL_S + 1) == 0, "re-drives used up: only the deadline is left"
    assert rec.store.resent(sid) == ["audio.uploaded", "audio.uploaded"]
    assert rec.last_status(sid).status == "transcribing"
    await rec.after(DEADLINE_S)
    failed = rec.last_status(sid)
    assert failed.status == "failed" and "Processing stalled" in failed.error and "transcription" in failed.error


async def test_progress_after_a_redrive_postpones_the_next(rec):
    sid = uuid.uuid4()
    await rec.happened(uploaded(sid))
    assert await rec.after(STALL_S + 1) == 1
    rec.clock.advance(STALL_S - 5)
    await rec.happened(tick(sid, Stage.transcription, 0.5))
    assert await rec.after(10) == 0
    assert rec.store.resent(sid) == ["audio.uploaded"]


async def test_a_result_that_never_reached_progress_is_sent_again_not_the_upload(rec):
    sid = uuid.uuid4()
    await rec.happened(uploaded(sid), diarization(sid))
    await rec.happened(transcript(sid), seen=False)  # lost with the broker's memory
    await rec.after(STALL_S + 1)
    assert rec.store.resent(sid) == ["transcript.ready"]


async def test_a_stalled_join_gets_the_joiners_inputs_again(rec):
    sid = uuid.uuid4()
    await rec.happened(uploaded(sid), transcript(sid), diarization(sid))
    await rec.after(STALL_S + 1)
    assert sorted(rec.store.resent(sid)) == ["diarization.ready", "transcript.ready"]


async def test_stalled_notes_get_the_latest_merged_transcript_again(rec):
    sid = uuid.uuid4()
    await rec.happened(uploaded(sid), transcript(sid), diarization(sid), merged(sid, 1))
    await rec.after(STALL_S + 1)
    assert rec.store.resent(sid) == ["transcript.merged"]
    await rec.happened(notes(sid), seen=False)
    await rec.after(STALL_S + 1)
    assert rec.store.resent(sid) == ["transcript.merged", "notes.ready"]


async def test_finished_sessions_are_left_alone(rec):
    sid = uuid.uuid4()
    await rec.happened(uploaded(sid), transcript(sid), diarization(sid), merged(sid), notes(sid))
    assert await rec.after(DEADLINE_S * 2) == 0
    assert rec.store.resent() == []
    assert rec.last_status(sid).status == "processed"


async def test_an_upload_progress_never_saw_is_sent_again_unless_deleted(rec):
    lost, deleted = uuid.uuid4(), uuid.uuid4()
    await rec.happened(uploaded(lost), uploaded(deleted), seen=False)
    await rec.happened(SessionDeleted(session_id=deleted))
    assert await rec.after(STALL_S + 1) == 1
    assert rec.store.resent() == ["audio.uploaded"] and rec.store.resent(lost) == ["audio.uploaded"]
    assert await rec.after(STALL_S / 2) == 0, "now it has a row: the normal stall rule applies"


def test_events_to_resend_prefers_a_newer_result():
    assert events_to_resend("transcription", {"audio.uploaded": 1}) == [1]
    assert events_to_resend("transcription", {"audio.uploaded": 1, "transcript.failed": 7}) == [7]
    assert events_to_resend("notes", {"transcript.merged": 9, "notes.ready": 4}) == [9], "a re-merge re-runs notes"
    assert events_to_resend("join", {"transcript.ready": 3, "diarization.failed": 5}) == [3, 5]
    assert events_to_resend("join", {}) == []
