"""Downloads: the transcript (txt, json, srt, vtt), the diarization (rttm) and the notes
(notes.json, SOAP and DAP markdown, docx), each as an attachment, each read audited."""

from __future__ import annotations

import asyncio
import json
import re
import unicodedata
from datetime import datetime
from typing import Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Response
from sqlalchemy.ext.asyncio import AsyncSession

from shared.contracts.events import SpeakerInfo
from shared.contracts.notes import ClinicalNotes
from services.gateway import exports, queries
from services.gateway.deps import DB, ERRORS, ExportReader, State, committing, owned_session
from services.gateway.notes_render import SessionMeta, render_dap, render_soap
from services.gateway.readmodel import session_detail
from services.gateway.schemas import ErrorBody, SessionDetail
from services.gateway.state import GatewayState

ExportFormat = Literal["txt", "json", "srt", "vtt", "rttm", "notes.json", "soap", "dap", "docx"]
EXPORT_TYPES = {
    "txt": "text/plain; charset=utf-8", "json": "application/json", "srt": "application/x-subrip",
    "vtt": "text/vtt; charset=utf-8", "rttm": "text/plain; charset=utf-8", "notes.json": "application/json",
    "soap": "text/markdown; charset=utf-8", "dap": "text/markdown; charset=utf-8",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}
TEXT = {"type": "string"}
BINARY = {"type": "string", "format": "binary"}
JSON_DOCUMENT = {"type": "object", "additionalProperties": True}
# One operation per format, so each documents the one content type it answers (a
# generated client reads each body as what it is: text, a JSON document or bytes).
EXPORT_OPERATIONS: dict[str, tuple[dict, str]] = {
    "txt": (TEXT, "The transcript as plain text, one line per speaker turn (empty when nobody spoke)"),
    "json": (JSON_DOCUMENT, "The transcript with word timings and speakers (no segments when nobody spoke)"),
    "srt": (BINARY, "SubRip subtitles (no cues when nobody spoke)"),
    "vtt": (TEXT, "WebVTT subtitles with speaker voices (just the header when nobody spoke)"),
    "rttm": (TEXT, "Who spoke when, in NIST RTTM (no lines when nobody spoke)"),
    "notes.json": (JSON_DOCUMENT, "The clinical notes (ClinicalNotes) as JSON"),
    "soap": (TEXT, "The notes as a SOAP note in Markdown"),
    "dap": (TEXT, "The notes as a DAP note in Markdown"),
    "docx": (BINARY, "Transcript and notes as a Word document"),
}


def export_responses(fmt: str) -> dict:
    schema, description = EXPORT_OPERATIONS[fmt]
    media_type = EXPORT_TYPES[fmt].split(";")[0]
    return {200: {"description": f"{description}, as an attachment", "content": {media_type: {"schema": schema}}},
            **ERRORS, 409: {"model": ErrorBody, "description": "Not ready yet"}}


router = APIRouter(tags=["exports"])


def _not_ready(fmt: str, detail: SessionDetail) -> str | None:
    """Why ``fmt`` cannot be produced yet (409), or None. A transcript or diarization with
    nothing in it (nobody spoke) is ready: it exports as an empty but valid document."""
    segments, notes = detail.transcript_segments, detail.extracted_notes
    if fmt in ("txt", "json", "srt", "vtt") and segments is None:
        return "the transcript is not ready yet"
    if fmt == "rttm" and detail.diarization is None:
        return "no diarization for this session"
    if fmt in ("notes.json", "soap", "dap") and not notes:
        return "no notes for this session yet"
    if fmt == "docx" and segments is None and not notes:
        return "neither a transcript nor notes for this session yet"
    return None


def ready_exports(detail: SessionDetail) -> list[str]:
    """The formats GET .../export/{fmt} can produce now (the page offers only these)."""
    return [fmt for fmt in EXPORT_OPERATIONS if _not_ready(fmt, detail) is None]


def _engine(detail: SessionDetail) -> str | None:
    return (detail.notes_engine or {}).get("backend")


