"""Reads the progress service's read model and assembles API views. Speaker names
and role overrides (PATCH /speakers) are applied here, at read time, so relabelling
never re-runs the pipeline."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.blobstore import BlobStore
from services.gateway import queries
from services.gateway.review_flow import current_notes
from services.gateway.schemas import SessionDetail

ROLE_SWAP = {"THERAPIST": "CLIENT", "CLIENT": "THERAPIST"}


def _resolve(payload: dict | None, blobs: BlobStore) -> list[dict] | None:
    if not payload:
        return None
    if payload.get("segments") is not None:
        return payload["segments"]
    ref = payload.get("segments_ref")
    if ref:
        try:
            return blobs.get_json(ref)
        except FileNotFoundError:
            return None
    return None


def relabel(
    segments: list[dict], speakers: list[dict], names: dict[str, str], role_overrides: dict[str, Any]
) -> tuple[list[dict], list[dict], dict[str, str | None]]:
    """Apply therapist-given names and role overrides; returns segments, speakers, role map."""
    role_of: dict[str, str | None] = {s["label"]: s.get("role") for s in speakers}
    if role_overrides.get("__swap__"):
        role_of = {k: ROLE_SWAP.get(v, v) if v else v for k, v in role_of.items()}
    for label, role in role_overrides.items():
        if label != "__swap__":
            role_of[label] = role
    new_speakers = [
        {**s, "role": role_of.get(s["label"]), "display_name": names.get(s["label"], s.get("display_name"))}
        for s in speakers
    ]
    new_segments = [{**seg, "role": role_of.get(seg.get("speaker"), seg.get("role"))} for seg in segments]
    return new_segments, new_speakers, role_of


def speaker_name(seg: dict, speakers: list[dict]) -> str:
    for s in speakers:
        if s["label"] == seg.get("speaker"):
            return s.get("display_name") or s.get("role") or s["label"]
    return seg.get("role") or seg.get("speaker") or "Unknown"


def full_text(segments: list[dict], speakers: list[dict]) -> str:
    lines: list[str] = []
    last = None
    for seg in segments:
        name = speaker_name(seg, speakers)
        if name == last and lines:
            lines[-1] += " " + seg["text"]
        else:
            lines.append(f"{name}: {seg['text']}")
        last = name
    return "\n".join(lines)


def apply_edits(segments: list[dict], edits: dict[str, Any]) -> list[dict]:
    """The therapist's corrected texts in place of the recognised ones (marked ``edited``,
    the original kept as ``original_text``)."""
    if not edits:
        return segments
    out = []
    for i, seg in enumerate(segments):
        edit = edits.get(str(i))
        out.append({**seg, "text": edit["text"], "edited": True, "original_text": edit.get("original", seg.get("text"))}
                   if edit else seg)
    return out


def transcript_view(results, blobs: BlobStore, session_row) -> dict[str, Any]:
    """Segments/speakers/text from the merged transcript when it exists, else the raw one."""
    out: dict[str, Any] = {"segments": None, "speakers": [], "diarized": None, "language": None, "text": None}
    if results is None:
        return out
    names = dict(session_row.speaker_names or {})
    overrides = dict(session_row.role_overrides or {})
    if results.merged:
        segments = _resolve(results.merged, blobs) or []
        speakers = results.merged.get("speakers", [])
        segments, speakers, _ = relabel(segments, speakers, names, overrides)
        segments = apply_edits(segments, dict(session_row.segment_edits or {}))
        out.update(segments=segments, speakers=speakers, diarized=results.merged.get("diarized"),
                   language=results.merged.get("language"), text=full_text(segments, speakers))
    elif results.transcript:
        segments = [{**s, "speaker": None, "role": None} for s in (_resolve(results.transcript, blobs) or [])]
        out.update(segments=segments, language=results.transcript.get("language"),
                   text="\n".join(s["text"] for s in segments))
    return out


def notes_view(results, session_row, current: dict | None = None) -> dict | None:
    """The notes with speaker names and role overrides applied; ``current`` is the notes'
    current reviewed version (review_flow.current_notes), else the machine's notes."""
    if current is None and (results is None or not results.notes):
        return None
    notes = dict(current if current is not None else results.notes)
    overrides = dict(session_row.role_overrides or {})
    names = dict(session_row.speaker_names or {})
    if overrides or names:
        merged_speakers = (results.merged or {}).get("speakers", [])
        _, _, role_of = relabel([], merged_speakers, names, overrides)

        def fix(item: dict) -> dict:
            label = item.get("speaker")
            if label in role_of:
                item = {**item, "role": role_of[label]}
            if label in names:
                item = {**item, "speaker_name": names[label]}
            return item

        notes["significant_quotes"] = [fix(q) for q in notes.get("significant_quotes", [])]
        notes["risk_flags"] = [fix(f) for f in notes.get("risk_flags", [])]
    notes["risk_flags"] = sorted(
        notes.get("risk_flags", []), key=lambda f: ({"high": 0, "moderate": 1, "low": 2}.get(f.get("severity"), 3), f.get("start", 0))
    )
    return notes


