"""REST, SSE and WebSocket routes."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
import base64
import json
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, Response, UploadFile, WebSocket
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy import and_, delete, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sse_starlette.sse import EventSourceResponse
from starlette.websockets import WebSocketDisconnect

from shared.blobstore import BlobTooLarge, session_prefix
from shared.contracts.events import (
    AudioRef,
    AudioUploaded,
    NotesRegenerate,
    ProcessingOptions,
    SessionDeleted,
    TranscriptRemerge,
)
from shared.db.tables import audit_log, patients, session_status, sessions, therapists
from shared.logging import get_logger
from shared.outbox import enqueue
from services.gateway import exports
from services.gateway.auth import AuthError
from services.gateway.deps import current_therapist, get_db, get_state, owned_session, websocket_token
from services.gateway.readmodel import history_after, notes_view, results_row, status_row, transcript_view
from services.gateway.schemas import (
    Accepted,
    ErrorBody,
    PatientCreate,
    PatientOut,
    ReadyStatus,
    RefreshRequest,
    RegenerateRequest,
    SessionDetail,
    SessionList,
    SessionSummary,
    SpeakerPatch,
    StatusMessage,
    TherapistCreate,
    TherapistOut,
    TokenResponse,
    UploadAccepted,
)
from services.gateway.state import GatewayState
from services.gateway.uploads import CONTENT_TYPES, UploadRejected, check_decodes, check_extension, check_magic

log = get_logger(__name__)
SOURCE = "gateway"
ERRORS = {401: {"model": ErrorBody}, 404: {"model": ErrorBody}, 422: {"model": ErrorBody}}
Therapist = Annotated[UUID, Depends(current_therapist)]
DB = Annotated[AsyncSession, Depends(get_db)]
State = Annotated[GatewayState, Depends(get_state)]

router = APIRouter()


@asynccontextmanager
async def committing(db: AsyncSession):
    """Commit the request's session (already begun by reads such as the auth check)."""
    try:
        yield
        await db.commit()
    except BaseException:
        await db.rollback()
        raise


# --- health ---------------------------------------------------------------------------
@router.get("/healthz", tags=["health"], summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", tags=["health"], summary="Readiness: database and broker reachable",
            response_model=ReadyStatus, responses={503: {"model": ReadyStatus, "description": "Not ready"}})
async def readyz(state: State, response: Response) -> dict[str, str]:
    broker = "ok" if state.broker_ready else ("disabled" if state.extra.get("broker_disabled") else "unavailable")
    checks = {"database": "ok", "broker": broker}
    try:
        async with state.session_factory() as db:
            await db.execute(text("SELECT 1"))
    except Exception:
        checks["database"] = "unavailable"
    if any(v not in ("ok", "disabled") for v in checks.values()):
        response.status_code = 503
    return checks


# --- auth -----------------------------------------------------------------------------
@router.post("/api/auth/token", response_model=TokenResponse, tags=["auth"],
             responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody}, 429: {"model": ErrorBody}},
             summary="OAuth2 password flow: email as username")
async def login(request: Request, state: State, db: DB, form: OAuth2PasswordRequestForm = Depends()) -> TokenResponse:
    client = request.client.host if request.client else "unknown"
    allowed, retry = state.login_limiter.allow(f"{client}:{form.username.lower()}")
    if not allowed:
        raise HTTPException(429, "too many login attempts; try again later", headers={"Retry-After": str(int(retry) + 1)})
    row = (await db.execute(select(therapists).where(therapists.c.email == form.username.lower()))).first()
    if not await state.passwords.verify_async(row.password_hash if row else None, form.password):
        raise HTTPException(401, "wrong email or password", headers={"WWW-Authenticate": "Bearer"})
    pair = state.tokens.issue(row.id)
    return TokenResponse(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in)


@router.post("/api/auth/refresh", response_model=TokenResponse, tags=["auth"],
             responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody}})
