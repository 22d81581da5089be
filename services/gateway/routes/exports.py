"""Downloads: the transcript (txt, json, srt, vtt), the diarization (rttm) and the notes
(notes.json, SOAP, DAP and BIRP markdown, plain text for an EHR, docx, pdf), each as an
attachment, each read audited. Notes exports show the notes' current version (the signed
one once signed) with its review status and addenda (docs/adr/0008-notes-review-and-sign-off.md)."""

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
from services.gateway import exports, queries, review_flow
from services.gateway.deps import DB, ERRORS, ExportReader, State, committing, owned_session
from services.gateway.notes_pdf import to_pdf
from services.gateway.notes_render import ReviewInfo, SessionMeta, render_birp, render_dap, render_soap
from services.gateway.notes_text import render_ehr
from services.gateway.readmodel import session_detail
from services.gateway.schemas import ErrorBody, SessionDetail
from services.gateway.state import GatewayState

ExportFormat = Literal["txt", "json", "srt", "vtt", "rttm", "notes.json", "soap", "dap", "birp", "ehr", "docx", "pdf"]
EXPORT_TYPES = {
    "txt": "text/plain; charset=utf-8", "json": "application/json", "srt": "application/x-subrip",
    "vtt": "text/vtt; charset=utf-8", "rttm": "text/plain; charset=utf-8", "notes.json": "application/json",
    "soap": "text/markdown; charset=utf-8", "dap": "text/markdown; charset=utf-8",
    "birp": "text/markdown; charset=utf-8", "ehr": "text/plain; charset=utf-8",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "pdf": "application/pdf",
}
NOTES_TEXT = {"soap": render_soap, "dap": render_dap, "birp": render_birp, "ehr": render_ehr}
DOCUMENTS = ("docx", "pdf")  # notes and transcript, built in memory: off the event loop
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
    "birp": (TEXT, "The notes as a BIRP note (behavior, intervention, response, plan) in Markdown"),
    "ehr": (TEXT, "The notes as plain text to paste into an EHR (no markdown): risk flags, sections, "
                  "signature, addenda"),
    "docx": (BINARY, "Transcript and notes as a Word document"),
    "pdf": (BINARY, "Notes (risk flags on top, review status, addenda) then the transcript, as a PDF"),
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
    if fmt in ("notes.json", *NOTES_TEXT) and not notes:
        return "no notes for this session yet"
    if fmt in DOCUMENTS and segments is None and not notes:
        return "neither a transcript nor notes for this session yet"
    return None


def ready_exports(detail: SessionDetail) -> list[str]:
    """The formats GET .../export/{fmt} can produce now (the page offers only these)."""
    return [fmt for fmt in EXPORT_OPERATIONS if _not_ready(fmt, detail) is None]


def _engine(detail: SessionDetail) -> str | None:
    return (detail.notes_engine or {}).get("backend")


def _meta(detail: SessionDetail, review: ReviewInfo | None) -> SessionMeta:
    flags = (detail.extracted_notes or {}).get("risk_flags") or []
    return SessionMeta(session_date=detail.session_date, duration_s=detail.duration_seconds,
                       speakers=[SpeakerInfo.model_validate(s) for s in detail.speakers], engine=_engine(detail),
                       review=review, flag_reviews=[f.get("review") for f in flags])


def _render_notes(fmt: str, detail: SessionDetail, review: ReviewInfo | None = None) -> str:
    notes = ClinicalNotes.model_validate(detail.extracted_notes)
    return NOTES_TEXT[fmt](notes, _meta(detail, review))


def _render_pdf(detail: SessionDetail, review: ReviewInfo | None) -> bytes:
    notes = ClinicalNotes.model_validate(detail.extracted_notes) if detail.extracted_notes else None
    meta = _meta(detail, review)
    meta.title = "Session notes and transcript"
    return to_pdf(notes, meta, detail.transcript_segments or [], detail.speakers)


def _render_docx(detail: SessionDetail) -> bytes:
    meta = {"session_id": str(detail.id), "session_date": detail.session_date, "duration_s": detail.duration_seconds,
            "language": detail.language, "engine": _engine(detail)}
    return exports.to_docx(detail.extracted_notes, detail.transcript_segments or [], detail.speakers, meta)


def _render_text(fmt: str, detail: SessionDetail, review: ReviewInfo | None = None) -> str:
    segments, speakers = detail.transcript_segments or [], detail.speakers
    if fmt == "json":
        return exports.to_json(segments, speakers, session_id=str(detail.id), language=detail.language,
                               diarized=detail.diarized)
    if fmt == "rttm":
        return exports.to_rttm(detail.diarization["turns"], str(detail.id))
    if fmt == "notes.json":
        return json.dumps(detail.extracted_notes, indent=2)
    if fmt in NOTES_TEXT:
        return _render_notes(fmt, detail, review)
    return {"txt": exports.to_txt, "srt": exports.to_srt, "vtt": exports.to_vtt}[fmt](segments, speakers)


EXTENSIONS = {"txt": "txt", "json": "json", "srt": "srt", "vtt": "vtt", "rttm": "rttm", "notes.json": "json",
              "soap": "md", "dap": "md", "birp": "md", "ehr": "txt",
              "docx": "docx", "pdf": "pdf"}
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
    review = None
    if fmt in (*NOTES_TEXT, "pdf"):  # these show the review state (signature, flag reviews, addenda)
        async with committing(db):  # the notes' versions first, so the export shows the current one
            review = await review_flow.export_review(db, session_id, await queries.results_row(db, session_id))
    detail = await session_detail(db, state.blobs, row)
    if (reason := _not_ready(fmt, detail)) is not None:
        raise HTTPException(409, reason)
    if fmt == "docx":  # python-docx and reportlab build the document in memory: off the event loop
        body: str | bytes = await asyncio.to_thread(_render_docx, detail)
    elif fmt == "pdf":
        body = await asyncio.to_thread(_render_pdf, detail, review)
    else:
        body = _render_text(fmt, detail, review)
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
