"""Sessions: upload a recording, list, read, relabel speakers, re-run stages, delete,
and download the original audio. Every route answers 404 for another therapist's
session (deps.owned_session), so existence is never revealed."""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.blobstore import BlobRangeNotSatisfiable, BlobTooLarge, LocalBlobStore, session_prefix
from shared.contracts.events import (
    AudioRef,
    AudioUploaded,
    NotesRegenerate,
    ProcessingOptions,
    SessionDeleted,
    TranscriptRemerge,
)
from shared.logging import get_logger
from shared.outbox import enqueue
from services.gateway import queries
from services.gateway.deps import DB, ERRORS, AudioReader, State, Therapist, committing, owned_session
from services.gateway.readmodel import liveness, session_detail
from services.gateway.routes.exports import ready_exports
from services.gateway.review_flow import before_regenerate
from services.gateway.schemas import (
    Accepted,
    BoundedDatetime,
    ErrorBody,
    RegenerateRequest,
    SafeText,
    SessionDetail,
    SessionList,
    SessionSummary,
    SpeakerPatch,
    UploadAccepted,
    UploadFields,
    in_date_range,
    no_nul,
    upload_request_body,
)
from services.gateway.state import GatewayState
from services.gateway.uploads import CONTENT_TYPES, UploadRejected, check_decodes, check_extension, check_magic

log = get_logger(__name__)
SOURCE = "gateway"
UPLOAD_ERRORS = {**ERRORS, 413: {"model": ErrorBody}, 415: {"model": ErrorBody}, 429: {"model": ErrorBody}}
AUDIO_CONTENT = {t: {"schema": {"type": "string", "format": "binary"}} for t in sorted(set(CONTENT_TYPES.values()))}

router = APIRouter(tags=["sessions"])


# --- upload -----------------------------------------------------------------------------------
async def _chunks(upload: UploadFile, size: int = 1024 * 1024):
    while chunk := await upload.read(size):
        yield chunk


async def _store_and_probe(state: GatewayState, file: UploadFile, ext: str, session_id: UUID):
    """Stream the body to the blob store (capped), then check magic bytes and decode it
    from a local copy, in a thread. Raises UploadRejected for anything that is not audio."""
    settings = state.settings
    key = f"{session_prefix(session_id)}audio.{ext}"
    try:
        stored = await state.blobs.put_stream(key, _chunks(file), max_bytes=settings.upload_max_bytes)
    except BlobTooLarge as exc:
        raise UploadRejected(413, "too_large", f"the file is larger than the {settings.upload_max_bytes} byte limit") from exc

    def probe_stored(path: Path):  # on a local copy (the file itself, or an S3 download)
        with open(path, "rb") as fh:
            check_magic(ext, fh.read(16))
        return check_decodes(path, settings.upload_max_duration_s)

    probe = await asyncio.to_thread(state.blobs.with_local_copy, stored.uri, probe_stored)
    return stored, probe


async def _record_upload(db: AsyncSession, event: AudioUploaded, session_date: datetime | None) -> None:
    """The session row, its audio.uploaded event (outbox) and the audit entry: one transaction."""
    audio = event.audio
    async with committing(db):
        await queries.insert_session(
            db, id=event.session_id, therapist_id=event.owner_id, patient_id=event.patient_id,
            session_date=session_date, audio_uri=audio.uri, audio_filename=audio.filename, audio_bytes=audio.bytes,
            audio_sha256=audio.sha256, content_type=audio.content_type, duration_s=audio.duration_s,
            options=event.options.model_dump(mode="json"))
        await enqueue(db, event, SOURCE)
        await queries.audit(db, event.owner_id, event.session_id, "upload")


async def _ingest(state: GatewayState, db: AsyncSession, file: UploadFile, therapist_id: UUID,
                  fields: UploadFields) -> AudioUploaded:
    """Store, probe and record one upload; on any failure its blobs are removed again."""
    ext = check_extension(file.filename, state.settings.allowed_extensions)
    session_id = uuid.uuid4()
    options = fields.model_dump(include={"language", "num_speakers", "min_speakers", "max_speakers", "notes_backend"})
    try:
        stored, probe = await _store_and_probe(state, file, ext, session_id)
        event = AudioUploaded(
            session_id=session_id, owner_id=therapist_id, patient_id=fields.patient_id,
            audio=AudioRef(uri=stored.uri, sha256=stored.sha256, bytes=stored.size,
                           content_type=CONTENT_TYPES.get(ext, "application/octet-stream"),
                           duration_s=round(probe.duration_s, 3), filename=Path(file.filename or "").name),
            options=ProcessingOptions(**options),
        )
        await _record_upload(db, event, fields.session_date)
    except BaseException:
        await asyncio.to_thread(state.blobs.delete_prefix, session_prefix(session_id))
        raise
    state.publish_soon()
    log.info("session_uploaded", session_id=str(session_id), bytes=stored.size, audio_s=round(probe.duration_s, 1))
    return event