def _render_notes(fmt: str, detail: SessionDetail) -> str:
    meta = SessionMeta(session_date=detail.session_date, duration_s=detail.duration_seconds,
                       speakers=[SpeakerInfo.model_validate(s) for s in detail.speakers], engine=_engine(detail))
    notes = ClinicalNotes.model_validate(detail.extracted_notes)
    return (render_soap if fmt == "soap" else render_dap)(notes, meta)


def _render_docx(detail: SessionDetail) -> bytes:
    meta = {"session_id": str(detail.id), "session_date": detail.session_date, "duration_s": detail.duration_seconds,
            "language": detail.language, "engine": _engine(detail)}
    return exports.to_docx(detail.extracted_notes, detail.transcript_segments or [], detail.speakers, meta)


def _render_text(fmt: str, detail: SessionDetail) -> str:
    segments, speakers = detail.transcript_segments or [], detail.speakers
    if fmt == "json":
        return exports.to_json(segments, speakers, session_id=str(detail.id), language=detail.language,
                               diarized=detail.diarized)
    if fmt == "rttm":
        return exports.to_rttm(detail.diarization["turns"], str(detail.id))
    if fmt == "notes.json":
        return json.dumps(detail.extracted_notes, indent=2)
    if fmt in ("soap", "dap"):
        return _render_notes(fmt, detail)
    return {"txt": exports.to_txt, "srt": exports.to_srt, "vtt": exports.to_vtt}[fmt](segments, speakers)


EXTENSIONS = {"txt": "txt", "json": "json", "srt": "srt", "vtt": "vtt", "rttm": "rttm", "notes.json": "json",
              "soap": "md", "dap": "md", "docx": "docx"}
LABELS = {"notes.json": "notes"}


def safe_part(text: str, limit: int = 60) -> str:
    """Letters, digits, '-' and '_' only (ASCII: every browser and file system takes it)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9]+", "-", ascii_text).strip("-")[:limit].strip("-")


def attachment_name(session_id: UUID, fmt: str, patient: str | None = None, when: datetime | None = None) -> str:
    """<patient>-<date>-<format>.<ext>, e.g. jane-doe-2026-03-02-soap.md; "session" and the
    id's first part stand in for a missing patient name, the upload's day for a missing date."""
    who = safe_part(patient or "") or f"session-{str(session_id)[:8]}"
    day = when.date().isoformat() if when else "undated"
    return f"{who}-{day}-{safe_part(LABELS.get(fmt, fmt))}.{EXTENSIONS[fmt]}"


async def export(session_id: UUID, fmt: ExportFormat, therapist_id: UUID, state: GatewayState, db: AsyncSession) -> Response:
    row = await owned_session(session_id, therapist_id, db)
    detail = await session_detail(db, state.blobs, row)
    if (reason := _not_ready(fmt, detail)) is not None:
        raise HTTPException(409, reason)
    if fmt == "docx":  # python-docx builds the document in memory: off the event loop
        body: str | bytes = await asyncio.to_thread(_render_docx, detail)
    else:
        body = _render_text(fmt, detail)
    patient = await queries.owned_patient(db, row.patient_id, therapist_id) if row.patient_id else None
    async with committing(db):
        await queries.audit(db, therapist_id, session_id, f"export:{fmt}")
    name = attachment_name(session_id, fmt, patient.display_name if patient else None,
                           row.session_date or row.created_at)
    return Response(content=body, media_type=EXPORT_TYPES[fmt],
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _export_route(fmt: str) -> None:
    """GET /api/sessions/{id}/export/<fmt>, operation ``export_<fmt>``: the same URL for every
    format as before, one operation (and one content type) each in the API description."""

    async def export_format(session_id: UUID, therapist_id: ExportReader, state: State, db: DB) -> Response:
        return await export(session_id, fmt, therapist_id, state, db)

    router.add_api_route(f"/api/sessions/{{session_id}}/export/{fmt}", export_format, methods=["GET"],
                         operation_id=f"export_{fmt.replace('.', '_')}", response_class=Response,
                         responses=export_responses(fmt), summary=f"Download the {fmt} export")


for _fmt in EXPORT_OPERATIONS:
    _export_route(_fmt)
