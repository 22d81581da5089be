"""The session state machine: statuses, a percent that never goes backwards, failures."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from hypothesis import given, settings, strategies as st

from shared.contracts.events import (
    AudioRef, AudioUploaded, DiarizationFailed, DiarizationReady, Engine, ErrorInfo, NotesFailed, NotesReady,
    NotesEngine, SessionProgress, Stage, Timing, TranscriptFailed, TranscriptMerged, TranscriptReady,
)
from shared.contracts.notes import ClinicalNotes
from services.progress.state import SessionView, apply_event

SID = uuid.uuid4()
NOW = datetime.now(timezone.utc)
TIMING = Timing(started_at=NOW, finished_at=NOW, processing_s=1, audio_s=60, rtf=0.02)
ERR = ErrorInfo(kind="permanent", code="x", message="it broke")

UPLOADED = AudioUploaded(session_id=SID, owner_id=uuid.uuid4(), audio=AudioRef(
    uri="blob://a", sha256="0", bytes=1, content_type="audio/wav", duration_s=60))
T_READY = TranscriptReady(session_id=SID, language="en", duration_s=60, segments=[], engine=Engine(backend="x"), timing=TIMING)
D_READY = DiarizationReady(session_id=SID, turns=[], speaker_count=2, engine=Engine(backend="x"), timing=TIMING)
MERGED = TranscriptMerged(session_id=SID, diarized=True, segments=[])
NOTES = NotesReady(session_id=SID, notes=ClinicalNotes(), engine=NotesEngine(backend="offline"))


def tick(stage: Stage, fraction: float) -> SessionProgress:
    return SessionProgress(session_id=SID, stage=stage, fraction=fraction)


def run(events) -> list[tuple[str, int]]:
    view = SessionView(str(SID))
    seen = []
    for event in events:
        if apply_event(view, event):
            seen.append((view.status, view.percent))
    return seen


def test_happy_path_statuses_and_percent():
    seen = run([UPLOADED, tick(Stage.transcription, 0.5), tick(Stage.diarization, 0.2), T_READY,
                tick(Stage.diarization, 0.9), D_READY, MERGED, tick(Stage.notes, 0.5), NOTES])
    statuses = [s for s, _ in seen]
    assert statuses[0] == "preprocessing"
    assert "transcribing" in statuses and "diarizing" in statuses and "extracting_notes" in statuses
    assert statuses[-1] == "processed" and seen[-1][1] == 100
    percents = [p for _, p in seen]
    assert percents == sorted(percents)


def test_parallel_stages_count_as_the_slower_one():
    view = SessionView(str(SID))
    apply_event(view, tick(Stage.transcription, 0.9))
    fast_only = view.percent
    apply_event(view, tick(Stage.diarization, 0.9))
    assert view.percent > fast_only


def test_transcription_failure_is_fatal_with_reason():
    seen = run([UPLOADED, TranscriptFailed(session_id=SID, error=ERR)])
    assert seen[-1][0] == "failed"
    view = SessionView(str(SID))
    apply_event(view, TranscriptFailed(session_id=SID, error=ERR))
    assert view.error == "it broke"


def test_diarization_failure_degrades_and_ends_processed():
    view = SessionView(str(SID))
    for event in [UPLOADED, DiarizationFailed(session_id=SID, error=ERR), T_READY,
                  TranscriptMerged(session_id=SID, diarized=False, segments=[], warnings=["no speakers"]), NOTES]:
        apply_event(view, event)
    assert view.status == "processed" and view.warnings == ["no speakers"]
    assert "speaker identification unavailable" in view.message


def test_notes_failure_keeps_transcript_and_shows_error():
    view = SessionView(str(SID))
    for event in [UPLOADED, T_READY, D_READY, MERGED, NotesFailed(session_id=SID, error=ERR)]:
        apply_event(view, event)
    assert view.status == "processed" and "it broke" in view.error
    assert view.stages["notes"].state == "failed"


EVENTS = [UPLOADED, T_READY, D_READY, MERGED, NOTES, DiarizationFailed(session_id=SID, error=ERR)] + [
    tick(stage, f) for stage in (Stage.transcription, Stage.diarization, Stage.notes) for f in (0.1, 0.5, 0.9)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(EVENTS), max_size=25))
def test_percent_never_goes_backwards_in_any_order(events):
    view = SessionView(str(SID))
    last = 0
    for event in events:
        apply_event(view, event)
        assert view.percent >= last
        assert 0 <= view.percent <= 100
        last = view.percent
