"""Reads the progress service's read model and assembles API views. Speaker names
and role overrides (PATCH /speakers) are applied here, at read time, so relabelling
never re-runs the pipeline."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.blobstore import BlobStore
from shared.db.tables import session_results, session_status, status_history

ROLE_SWAP = {"THERAPIST": "CLIENT", "CLIENT": "THERAPIST"}


async def status_row(db: AsyncSession, session_id: UUID):
    return (await db.execute(select(session_status).where(session_status.c.session_id == session_id))).first()


async def results_row(db: AsyncSession, session_id: UUID):
    return (await db.execute(select(session_results).where(session_results.c.session_id == session_id))).first()


async def history_after(db: AsyncSession, session_id: UUID, after_seq: int) -> list[dict]:
    rows = await db.execute(
        select(status_history.c.payload)
        .where(status_history.c.session_id == session_id, status_history.c.seq > after_seq)
        .order_by(status_history.c.seq)
    )
    return [r.payload for r in rows]


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
        out.update(segments=segments, speakers=speakers, diarized=results.merged.get("diarized"),
                   language=results.merged.get("language"), text=full_text(segments, speakers))
    elif results.transcript:
        segments = [{**s, "speaker": None, "role": None} for s in (_resolve(results.transcript, blobs) or [])]
        out.update(segments=segments, language=results.transcript.get("language"),
                   text="\n".join(s["text"] for s in segments))
    return out


def notes_view(results, session_row) -> dict | None:
    if results is None or not results.notes:
        return None
    notes = dict(results.notes)
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