async def refresh(body: RefreshRequest, state: State, db: DB) -> TokenResponse:
    try:
        therapist_id = state.tokens.verify(body.refresh_token, kind="refresh")
    except AuthError as exc:
        raise HTTPException(401, str(exc)) from exc
    if (await db.execute(select(therapists.c.id).where(therapists.c.id == therapist_id))).first() is None:
        raise HTTPException(401, "unknown account")
    pair = state.tokens.issue(therapist_id)
    return TokenResponse(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in)


@router.get("/api/auth/me", response_model=TherapistOut, tags=["auth"], responses=ERRORS)
async def me(therapist_id: Therapist, db: DB) -> TherapistOut:
    row = (await db.execute(select(therapists).where(therapists.c.id == therapist_id))).one()
    return TherapistOut(id=row.id, email=row.email, display_name=row.display_name)


async def create_therapist(db: AsyncSession, state: GatewayState, body: TherapistCreate) -> UUID:
    therapist_id = uuid.uuid4()
    await db.execute(therapists.insert().values(
        id=therapist_id, email=body.email.lower(), password_hash=await state.passwords.hash_async(body.password),
        display_name=body.display_name))
    return therapist_id


# --- patients -----------------------------------------------------------------------------
@router.post("/api/patients", response_model=PatientOut, status_code=201, tags=["patients"], responses=ERRORS)
async def create_patient(body: PatientCreate, therapist_id: Therapist, db: DB) -> PatientOut:
    patient_id = uuid.uuid4()
    async with committing(db):
        row = (await db.execute(patients.insert().values(
            id=patient_id, therapist_id=therapist_id, display_name=body.display_name, external_ref=body.external_ref,
        ).returning(patients))).one()
    return PatientOut(id=row.id, display_name=row.display_name, external_ref=row.external_ref, created_at=row.created_at)


@router.get("/api/patients", response_model=list[PatientOut], tags=["patients"], responses=ERRORS)
async def list_patients(therapist_id: Therapist, db: DB) -> list[PatientOut]:
    rows = await db.execute(select(patients).where(patients.c.therapist_id == therapist_id).order_by(patients.c.display_name))
    return [PatientOut(id=r.id, display_name=r.display_name, external_ref=r.external_ref, created_at=r.created_at) for r in rows]


@router.get("/api/patients/{patient_id}", response_model=PatientOut, tags=["patients"], responses=ERRORS)
async def get_patient(patient_id: UUID, therapist_id: Therapist, db: DB) -> PatientOut:
    row = (await db.execute(select(patients).where(patients.c.id == patient_id, patients.c.therapist_id == therapist_id))).first()
    if row is None:
        raise HTTPException(404, "patient not found")
    return PatientOut(id=row.id, display_name=row.display_name, external_ref=row.external_ref, created_at=row.created_at)


# --- upload -----------------------------------------------------------------------------------
async def _chunks(upload: UploadFile, size: int = 1024 * 1024):
    while chunk := await upload.read(size):
        yield chunk


