"""The signed-in therapist's enrolled voice (issue 14 item 4, ADR 0010): upload a 20-60 s
sample once (PUT), see whether it is enrolled (GET), remove it (DELETE).

The gateway validates and decodes the sample exactly as an upload (extension, magic bytes,
a real decode; in a worker thread), then stores the decoded 16 kHz samples in a pending
``therapist_voices`` row. The diarizer, which owns the speaker-embedding model, replaces
them with the embedding within about a second; only the embedding is kept. Every bad
sample gets a 422 with the reason. Nothing here reveals anything about other accounts."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import numpy as np
from fastapi import APIRouter, HTTPException, Request, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.audio import SAMPLE_RATE, AudioDecodeError, decode_audio
from shared.logging import get_logger
from services.gateway import queries
from services.gateway.deps import DB, ERRORS, State, Therapist, committing
from services.gateway.schemas import ErrorBody, VoiceEnrolment
from services.gateway.uploads import UploadRejected, check_decodes, check_extension, check_magic

log = get_logger(__name__)
router = APIRouter(tags=["voice"])
VOICE_ERRORS = {**ERRORS, 413: {"model": ErrorBody}}
VOICE_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary",
                            "description": "20-60 s of the therapist speaking alone (wav, mp3, m4a, flac, ogg, webm)"}},
}}}}}


def _reject(code: str, reason: str) -> UploadRejected:
    return UploadRejected(422, code, reason)


def decode_sample(fileobj, ext: str, min_s: float, max_s: float) -> tuple[bytes, float]:
    """Blocking: the sample as 16 kHz mono int16 bytes and its length, or UploadRejected
    (422) for anything that is not a 20-60 s decodable recording."""
    with tempfile.NamedTemporaryFile(suffix=f".{ext}") as tmp:  # mode 0600
        shutil.copyfileobj(fileobj, tmp)
        tmp.flush()
        path = Path(tmp.name)
        try:
            with open(path, "rb") as fh:
                check_magic(ext, fh.read(16))
            check_decodes(path, max_s + 1.0)
            audio = decode_audio(path, SAMPLE_RATE, max_duration_s=max_s + 1.0)
        except (UploadRejected, AudioDecodeError) as exc:
            if exc.code == "too_long":
                raise _reject("too_long", f"the voice sample is longer than {max_s:.0f} s; it must be "
                                          f"{min_s:.0f}-{max_s:.0f} s") from exc
            raise _reject(exc.code, f"the voice sample is not usable: {exc.reason}") from exc
    seconds = len(audio) / SAMPLE_RATE
    if seconds < min_s:
        raise _reject("too_short", f"the voice sample is {seconds:.1f} s long; it must be {min_s:.0f}-{max_s:.0f} s")
    if seconds > max_s:
        raise _reject("too_long", f"the voice sample is {seconds:.1f} s long; it must be {min_s:.0f}-{max_s:.0f} s")
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    return pcm, round(seconds, 3)


async def _sample_file(request: Request) -> tuple[UploadFile, object]:
    try:
        form = await request.form(max_files=1, max_fields=2, max_part_size=64 * 1024)
    except StarletteHTTPException as exc:
        raise _reject("bad_form", f"the multipart body could not be read: {exc.detail}") from None
    file = form.get("file")
    if not isinstance(file, UploadFile):
        await form.close()
        raise _reject("missing_file", "no file: send the voice sample as the multipart field 'file'")
    return file, form


def _view(row) -> VoiceEnrolment:
    if row is None:
        return VoiceEnrolment(enrolled=False, status="none")
    return VoiceEnrolment(enrolled=row.status == "enrolled", status=row.status, sample_s=row.sample_s,
                          requested_at=row.requested_at, enrolled_at=row.enrolled_at, model=row.model, error=row.error)


@router.put("/api/therapists/me/voice", response_model=VoiceEnrolment, status_code=202, responses=VOICE_ERRORS,
            openapi_extra=VOICE_BODY, summary="Enrol your voice: a 20-60 s sample, stored only as an embedding")
async def enrol_voice(request: Request, therapist_id: Therapist, state: State, db: DB) -> VoiceEnrolment:
    settings = state.settings
    await db.close()  # no pooled connection held while the body arrives
    file, form = await _sample_file(request)
    try:
        try:
            ext = check_extension(file.filename, settings.allowed_extensions)
        except UploadRejected as exc:
            raise _reject(exc.code, exc.reason) from exc
        pcm, seconds = await asyncio.to_thread(decode_sample, file.file, ext, settings.voice_sample_min_s,
                                               settings.voice_sample_max_s)
    finally:
        await form.close()
    async with committing(db):
        await queries.request_voice_enrolment(db, therapist_id, pcm, seconds)
        await queries.audit(db, therapist_id, None, "voice.enrol")
    log.info("voice_enrolment_requested", audio_s=seconds)
    return _view(await queries.voice_row(db, therapist_id))


@router.get("/api/therapists/me/voice", response_model=VoiceEnrolment, responses=ERRORS,
            summary="Whether your voice is enrolled, and since when")
async def get_voice(therapist_id: Therapist, db: DB) -> VoiceEnrolment:
    return _view(await queries.voice_row(db, therapist_id))


@router.delete("/api/therapists/me/voice", status_code=204, responses=ERRORS,
               summary="Remove your enrolled voice (the embedding is deleted)")
async def delete_voice(therapist_id: Therapist, db: DB) -> Response:
    async with committing(db):
        if not await queries.delete_voice(db, therapist_id):
            raise HTTPException(404, "no enrolled voice")
        await queries.audit(db, therapist_id, None, "voice.delete")
    return Response(status_code=204)