def _stage_metrics(results) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    if results is None:
        return metrics
    for name, payload in (("transcription", results.transcript), ("diarization", results.diarization)):
        if payload and payload.get("timing"):
            metrics[name] = {**payload["timing"], "engine": payload.get("engine")}
    if results.notes_engine:
        metrics["notes"] = results.notes_engine
    return metrics


def _diarization_view(results) -> dict[str, Any] | None:
    if results is None or not results.diarization:
        return None
    return {key: results.diarization.get(key) for key in ("turns", "speaker_count", "engine")}


TERMINAL = ("processed", "failed", "cancelled")
DEFAULT_STALLED_AFTER_S = 600.0


def liveness(status: str, last_progress_at: datetime | None, cancelled_at: datetime | None,
             cancel_reason: str | None, stalled_after_s: float, now: datetime | None = None) -> dict[str, Any]:
    """Status as the therapist should see it: "cancelled" once cancelled (whatever a later
    stage reports), and ``stalled`` for an unfinished session with no progress for
    ``stalled_after_s``."""
    if cancelled_at is not None:
        return {"status": "cancelled", "stalled": False, "stalled_for_s": None, "error": cancel_reason}
    now = now or datetime.now(timezone.utc)
    idle = (now - last_progress_at).total_seconds() if last_progress_at else None
    stalled = status not in TERMINAL and idle is not None and idle >= stalled_after_s
    return {"status": status, "stalled": stalled, "stalled_for_s": round(idle, 1) if stalled else None}


def _status_fields(status, row, stalled_after_s: float) -> dict[str, Any]:
    """The session_status row as SessionDetail fields (no row yet: just uploaded, and
    progress is counted from the upload)."""
    if status is None:
        fields = {"status": "uploading", "progress": 0, "message": "Upload received", "last_progress_at": row.created_at}
    else:
        fields = {"status": status.status, "progress": status.percent, "message": status.message,
                  "estimated_time_remaining": status.eta_s, "error": status.error,
                  "warnings": list(status.warnings or []), "stages": dict(status.stages or {}),
                  "processed_at": status.finished_at, "last_progress_at": status.updated_at}
    live = liveness(fields["status"], fields["last_progress_at"], row.cancelled_at,
                    row.cancel_reason, stalled_after_s)
    if live["status"] == "cancelled":
        fields.update(message="Cancelled", estimated_time_remaining=None)
    elif live["stalled"]:
        fields.update(estimated_time_remaining=None,
                      message=f"Stalled: no progress for {live['stalled_for_s'] / 60:.0f} min")
    return {**fields, **live}


async def session_detail(db: AsyncSession, blobs: BlobStore, row,
                         stalled_after_s: float = DEFAULT_STALLED_AFTER_S) -> SessionDetail:
    """The whole view of one session: status, transcript (relabelled), diarization, notes."""
    status = await queries.status_row(db, row.id)
    results = await queries.results_row(db, row.id)
    # Large transcripts live in the blob store (S3: a network read): off the event loop.
    tv = await asyncio.to_thread(transcript_view, results, blobs, row)
    notes = notes_view(results, row, await current_notes(db, row.id, results))
    return SessionDetail(
        id=row.id, patient_id=row.patient_id, therapist_id=row.therapist_id, session_date=row.session_date,
        created_at=row.created_at, **_status_fields(status, row, stalled_after_s),
        cancelled_at=row.cancelled_at, cancel_reason=row.cancel_reason,
        edited_segments=len(row.segment_edits or {}),
        audio_filename=row.audio_filename, duration_seconds=row.duration_s, language=tv["language"],
        diarized=tv["diarized"], speakers=tv["speakers"], transcript_text=tv["text"],
        transcript_segments=tv["segments"], diarization=_diarization_view(results),
        extracted_notes=notes, notes_engine=results.notes_engine if results is not None else None,
        notes_error=results.notes_error if results is not None else None,
        risk_flags=(notes or {}).get("risk_flags", []),
        therapist_summary=(notes or {}).get("therapist_notes"), patient_summary=(notes or {}).get("patient_summary"),
        metrics=_stage_metrics(results),
        quality_warnings=(results.quality_warnings if results is not None else None) or [],
    )