@router.post(
    "/api/sessions/upload", response_model=UploadAccepted, status_code=202, tags=["sessions"],
    responses={**ERRORS, 413: {"model": ErrorBody}, 415: {"model": ErrorBody}, 422: {"model": ErrorBody}, 429: {"model": ErrorBody}},
    summary="Upload a recording; processing starts at once",
)
async def upload(
    state: State,
    db: DB,
    therapist_id: Therapist,
    file: UploadFile | None = File(None, description="The recording (wav, mp3, m4a, flac, ogg, webm, mp4)"),
    patient_id: UUID | None = Form(None),
    session_date: datetime | None = Form(None),
    num_speakers: int | None = Form(None, ge=1, le=20),
    min_speakers: int | None = Form(None, ge=1, le=20),
    max_speakers: int | None = Form(None, ge=1, le=20),
    language: str | None = Form(None, max_length=8, pattern=r"^[a-z]{2,3}$"),
    notes_backend: Literal["offline", "llm"] | None = Form(None),
) -> UploadAccepted:
    settings = state.settings
    allowed, retry = state.upload_limiter.allow(str(therapist_id))
    if not allowed:
        raise HTTPException(429, "too many uploads; try again later", headers={"Retry-After": str(int(retry) + 1)})
    if file is None:
        raise UploadRejected(422, "missing_file", "no file: send the recording as the multipart field 'file'")
    if min_speakers and max_speakers and min_speakers > max_speakers:
        raise UploadRejected(422, "bad_speaker_range", "min_speakers is larger than max_speakers")
    if patient_id is not None:
        owns = await db.execute(select(patients.c.id).where(patients.c.id == patient_id, patients.c.therapist_id == therapist_id))
        if owns.first() is None:
            raise HTTPException(404, "patient not found")
    ext = check_extension(file.filename, settings.allowed_extensions)
    session_id = uuid.uuid4()
    key = f"{session_prefix(session_id)}audio.{ext}"
    try:
        try:
            stored = await state.blobs.put_stream(key, _chunks(file), max_bytes=settings.upload_max_bytes)
        except BlobTooLarge as exc:
            raise UploadRejected(413, "too_large", f"the file is larger than the {settings.upload_max_bytes} byte limit") from exc
        def probe_stored(path: Path):  # on a local copy (the file itself, or an S3 download), in a thread
            with open(path, "rb") as fh:
                check_magic(ext, fh.read(16))
            return check_decodes(path, settings.upload_max_duration_s)

        probe = await asyncio.to_thread(state.blobs.with_local_copy, stored.uri, probe_stored)
        options = ProcessingOptions(language=language, num_speakers=num_speakers, min_speakers=min_speakers,
                                    max_speakers=max_speakers, notes_backend=notes_backend)
        event = AudioUploaded(
            session_id=session_id, owner_id=therapist_id, patient_id=patient_id,
            audio=AudioRef(uri=stored.uri, sha256=stored.sha256, bytes=stored.size,
                           content_type=CONTENT_TYPES.get(ext, "application/octet-stream"),
                           duration_s=round(probe.duration_s, 3), filename=Path(file.filename or "").name),
            options=options,
        )
        async with committing(db):
            await db.execute(sessions.insert().values(
                id=session_id, therapist_id=therapist_id, patient_id=patient_id, session_date=session_date,
                audio_uri=stored.uri, audio_filename=event.audio.filename, audio_bytes=stored.size,
                audio_sha256=stored.sha256, content_type=event.audio.content_type, duration_s=event.audio.duration_s,
                options=options.model_dump(mode="json")))
            await enqueue(db, event, SOURCE)
            await db.execute(audit_log.insert().values(therapist_id=therapist_id, session_id=session_id, action="upload"))
    except BaseException:
        await asyncio.to_thread(state.blobs.delete_prefix, session_prefix(session_id))
        raise
    if state.relay:
        state.relay.wake()
    log.info("session_uploaded", session_id=str(session_id), bytes=stored.size, audio_s=round(probe.duration_s, 1))
    return UploadAccepted(id=session_id, patient_id=patient_id, therapist_id=therapist_id, session_date=session_date,
                          status="uploading", audio_filename=event.audio.filename, duration_s=event.audio.duration_s)