def _check_upload_rate(state: GatewayState, therapist_id: UUID) -> None:
    allowed, retry = state.upload_limiter.allow(str(therapist_id))
    if not allowed:
        raise HTTPException(429, "too many uploads; try again later", headers={"Retry-After": str(int(retry) + 1)})


@asynccontextmanager
async def _upload_form(request: Request):
    """(file, fields) from the multipart body, read only now (after authentication; the
    BodyLimit middleware caps it, declared or chunked); the spooled file is closed after."""
    try:
        form = await request.form(max_files=1, max_fields=len(UploadFields.model_fields) + 4,
                                  max_part_size=64 * 1024)
    except StarletteHTTPException as exc:  # Starlette's answer to a malformed multipart body
        raise UploadRejected(422, "bad_form", f"the multipart body could not be read: {exc.detail}") from None
    try:
        file = form.get("file")
        raw = {k: v for k, v in form.multi_items() if k != "file" and isinstance(v, str) and v != ""}
        try:
            fields = UploadFields.model_validate(raw)
        except ValidationError as exc:
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)])
        yield (file if isinstance(file, UploadFile) else None), fields
    finally:
        await form.close()


async def _check_upload_request(db: AsyncSession, therapist_id: UUID, file: UploadFile | None,
                                fields: UploadFields) -> None:
    if file is None:
        raise UploadRejected(422, "missing_file", "no file: send the recording as the multipart field 'file'")
    if fields.min_speakers and fields.max_speakers and fields.min_speakers > fields.max_speakers:
        raise UploadRejected(422, "bad_speaker_range", "min_speakers is larger than max_speakers")
    if fields.patient_id is not None and await queries.owned_patient(db, fields.patient_id, therapist_id) is None:
        raise HTTPException(404, "patient not found")


@router.post("/api/sessions/upload", response_model=UploadAccepted, status_code=202, responses=UPLOAD_ERRORS,
             openapi_extra={"requestBody": upload_request_body()},
             summary="Upload a recording; processing starts at once")
async def upload(request: Request, state: State, db: DB, therapist_id: Therapist) -> UploadAccepted:
    # No File/Form parameters: FastAPI would read (and spool) the whole body before the
    # authentication dependency ran. The form is read here, once the caller is known.
    _check_upload_rate(state, therapist_id)
    await db.close()  # no pooled connection held while the body arrives
    async with _upload_form(request) as (file, fields):
        await _check_upload_request(db, therapist_id, file, fields)
        event = await _ingest(state, db, file, therapist_id, fields)
    return UploadAccepted(id=event.session_id, patient_id=fields.patient_id, therapist_id=therapist_id,
                          session_date=fields.session_date, status="uploading", audio_filename=event.audio.filename,
                          duration_s=event.audio.duration_s)


