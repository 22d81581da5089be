"""The session state machine: plain domain code that folds pipeline events into one
status, per-stage detail, a percent that never goes backwards, and an ETA.

Weights follow expected stage cost on CPU: transcription and diarization run in
parallel and count as their slower one; notes are short offline but can take tens of
seconds with an LLM.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.contracts.events import (
    AudioUploaded,
    DiarizationFailed,
    DiarizationReady,
    Event,
    NotesFailed,
    NotesReady,
    SessionProgress,
    StageState,
    TranscriptFailed,
    TranscriptMerged,
    TranscriptReady,
)

WEIGHTS = {"upload": 5, "analysis": 70, "join": 5, "notes": 20}
STAGES = ("transcription", "diarization", "join", "notes")
TERMINAL = ("processed", "failed")
# Prior real-time factors for the ETA before a stage reports its own progress.
PRIOR_RTF = {"transcription": 0.12, "diarization": 0.05}
PRIOR_NOTES_S = 5.0


@dataclass
class SessionView:
    session_id: str
    owner_id: str | None = None
    status: str = "uploading"
    percent: int = 0
    message: str = ""
    eta_s: float | None = None
    error: str | None = None
    stages: dict[str, StageState] = field(default_factory=lambda: {s: StageState() for s in STAGES})
    warnings: list[str] = field(default_factory=list)
    audio_s: float | None = None

    def snapshot(self) -> tuple:
        return (self.status, self.percent, self.message, self.error,
                tuple((k, v.state, round(v.fraction, 2)) for k, v in sorted(self.stages.items())), tuple(self.warnings))


def _fraction(stage: StageState) -> float:
    if stage.state in ("done", "skipped", "failed"):
        return 1.0
    return stage.fraction if stage.state == "running" else 0.0


def compute_percent(view: SessionView) -> int:
    st = view.stages
    if view.status == "processed":
        return 100
    analysis = min(_fraction(st["transcription"]), _fraction(st["diarization"]))
    total = WEIGHTS["upload"] + WEIGHTS["analysis"] * analysis + WEIGHTS["join"] * _fraction(st["join"]) + WEIGHTS["notes"] * _fraction(st["notes"])
    return int(min(99, total))


def _eta(view: SessionView) -> float | None:
    if view.status in TERMINAL:
        return 0.0
    audio = view.audio_s or 0.0
    parallel = []
    for name in ("transcription", "diarization"):
        stage = view.stages[name]
        if stage.state in ("done", "skipped", "failed"):
            parallel.append(0.0)
        elif stage.eta_s is not None:
            parallel.append(stage.eta_s)
        else:
            parallel.append(audio * PRIOR_RTF[name] * (1 - stage.fraction))
    notes = 0.0 if view.stages["notes"].state in ("done", "failed") else (view.stages["notes"].eta_s or PRIOR_NOTES_S)
    return round(max(parallel) + notes, 1)


def _status_name(view: SessionView) -> str:
    st = view.stages
    if view.status in TERMINAL:
        return view.status
    if st["notes"].state == "running" or st["join"].state == "done":
        return "extracting_notes"
    t_done = st["transcription"].state == "done"
    d_done = st["diarization"].state in ("done", "failed", "skipped")
    if not t_done:
        return "transcribing" if st["transcription"].state == "running" or st["diarization"].state == "running" else "preprocessing"
    if not d_done:
        return "diarizing"
    return "merging"


_MESSAGES = {
    "preprocessing": "Queued for processing",
    "transcribing": "Transcribing audio",
    "diarizing": "Identifying speakers",
    "merging": "Merging transcript and speakers",
    "extracting_notes": "Writing clinical notes",
}


# Each fold records one event in the view; returning False means "ignored, nothing changed".
def _uploaded(view: SessionView, event: AudioUploaded) -> bool:
    view.owner_id = str(event.owner_id)
    view.audio_s = event.audio.duration_s
    if view.status == "uploading":
        view.status = "preprocessing"
    return True


def _progress(view: SessionView, event: SessionProgress) -> bool:
    stage = view.stages.get(event.stage.value)
    if stage is None or stage.state in ("done", "failed", "skipped"):
        return False
    stage.state = "running"
    stage.fraction = max(stage.fraction, event.fraction)
    stage.message = event.message
    stage.eta_s = event.eta_s
    return True


def _transcript_ready(view: SessionView, event: TranscriptReady) -> bool:
    view.stages["transcription"] = StageState(state="done", fraction=1.0, message="Transcript ready")
    return True


def _diarization_ready(view: SessionView, event: DiarizationReady) -> bool:
    if view.stages["join"].state == "done":  # late: recorded by the joiner; status unchanged
        return False
    view.stages["diarization"] = StageState(state="done", fraction=1.0, message=f"{event.speaker_count} speakers")
    return True


def _transcript_failed(view: SessionView, event: TranscriptFailed) -> bool:
    view.stages["transcription"] = StageState(state="failed", fraction=1.0, message="Transcription failed", error=event.error)
    view.status = "failed"
    view.error = event.error.message
    return True


def _diarization_failed(view: SessionView, event: DiarizationFailed) -> bool:
    if view.stages["diarization"].state != "done":
        view.stages["diarization"] = StageState(state="failed", fraction=1.0, message="Speaker identification unavailable",
                                                error=event.error)
    return True


def _merged(view: SessionView, event: TranscriptMerged) -> bool:
    st = view.stages
    st["join"] = StageState(state="done", fraction=1.0, message="Speaker-labelled transcript ready")
    if not event.diarized and st["diarization"].state not in ("failed", "done"):
        st["diarization"] = StageState(state="skipped", fraction=1.0, message="Speaker identification unavailable")
    for warning in event.warnings:
        if warning not in view.warnings:
            view.warnings.append(warning)
    if view.status in TERMINAL:
        view.status = "extracting_notes"  # a re-merge re-runs notes
    if st["notes"].state in ("done", "failed"):
        st["notes"] = StageState()
    return True


def _notes_ready(view: SessionView, event: NotesReady) -> bool:
    view.stages["notes"] = StageState(state="done", fraction=1.0, message="Notes ready")
    if view.status != "failed":
        view.status = "processed"
        view.error = None
    return True


def _notes_failed(view: SessionView, event: NotesFailed) -> bool:
    view.stages["notes"] = StageState(state="failed", fraction=1.0, message="Notes unavailable", error=event.error)
    if view.status != "failed":
        # Seed 001: a notes failure leaves the transcript; the session is processed
        # with the error shown, and notes can be regenerated.
        view.status = "processed"
        view.error = f"Notes generation failed: {event.error.message}"
    return True


_FOLDS = {
    AudioUploaded: _uploaded, SessionProgress: _progress, TranscriptReady: _transcript_ready,
    DiarizationReady: _diarization_ready, TranscriptFailed: _transcript_failed, DiarizationFailed: _diarization_failed,
    TranscriptMerged: _merged, NotesReady: _notes_ready, NotesFailed: _notes_failed,
}
# What may still change a finished session: results that arrive or are redone later.
_AFTER_TERMINAL = (NotesReady, NotesFailed, TranscriptMerged, DiarizationReady)


def _derive(view: SessionView) -> None:
    """Status name, percent (never backwards), ETA and message from the stages."""
    view.status = _status_name(view)
    view.percent = max(view.percent, compute_percent(view))
    if view.status == "processed":
        view.percent = 100
    view.eta_s = _eta(view)
    if view.status == "processed":
        view.message = "Processing complete" + (" (speaker identification unavailable)" if not_diarized(view) else "")
    elif view.status == "failed":
        view.message = view.error or "Processing failed"
    else:
        view.message = _MESSAGES.get(view.status, view.message)


def apply_event(view: SessionView, event: Event) -> bool:
    """Fold one event into the view. Returns True when the visible state changed."""
    before = view.snapshot()
    if view.status in TERMINAL and not isinstance(event, _AFTER_TERMINAL):
        return False
    fold = _FOLDS.get(type(event))
    if fold is None or not fold(view, event):
        return False
    _derive(view)
    return view.snapshot() != before


def not_diarized(view: SessionView) -> bool:
    return view.stages["diarization"].state in ("failed", "skipped")