# --- sessions ---------------------------------------------------------------------------------
def _encode_cursor(created_at: datetime, session_id: UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{session_id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        created, sid = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(created), UUID(sid)
    except Exception as exc:
        raise HTTPException(422, "invalid cursor") from exc


@router.get("/api/sessions", response_model=SessionList, tags=["sessions"], responses={**ERRORS, 422: {"model": ErrorBody}})
async def list_sessions(
    therapist_id: Therapist,
    db: DB,
    patient_id: UUID | None = None,
    status: str | None = Query(None, max_length=32),
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = Query(20, ge=1, le=100),
    cursor: str | None = None,
) -> SessionList:
    query = (
        select(sessions, session_status.c.status, session_status.c.percent)
        .select_from(sessions.outerjoin(session_status, session_status.c.session_id == sessions.c.id))
        .where(sessions.c.therapist_id == therapist_id)
    )
    if patient_id:
        query = query.where(sessions.c.patient_id == patient_id)
    if status:
        query = query.where(session_status.c.status == status)
    if since:
        query = query.where(sessions.c.created_at >= since)
    if until:
        query = query.where(sessions.c.created_at < until)
    if cursor:
        created, sid = _decode_cursor(cursor)
        query = query.where(or_(sessions.c.created_at < created, and_(sessions.c.created_at == created, sessions.c.id < sid)))
    rows = (await db.execute(query.order_by(sessions.c.created_at.desc(), sessions.c.id.desc()).limit(limit + 1))).all()
    items = [
        SessionSummary(id=r.id, patient_id=r.patient_id, session_date=r.session_date, created_at=r.created_at,
                       status=r.status or "uploading", progress=r.percent or 0, audio_filename=r.audio_filename,
                       duration_seconds=r.duration_s)
        for r in rows[:limit]
    ]
    next_cursor = _encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
    return SessionList(items=items, next_cursor=next_cursor)


async def session_detail(state: GatewayState, db: AsyncSession, row) -> SessionDetail:
    status = await status_row(db, row.id)
    results = await results_row(db, row.id)
    # Large transcripts live in the blob store (S3: a network read): off the event loop.
    tv = await asyncio.to_thread(transcript_view, results, state.blobs, row)
    notes = notes_view(results, row)
    metrics = {}
    if results is not None:
        for name, payload in (("transcription", results.transcript), ("diarization", results.diarization)):
            if payload and payload.get("timing"):
                metrics[name] = {**payload["timing"], "engine": payload.get("engine")}
        if results.notes_engine:
            metrics["notes"] = results.notes_engine
    return SessionDetail(
        id=row.id, patient_id=row.patient_id, therapist_id=row.therapist_id, session_date=row.session_date,
        created_at=row.created_at, status=status.status if status else "uploading",
        progress=status.percent if status else 0, message=status.message if status else "Upload received",
        estimated_time_remaining=status.eta_s if status else None, error=status.error if status else None,
        warnings=list(status.warnings or []) if status else [], stages=dict(status.stages or {}) if status else {},
        audio_filename=row.audio_filename, duration_seconds=row.duration_s, language=tv["language"],
        diarized=tv["diarized"], speakers=tv["speakers"], transcript_text=tv["text"],
        transcript_segments=tv["segments"],
        diarization=({"turns": results.diarization.get("turns"), "speaker_count": results.diarization.get("speaker_count"),
                      "engine": results.diarization.get("engine")} if results is not None and results.diarization else None),
        extracted_notes=notes, notes_engine=results.notes_engine if results is not None else None,
        notes_error=results.notes_error if results is not None else None,
        risk_flags=(notes or {}).get("risk_flags", []),
        therapist_summary=(notes or {}).get("therapist_notes"), patient_summary=(notes or {}).get("patient_summary"),
        metrics=metrics, processed_at=status.finished_at if status else None,
    )


@router.get("/api/sessions/{session_id}", response_model=SessionDetail, tags=["sessions"], responses=ERRORS)
async def get_session(session_id: UUID, therapist_id: Therapist, state: State, db: DB) -> SessionDetail:
    row = await owned_session(session_id, therapist_id, db)
    async with committing(db):
        await db.execute(audit_log.insert().values(therapist_id=therapist_id, session_id=session_id, action="read"))
    return await session_detail(state, db, row)


@router.delete("/api/sessions/{session_id}", status_code=204, tags=["sessions"], responses=ERRORS,
               summary="Delete the session, its audio and every derived row (other services via session.deleted)")
async def delete_session(session_id: UUID, therapist_id: Therapist, state: State, db: DB) -> Response:
    await owned_session(session_id, therapist_id, db)
    async with committing(db):
        await db.execute(delete(sessions).where(sessions.c.id == session_id))
        await enqueue(db, SessionDeleted(session_id=session_id, owner_id=therapist_id), SOURCE)
        await db.execute(audit_log.insert().values(therapist_id=therapist_id, session_id=session_id, action="delete"))
    await asyncio.to_thread(state.blobs.delete_prefix, session_prefix(session_id))
    if state.relay:
        state.relay.wake()
    return Response(status_code=204)


@router.patch("/api/sessions/{session_id}/speakers", response_model=SessionDetail, tags=["sessions"],
              responses={**ERRORS, 422: {"model": ErrorBody}}, summary="Name speakers or fix/swap THERAPIST and CLIENT")
async def patch_speakers(session_id: UUID, body: SpeakerPatch, therapist_id: Therapist, state: State, db: DB) -> SessionDetail:
    row = await owned_session(session_id, therapist_id, db)
    for role in body.roles.values():
        if role not in (None, "THERAPIST", "CLIENT"):
            raise HTTPException(422, "roles must be THERAPIST, CLIENT or null")
    names = {**(row.speaker_names or {}), **{k: v[:100] for k, v in body.names.items()}}
    overrides = dict(row.role_overrides or {})
    if body.swap_roles:
        overrides["__swap__"] = not overrides.get("__swap__", False)
    overrides.update(body.roles)
    async with committing(db):
        await db.execute(update(sessions).where(sessions.c.id == session_id).values(speaker_names=names, role_overrides=overrides))
    row = await owned_session(session_id, therapist_id, db)
    return await session_detail(state, db, row)


@router.post("/api/sessions/{session_id}/notes:regenerate", response_model=Accepted, status_code=202, tags=["sessions"],
             responses=ERRORS, summary="Re-run notes, optionally with another backend")
async def regenerate_notes(session_id: UUID, therapist_id: Therapist, state: State, db: DB,
                           body: RegenerateRequest | None = None) -> Accepted:
    await owned_session(session_id, therapist_id, db)
    async with committing(db):
        await enqueue(db, NotesRegenerate(session_id=session_id, backend=body.backend if body else None,
                                          requested_by=therapist_id), SOURCE)
    if state.relay:
        state.relay.wake()
    return Accepted(id=session_id, status="extracting_notes")


@router.post("/api/sessions/{session_id}/transcript:remerge", response_model=Accepted, status_code=202, tags=["sessions"],
             responses=ERRORS, summary="Re-merge transcript and diarization (e.g. after late diarization)")
async def remerge(session_id: UUID, therapist_id: Therapist, state: State, db: DB) -> Accepted:
    await owned_session(session_id, therapist_id, db)
    async with committing(db):
        await enqueue(db, TranscriptRemerge(session_id=session_id, requested_by=therapist_id), SOURCE)
    if state.relay:
        state.relay.wake()
    return Accepted(id=session_id, status="merging")


# --- exports ---------------------------------------------------------------------------------
EXPORT_TYPES = {
    "txt": "text/plain; charset=utf-8", "json": "application/json", "srt": "application/x-subrip",
    "vtt": "text/vtt; charset=utf-8", "rttm": "text/plain; charset=utf-8", "notes.json": "application/json",
    "soap": "text/markdown; charset=utf-8", "dap": "text/markdown; charset=utf-8",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}


EXPORT_CONTENT = {
    "application/json": {"schema": {"type": "object"}},
    "text/plain": {"schema": {"type": "string"}},
    "application/x-subrip": {"schema": {"type": "string"}},
    "text/vtt": {"schema": {"type": "string"}},
    "text/markdown": {"schema": {"type": "string"}},
    EXPORT_TYPES["docx"]: {"schema": {"type": "string", "format": "binary"}},
}
AUDIO_CONTENT = {t: {"schema": {"type": "string", "format": "binary"}} for t in sorted(set(CONTENT_TYPES.values()))}


@router.get("/api/sessions/{session_id}/export/{fmt}", tags=["exports"],
            responses={200: {"description": "The export, as an attachment: txt/rttm text/plain, json and notes.json "
                                            "application/json, srt application/x-subrip, vtt text/vtt, soap and dap "
                                            "text/markdown, docx a Word document", "content": EXPORT_CONTENT},
                       **ERRORS, 409: {"model": ErrorBody, "description": "Not ready yet"}},
            summary="Download transcript, diarization or notes")
async def export(session_id: UUID, fmt: Literal["txt", "json", "srt", "vtt", "rttm", "notes.json", "soap", "dap", "docx"],
                 therapist_id: Therapist, state: State, db: DB) -> Response:
    row = await owned_session(session_id, therapist_id, db)
    detail = await session_detail(state, db, row)
    segments = detail.transcript_segments or []
    speakers = detail.speakers
    if fmt in ("txt", "json", "srt", "vtt") and not segments:
        raise HTTPException(409, "the transcript is not ready yet")
    if fmt == "rttm" and not detail.diarization:
        raise HTTPException(409, "no diarization for this session")
    if fmt in ("notes.json", "soap", "dap") and not detail.extracted_notes:
        raise HTTPException(409, "no notes for this session yet")
    if fmt == "docx" and not segments and not detail.extracted_notes:
        raise HTTPException(409, "neither a transcript nor notes for this session yet")
    if fmt == "txt":
        body = exports.to_txt(segments, speakers)
    elif fmt == "json":
        body = exports.to_json(segments, speakers, session_id=str(session_id), language=detail.language, diarized=detail.diarized)
    elif fmt == "srt":
        body = exports.to_srt(segments, speakers)
    elif fmt == "vtt":
        body = exports.to_vtt(segments, speakers)
    elif fmt == "rttm":
        body = exports.to_rttm([_Turn(**t) for t in detail.diarization["turns"]], str(session_id))
    elif fmt == "docx":
        meta = {"session_id": str(session_id), "session_date": detail.session_date, "duration_s": detail.duration_seconds,
                "language": detail.language, "engine": (detail.notes_engine or {}).get("backend")}
        body = await asyncio.to_thread(exports.to_docx, detail.extracted_notes, segments, speakers, meta)
    elif fmt == "notes.json":
        body = json.dumps(detail.extracted_notes, indent=2)
    else:
        from shared.contracts.events import SpeakerInfo
        from shared.contracts.notes import ClinicalNotes
        from shared.notes_render import SessionMeta, render_dap, render_soap

        meta = SessionMeta(session_date=detail.session_date, duration_s=detail.duration_seconds,
                           speakers=[SpeakerInfo.model_validate(s) for s in speakers],
                           engine=(detail.notes_engine or {}).get("backend"))
        notes = ClinicalNotes.model_validate(detail.extracted_notes)
        body = (render_soap if fmt == "soap" else render_dap)(notes, meta)
    async with committing(db):
        await db.execute(audit_log.insert().values(therapist_id=therapist_id, session_id=session_id, action=f"export:{fmt}"))
    filename = f"session-{session_id}.{fmt if fmt != 'notes.json' else 'notes.json'}" + (".md" if fmt in ("soap", "dap") else "")
    return Response(content=body, media_type=EXPORT_TYPES[fmt], headers={"Content-Disposition": f'attachment; filename="{filename}"'})


class _Turn:
    def __init__(self, start: float, end: float, speaker: str, **_: object) -> None:
        self.start, self.end, self.speaker = start, end, speaker


@router.get("/api/sessions/{session_id}/audio", tags=["sessions"], summary="The original recording (supports Range)",
            responses={200: {"description": "The recording as uploaded", "content": AUDIO_CONTENT}, **ERRORS},
            response_class=Response)
async def audio(session_id: UUID, therapist_id: Therapist, state: State, db: DB, request: Request):
    import re

    from fastapi.responses import FileResponse, StreamingResponse

    from shared.blobstore import BlobRangeNotSatisfiable, LocalBlobStore

    row = await owned_session(session_id, therapist_id, db)
    if isinstance(state.blobs, LocalBlobStore):
        path = state.blobs.path_for(row.audio_uri)
        if not path.exists():
            raise HTTPException(404, "audio not found")
        return FileResponse(path, media_type=row.content_type)
    # Object store: stream the body through the gateway, so authorisation stays here (no
    # presigned URL). One byte range is passed on to the store; anything else is served whole.
    byte_range = (request.headers.get("range") or "").strip()
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


# --- live progress ------------------------------------------------------------------------------
def status_message(payload: dict) -> dict:
    """session.status payload -> seed 001's progress message."""
    return StatusMessage(
        session_id=payload["session_id"], seq=payload["seq"], status=payload["status"], progress=payload["percent"],
        message=payload.get("message", ""), estimated_time_remaining=payload.get("eta_s"), error=payload.get("error"),
        stages=payload.get("stages", {}), warnings=payload.get("warnings", []), updated_at=payload.get("updated_at"),
    ).model_dump(mode="json")


TERMINAL = ("processed", "failed")


async def follow_status(state: GatewayState, session_id: UUID, after_seq: int, heartbeat_s: float = 15.0):
    """Yield ('progress'|'complete'|'ping', message) from status_history, after_seq on:
    the DB is the source, the hub only wakes us up."""
    wake = state.hub.subscribe(session_id)
    try:
        last = after_seq
        while True:
            wake.clear()
            async with state.session_factory() as db:
                payloads = await history_after(db, session_id, last)
                current = await status_row(db, session_id)
            for payload in payloads:
                last = payload["seq"]
                kind = "complete" if payload["status"] in TERMINAL else "progress"
                yield kind, status_message(payload)
                if kind == "complete":
                    return
            if current is not None and current.status in TERMINAL and current.seq <= last:
                return
            try:
                await asyncio.wait_for(wake.wait(), timeout=heartbeat_s)
            except asyncio.TimeoutError:
                yield "ping", {"type": "ping", "timestamp": datetime.now(timezone.utc).isoformat()}
    finally:
        state.hub.unsubscribe(session_id, wake)


@router.get("/api/sessions/{session_id}/status/stream", tags=["progress"], response_class=Response,
            responses={200: {"description": "`event: progress` and `event: complete` (data: StatusMessage JSON, "
                                            "id: seq), `event: ping` heartbeats",
                             "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                       204: {"description": "The session is finished and the client has already seen its last "
                                            "update (Last-Event-ID): nothing more will come"},
                       **ERRORS},
            summary="Server-sent events: `event: progress` / `event: complete`, id = seq; resume with Last-Event-ID")
async def status_stream(session_id: UUID, request: Request, therapist_id: Therapist, state: State, db: DB,
                        last_event_id: int | None = Query(None, alias="last_event_id")):
    await owned_session(session_id, therapist_id, db)
    header = request.headers.get("last-event-id")
    after = last_event_id if last_event_id is not None else (int(header) if header and header.isdigit() else 0)
    current = await status_row(db, session_id)
    if current is not None and current.status in TERMINAL and after >= current.seq:
        # The client already saw `complete` (an EventSource reconnecting after the stream
        # ended): 204 tells it to stop reconnecting instead of looping on empty streams.
        return Response(status_code=204)

    async def events():
        async for kind, message in follow_status(state, session_id, after, state.extra.get("heartbeat_s", 15.0)):
            if kind == "ping":
                yield {"event": "ping", "data": json.dumps(message)}
            else:
                yield {"event": kind, "id": str(message["seq"]), "data": json.dumps(message)}

    return EventSourceResponse(events(), ping=None, headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def websocket_status(websocket: WebSocket, session_id: UUID) -> None:
    state: GatewayState = websocket.app.state.gateway
    token = websocket_token(websocket)
    try:
        therapist_id = state.tokens.verify(token or "")
    except AuthError:
        await websocket.close(code=1008, reason="not authenticated")
        return
    async with state.session_factory() as db:
        owned = (await db.execute(select(sessions.c.id).where(sessions.c.id == session_id,
                                                              sessions.c.therapist_id == therapist_id))).first()
    if owned is None:
        await websocket.close(code=1008, reason="session not found")
        return
    await websocket.accept()
    after = int(websocket.query_params.get("last_seq", "0") or 0)
    try:
        async for kind, message in follow_status(state, session_id, after, state.extra.get("heartbeat_s", 15.0)):
            await websocket.send_json(message)
        await websocket.close(code=1000)
    except (WebSocketDisconnect, RuntimeError):
        return