# --- list and read ----------------------------------------------------------------------------
def _encode_cursor(created_at: datetime, session_id: UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{session_id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        created, sid = no_nul(base64.urlsafe_b64decode(cursor.encode()).decode()).split("|")
        return in_date_range(datetime.fromisoformat(created)), UUID(sid)
    except ValueError as exc:  # bad base64, text, date (or out of range), uuid: all ValueErrors
        raise HTTPException(422, "invalid cursor") from exc


SEVERITY_RANK = {"high": 3, "moderate": 2, "low": 1}
SortKey = Literal["date", "created", "duration", "status", "patient", "filename"]


def max_severity(flags) -> str | None:
    ranked = [f.get("severity") for f in (flags or []) if isinstance(f, dict) and f.get("severity") in SEVERITY_RANK]
    return max(ranked, key=SEVERITY_RANK.__getitem__) if ranked else None


def _summary(r, stalled_after_s: float) -> SessionSummary:
    live = liveness(r.status or "uploading", r.status_updated_at or r.created_at, r.cancelled_at, r.cancel_reason,
                    stalled_after_s)
    return SessionSummary(id=r.id, patient_id=r.patient_id, session_date=r.session_date, created_at=r.created_at,
                          status=live["status"], progress=r.percent or 0, audio_filename=r.audio_filename,
                          duration_seconds=r.duration_s, patient_name=r.patient_name,
                          max_risk_severity=max_severity(r.risk_flags), risk_flag_count=len(r.risk_flags or []),
                          stalled=live["stalled"], last_progress_at=r.status_updated_at or r.created_at,
                          cancel_reason=r.cancel_reason,
                          quality_warning_count=r.quality_warning_count or 0)


def _page_cursor(rows: list, limit: int, sort: str, descending: bool, offset: int) -> str | None:
    if len(rows) <= limit:
        return None
    if sort == "created" and descending:
        return _encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id)
    return base64.urlsafe_b64encode(f"offset|{offset + limit}".encode()).decode()


def _read_cursor(cursor: str | None) -> tuple[tuple[datetime, UUID] | None, int]:
    """(after, offset) from a cursor of either kind."""
    if not cursor:
        return None, 0
    try:
        kind, value = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        if kind == "offset":
            return None, max(0, min(int(value), 1_000_000))
    except ValueError as exc:
        raise HTTPException(422, "invalid cursor") from exc
    return _decode_cursor(cursor), 0


@router.get("/api/sessions", response_model=SessionList, responses=ERRORS,
            summary="The therapist's sessions: filter, search (filename or patient name) and sort")
async def list_sessions(
    therapist_id: Therapist,
    state: State,
    db: DB,
    patient_id: UUID | None = None,
    status: SafeText | None = Query(None, max_length=32),
    since: BoundedDatetime | None = None,
    until: BoundedDatetime | None = None,
    q: SafeText | None = Query(None, max_length=200, description="Text in the filename or the patient's name"),
    sort: SortKey = Query("created", description="date (session date, else upload time), created, duration, ..."),
    order: Literal["asc", "desc"] = "desc",
    limit: int = Query(20, ge=1, le=100),
    cursor: SafeText | None = Query(None, max_length=200),
) -> SessionList:
    after, offset = _read_cursor(cursor)
    descending = order == "desc"
    rows = await queries.session_page(db, therapist_id, patient_id=patient_id, status=status, since=since,
                                      until=until, q=q, after=after, limit=limit + 1, sort=sort,
                                      descending=descending, offset=offset)
    stalled_after = state.settings.stalled_after_s
    return SessionList(items=[_summary(r, stalled_after) for r in rows[:limit]],
                       next_cursor=_page_cursor(rows, limit, sort, descending, offset))


@router.get("/api/sessions/{session_id}", response_model=SessionDetail, responses=ERRORS)
async def get_session(session_id: UUID, therapist_id: Therapist, state: State, db: DB) -> SessionDetail:
    row = await owned_session(session_id, therapist_id, db)
    async with committing(db):
        await queries.audit(db, therapist_id, session_id, "read")
    return await full_detail(db, state, row)


async def full_detail(db: AsyncSession, state: GatewayState, row) -> SessionDetail:
    """The session as GET /api/sessions/{id} answers it (stalled judged now, ready exports listed)."""
    detail = await session_detail(db, state.blobs, row, state.settings.stalled_after_s)
    return detail.model_copy(update={"exports": ready_exports(detail)})


# --- change -----------------------------------------------------------------------------------
@router.delete("/api/sessions/{session_id}", status_code=204, responses=ERRORS,
               summary="Delete the session, its audio and every derived row (other services via session.deleted)")
async def delete_session(session_id: UUID, therapist_id: Therapist, state: State, db: DB) -> Response:
    await owned_session(session_id, therapist_id, db)
    async with committing(db):
        await queries.delete_session(db, session_id)
        await enqueue(db, SessionDeleted(session_id=session_id, owner_id=therapist_id), SOURCE)
        await queries.audit(db, therapist_id, session_id, "delete")
    state.hub.notify(session_id)  # this replica's streams end now; others on session.deleted
    await asyncio.to_thread(state.blobs.delete_prefix, session_prefix(session_id))
    state.publish_soon()
    return Response(status_code=204)


@router.patch("/api/sessions/{session_id}/speakers", response_model=SessionDetail, responses=ERRORS,
              summary="Name speakers or fix/swap roles (THERAPIST, CLIENT, CLIENT 1, CLIENT 2, ...)")
async def patch_speakers(session_id: UUID, body: SpeakerPatch, therapist_id: Therapist, state: State, db: DB) -> SessionDetail:
    row = await owned_session(session_id, therapist_id, db)
    names = {**(row.speaker_names or {}), **{k: v[:100] for k, v in body.names.items()}}
    overrides = dict(row.role_overrides or {})
    if body.swap_roles:
        overrides["__swap__"] = not overrides.get("__swap__", False)
    overrides.update({label: role.upper() if role else None for label, role in body.roles.items()})
    async with committing(db):
        await queries.set_speaker_labels(db, session_id, names, overrides)
    row = await owned_session(session_id, therapist_id, db)
    return await full_detail(db, state, row)


@router.post("/api/sessions/{session_id}/notes:regenerate", response_model=Accepted, status_code=202,
             responses={**ERRORS, 409: {"model": ErrorBody, "description": "Signed, or edited without discard_edits"}},
             summary="Re-run notes, optionally with another backend (refused once signed or, without "
                     "discard_edits, once a therapist edited them)")
async def regenerate_notes(session_id: UUID, therapist_id: Therapist, state: State, db: DB,
                           body: RegenerateRequest | None = None) -> Accepted:
    row = await owned_session(session_id, therapist_id, db)
    async with committing(db):
        await before_regenerate(db, session_id, await queries.results_row(db, session_id),
                                bool(body and body.discard_edits))
        await enqueue(db, regenerate_command(row, therapist_id, body.backend if body else None), SOURCE)
    state.publish_soon()
    return Accepted(id=session_id, status="extracting_notes")


def regenerate_command(row, therapist_id: UUID, backend: str | None) -> NotesRegenerate:
    """notes.regenerate with the therapist's corrections (speaker names and roles, edited
    segment texts), so the new notes are written from the corrected transcript."""
    overrides = dict(row.role_overrides or {})
    return NotesRegenerate(session_id=row.id, backend=backend, requested_by=therapist_id,
                           speaker_names=dict(row.speaker_names or {}),
                           speaker_roles={k: v for k, v in overrides.items() if k != "__swap__"},
                           swap_roles=bool(overrides.get("__swap__")),
                           segment_texts={k: v["text"] for k, v in (row.segment_edits or {}).items()})


@router.post("/api/sessions/{session_id}/transcript:remerge", response_model=Accepted, status_code=202,
             responses=ERRORS, summary="Re-merge transcript and diarization (e.g. after late diarization)")
async def remerge(session_id: UUID, therapist_id: Therapist, state: State, db: DB) -> Accepted:
    await owned_session(session_id, therapist_id, db)
    async with committing(db):
        await enqueue(db, TranscriptRemerge(session_id=session_id, requested_by=therapist_id), SOURCE)
    state.publish_soon()
    return Accepted(id=session_id, status="merging")


# --- audio ------------------------------------------------------------------------------------
async def _stream_from_object_store(state: GatewayState, row, range_header: str | None) -> Response:
    """Stream the body through the gateway, so authorisation stays here (no presigned URL).
    One byte range is passed on to the store; anything else is served whole."""
    byte_range = (range_header or "").strip()
    if not re.fullmatch(r"bytes=(\d+-\d*|-\d+)", byte_range):
        byte_range = ""
    try:
        obj = await asyncio.to_thread(state.blobs.open, row.audio_uri, byte_range or None)
    except FileNotFoundError:
        raise HTTPException(404, "audio not found") from None
    except BlobRangeNotSatisfiable:
        raise HTTPException(416, "range not satisfiable", headers={"Content-Range": f"bytes */{row.audio_bytes}"}) from None
    headers = {"Accept-Ranges": "bytes", "Content-Length": str(obj.size)}
    status = 200
    if byte_range and obj.content_range:
        headers["Content-Range"], status = obj.content_range, 206
    return StreamingResponse(obj.chunks(), status_code=status, media_type=row.content_type, headers=headers)


@router.get("/api/sessions/{session_id}/audio", summary="The original recording (supports Range)",
            responses={200: {"description": "The recording as uploaded", "content": AUDIO_CONTENT}, **ERRORS},
            response_class=Response)
async def audio(session_id: UUID, therapist_id: AudioReader, state: State, db: DB, request: Request):
    row = await owned_session(session_id, therapist_id, db)
    if not isinstance(state.blobs, LocalBlobStore):
        return await _stream_from_object_store(state, row, request.headers.get("range"))
    path = state.blobs.path_for(row.audio_uri)
    if not path.exists():
        raise HTTPException(404, "audio not found")
    return FileResponse(path, media_type=row.content_type)
