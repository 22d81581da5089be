"""The joiner's decisions on an in-memory store: no database, no broker."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

from shared.contracts.events import (
    DiarizationFailed, DiarizationReady, Engine, ErrorInfo, SessionDeleted, SpeakerTurn, Timing, TranscriptFailed,
    TranscriptMerged, TranscriptReady, TranscriptRemerge, TranscriptSegment, Word,
)
from shared.telemetry import ServiceMetrics
from services.joiner import handlers
from services.joiner.handlers import JoinDeps
from tests.unit.fakes import Clock, FakeJoinStore, MemoryBlobs, delivery, run_inline

DEADLINE_S = 4.0
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
TIMING = Timing(started_at=NOW, finished_at=NOW, processing_s=1.0, audio_s=6.0, rtf=0.16)


def transcript(sid) -> TranscriptReady:
    words_a = [Word(start=i * 0.4, end=0.35 + i * 0.4, word=w) for i, w in enumerate([" How", " are", " you?"])]
    words_b = [Word(start=3.0 + i * 0.4, end=3.35 + i * 0.4, word=w) for i, w in enumerate([" I", " feel", " tired."])]
    return TranscriptReady(
        session_id=sid, language="en", duration_s=6.0, engine=Engine(backend="test"), timing=TIMING,
        segments=[TranscriptSegment(start=0.0, end=1.15, text="How are you?", words=words_a),
                  TranscriptSegment(start=3.0, end=4.15, text="I feel tired.", words=words_b)])


def diarization(sid) -> DiarizationReady:
    return DiarizationReady(
        session_id=sid, speaker_count=2, engine=Engine(backend="test"), timing=TIMING,
        turns=[SpeakerTurn(start=0.0, end=1.7, speaker="SPEAKER_00"), SpeakerTurn(start=2.9, end=4.3, speaker="SPEAKER_01")])


def failure(kind, sid, message="pyannote could not load"):
    return kind(session_id=sid, error=ErrorInfo(kind="permanent", code="backend_unavailable", message=message))


class Joiner:
    """The handlers wired to fakes, as main.py wires them to PostgreSQL."""

    def __init__(self, inline_payload_max_bytes: int = 1_000_000) -> None:
        self.store, self.clock, self.blobs = FakeJoinStore(), Clock(), MemoryBlobs()
        self.metrics = ServiceMetrics("joiner")
        self.deps = JoinDeps(store=self.store, blobs=self.blobs, run_blocking=run_inline, clock=self.clock,
                             metrics=self.metrics, service="joiner", deadline_s=DEADLINE_S,
                             inline_payload_max_bytes=inline_payload_max_bytes)

    async def deliver(self, event, event_id: str | None = None):
        route = {
            TranscriptReady: handlers.on_transcript_ready, DiarizationReady: handlers.on_diarization_ready,
            TranscriptFailed: handlers.on_transcript_failed, DiarizationFailed: handlers.on_diarization_failed,
            TranscriptRemerge: handlers.on_remerge, SessionDeleted: handlers.on_session_deleted,
        }[type(event)]
        envelope = delivery(event, event_id=event_id)
        await route(event, envelope, self.deps)
        return envelope

    def merged(self) -> list[TranscriptMerged]:
        return self.store.events(TranscriptMerged)

    def duplicates(self) -> float:
        return self.metrics.registry.get_sample_value("tb_duplicate_events_total", {"consumer": "joiner"}) or 0.0


@pytest.fixture
def joiner() -> Joiner:
    return Joiner()


async def test_both_halves_publish_one_diarized_merge(joiner):
    sid = uuid.uuid4()
    await joiner.deliver(transcript(sid))
    assert joiner.merged() == []  # waits for the other half
    await joiner.deliver(diarization(sid))
    [merged] = joiner.merged()
    assert merged.diarized and merged.version == 1 and merged.warnings == []
    assert [s.speaker for s in merged.segments] == ["SPEAKER_00", "SPEAKER_01"]
    assert joiner.store.rows[sid].merged_version == 1 and not joiner.store.rows[sid].degraded


async def test_halves_in_either_order(joiner):
    sid = uuid.uuid4()
    await joiner.deliver(diarization(sid))
    assert joiner.merged() == []
    await joiner.deliver(transcript(sid))
    assert [m.diarized for m in joiner.merged()] == [True]


async def test_merge_continues_the_transcripts_trace(joiner):
    sid = uuid.uuid4()
    envelope = await joiner.deliver(transcript(sid))
    await handlers.on_diarization_ready(diarization(sid), delivery(diarization(sid)), joiner.deps)
    [(_, traceparent)] = joiner.store.published
    assert traceparent is not None
    assert joiner.store.rows[sid].traceparent == envelope.traceparent


async def test_diarization_failed_merges_with_unknown_speakers(joiner):
    sid = uuid.uuid4()
    await joiner.deliver(transcript(sid))
    await joiner.deliver(failure(DiarizationFailed, sid))
    [merged] = joiner.merged()
    assert merged.diarized is False
    assert {s.speaker for s in merged.segments} == {"Unknown"}
    assert "Speaker identification unavailable (pyannote could not load)" in merged.warnings[0]
    assert joiner.store.rows[sid].degraded


async def test_transcript_failed_never_merges(joiner):
    sid = uuid.uuid4()
    await joiner.deliver(failure(TranscriptFailed, sid, "decoder broke"))
    await joiner.deliver(diarization(sid))
    joiner.clock.advance(DEADLINE_S * 10)
    assert await handlers.check_deadlines(joiner.deps) == 0
    assert joiner.merged() == []


async def test_deadline_merges_without_speakers_only_once_it_has_passed(joiner):
    sid = uuid.uuid4()
    await joiner.deliver(transcript(sid))
    joiner.clock.advance(DEADLINE_S - 0.5)
    assert await handlers.check_deadlines(joiner.deps) == 0
    joiner.clock.advance(1.0)
    assert await handlers.check_deadlines(joiner.deps) == 1
    [merged] = joiner.merged()
    assert merged.diarized is False and "did not finish within 4 s" in merged.warnings[0]
    assert await handlers.check_deadlines(joiner.deps) == 0  # merged rows are no longer due


async def test_late_diarization_after_deadline_is_recorded_then_remerged(joiner):
    sid = uuid.uuid4()
    await joiner.deliver(transcript(sid))
    joiner.clock.advance(DEADLINE_S + 1)
    await handlers.check_deadlines(joiner.deps)
    await joiner.deliver(diarization(sid))
    assert len(joiner.merged()) == 1, "a late diarization must not be merged silently"
    row = joiner.store.rows[sid]
    assert row.late_diarization and row.diarization is not None
    await joiner.deliver(TranscriptRemerge(session_id=sid))
    first, second = joiner.merged()
    assert (first.version, first.diarized) == (1, False)
    assert (second.version, second.diarized, second.warnings) == (2, True, [])
    assert not joiner.store.rows[sid].late_diarization and not joiner.store.rows[sid].degraded


async def test_second_diarization_after_a_diarized_merge_changes_nothing(joiner):
    sid = uuid.uuid4()
    await joiner.deliver(transcript(sid))
    await joiner.deliver(diarization(sid))
    await joiner.deliver(diarization(sid))  # a rerun of the diarizer: new event id
    assert len(joiner.merged()) == 1 and not joiner.store.rows[sid].late_diarization


async def test_remerge_without_diarization_is_degraded_and_versioned(joiner):
    sid = uuid.uuid4()
    await joiner.deliver(transcript(sid))
    await joiner.deliver(TranscriptRemerge(session_id=sid))
    await joiner.deliver(TranscriptRemerge(session_id=sid))
    assert [(m.version, m.diarized) for m in joiner.merged()] == [(1, False), (2, False)]


async def test_remerge_of_an_unknown_session_does_nothing(joiner):
    await joiner.deliver(TranscriptRemerge(session_id=uuid.uuid4()))
    assert joiner.store.published == [] and joiner.store.rows == {}


async def test_duplicate_delivery_is_a_counted_no_op(joiner):
    sid = uuid.uuid4()
    first = await joiner.deliver(transcript(sid))
    await joiner.deliver(diarization(sid))
    await joiner.deliver(transcript(sid), event_id=first.event_id)  # redelivered
    await joiner.deliver(TranscriptRemerge(session_id=sid), event_id="remerge-1")
    await joiner.deliver(TranscriptRemerge(session_id=sid), event_id="remerge-1")
    assert [m.version for m in joiner.merged()] == [1, 2]
    assert joiner.duplicates() == 2


async def test_a_failing_merge_rolls_back_so_the_retry_merges(joiner):
    sid = uuid.uuid4()
    await joiner.deliver(transcript(sid))
    calls = []

    async def flaky(fn, *args):
        calls.append(fn)
        if len(calls) == 1:
            raise RuntimeError("worker pool gone")
        return fn(*args)

    flaky_deps = JoinDeps(**{**joiner.deps.__dict__, "run_blocking": flaky})
    event = diarization(sid)
    envelope = delivery(event)
    with pytest.raises(RuntimeError):
        await handlers.on_diarization_ready(event, envelope, flaky_deps)
    assert joiner.merged() == [] and joiner.store.rows[sid].diarization is None
    await handlers.on_diarization_ready(event, envelope, flaky_deps)  # the runtime's retry
    assert [m.diarized for m in joiner.merged()] == [True]
    assert joiner.duplicates() == 0


async def test_large_merge_goes_to_blob_storage():
    joiner = Joiner(inline_payload_max_bytes=200)
    sid = uuid.uuid4()
    await joiner.deliver(transcript(sid))
    await joiner.deliver(diarization(sid))
    [merged] = joiner.merged()
    assert merged.segments is None and merged.segments_ref == f"mem://sessions/{sid}/merged-v1.json"
    assert [s["speaker"] for s in joiner.blobs.get_json(merged.segments_ref)] == ["SPEAKER_00", "SPEAKER_01"]


async def test_transcript_segments_by_reference_are_loaded(joiner):
    sid = uuid.uuid4()
    full = transcript(sid)
    ref = joiner.blobs.put_json(f"sessions/{sid}/segments.json", [s.model_dump(mode="json") for s in full.segments])
    await joiner.deliver(full.model_copy(update={"segments": None, "segments_ref": ref}))
    await joiner.deliver(diarization(sid))
    [merged] = joiner.merged()
    assert "How are you?" in merged.full_text and len(merged.segments) == 2


async def test_session_deleted_forgets_the_join(joiner):
    sid = uuid.uuid4()
    await joiner.deliver(transcript(sid))
    await joiner.deliver(SessionDeleted(session_id=sid))
    assert sid not in joiner.store.rows and sid in joiner.store.buried
    joiner.clock.advance(DEADLINE_S + 1)
    assert await handlers.check_deadlines(joiner.deps) == 0 and joiner.merged() == []


async def test_the_merge_carries_quality_warnings_with_the_settings_thresholds():
    """The joiner runs the quality checks on every merge, with the thresholds it was given:
    the transcript asked for French but is English, and its 6 s recording with 1 s of
    words has a silence over a 2 s limit."""
    from services.joiner.quality import QualityThresholds

    j = Joiner()
    j.deps = JoinDeps(**{**j.deps.__dict__, "quality": QualityThresholds(silence_s=1.5)})
    sid = uuid.uuid4()
    event = transcript(sid)
    event.requested_language = "fr"
    await j.deliver(event)
    await j.deliver(diarization(sid))
    [merged] = j.merged()
    got = {(w.kind, w.start_s, w.end_s) for w in merged.quality_warnings}
    assert ("language_mismatch", None, None) in got
    assert ("long_silence", 1.15, 3.0) in got and ("long_silence", 4.15, 6.0) in got


async def test_a_clean_short_merge_has_no_quality_warnings(joiner):
    sid = uuid.uuid4()
    await joiner.deliver(transcript(sid))
    await joiner.deliver(diarization(sid))
    assert joiner.merged()[0].quality_warnings == []
