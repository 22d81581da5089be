"""Turns audio.uploaded events into transcription runs and transcript.ready /
transcript.failed events (through the outbox)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

from shared.audio import AudioDecodeError, decode_audio
from shared.contracts.events import (
    AudioUploaded,
    Engine,
    ErrorInfo,
    Stage,
    Timing,
    TranscriptFailed,
    TranscriptReady,
)
from shared.envelope import Envelope
from shared.inbox import claim
from shared.jobs import ProgressReporter, finish_job, forget_session, job_status, start_job
from shared.logging import get_logger
from shared.outbox import enqueue
from shared.runtime import ServiceRuntime
from services.transcriber.transcription import WhisperTranscriber

log = get_logger(__name__)
STAGE = "transcription"


class TranscriptionHandler:
    def __init__(self, runtime: ServiceRuntime, transcriber: WhisperTranscriber) -> None:
        self.runtime = runtime
        self.transcriber = transcriber
        self._lock = asyncio.Lock()  # one model, one job at a time per process

    async def on_audio_uploaded(self, envelope: Envelope) -> None:
        event = envelope.event
        assert isinstance(event, AudioUploaded)
        rt = self.runtime
        async with rt.session_factory() as db, db.begin():
            if await job_status(db, STAGE, event.session_id) in ("done", "failed"):
                rt.metrics.duplicates.labels(rt.name).inc()
                log.info("duplicate_audio_uploaded_ignored")
                return
            attempt = await start_job(db, STAGE, event.session_id)

        reporter = ProgressReporter(
            asyncio.get_running_loop(), rt.broker, event.session_id, Stage.transcription, rt.name, envelope.traceparent
        )
        reporter(0.0, "queued for transcription")
        started_at = datetime.now(timezone.utc)
        t0 = time.perf_counter()
        try:
            async with self._lock:
                path = rt.blobs.path_for(event.audio.uri)
                audio = await rt.run_blocking(decode_audio, path)
                result = await rt.run_blocking(
                    self.transcriber.transcribe, audio, event.options.language, reporter
                )
        except (AudioDecodeError, FileNotFoundError) as exc:
            reason = exc.reason if isinstance(exc, AudioDecodeError) else "the audio file is missing from storage"
            code = exc.code if isinstance(exc, AudioDecodeError) else "audio_missing"
            await self._fail(envelope, ErrorInfo(kind="permanent", code=code, message=f"Transcription failed: {reason}"), attempt)
            # Undecodable input: one DLQ record with the cause, no retry.
            await rt.broker.publish(
                envelope.event.model_dump_json().encode(), f"{envelope.topic}.dlq",
                key=str(event.session_id).encode(),
                headers={**envelope.headers, "dlq_error_kind": "permanent", "dlq_error_message": reason, "dlq_service": rt.name},
            )
            rt.metrics.dlq.labels(envelope.topic).inc()
            return
        elapsed = time.perf_counter() - t0
        finished_at = started_at + timedelta(seconds=elapsed)
        audio_s = max(result.duration_s, 1e-6)
        segments = [s.model_dump() for s in result.segments]
        ready = TranscriptReady(
            session_id=event.session_id,
            language=result.language,
            duration_s=round(result.duration_s, 3),
            engine=Engine(backend="faster-whisper", model=result.model_name, device=self.transcriber.config.device),
            timing=Timing(started_at=started_at, finished_at=finished_at, processing_s=round(elapsed, 3),
                          audio_s=round(audio_s, 3), rtf=round(elapsed / audio_s, 4)),
        )
        ready.segments = result.segments
        if len(ready.model_dump_json()) > rt.settings.inline_payload_max_bytes:
            ready.segments = None
            ready.segments_ref = rt.blobs.put_json(f"sessions/{event.session_id}/transcript.json", segments)

        async with rt.session_factory() as db, db.begin():
            if await job_status(db, STAGE, event.session_id, lock=True) == "done":
                return  # another delivery finished first
            await claim(db, rt.name, envelope.event_id, event.session_id)
            await finish_job(db, STAGE, event.session_id, "done", {"rtf": ready.timing.rtf, "segments": len(segments)})
            await enqueue(db, ready, rt.name, traceparent=envelope.traceparent)
        rt.relay.wake()
        rt.metrics.stage_seconds.labels(STAGE).observe(elapsed)
        rt.metrics.rtf.labels(STAGE).observe(ready.timing.rtf)
        rt.metrics.audio_seconds.labels(STAGE).inc(audio_s)
        log.info("transcription_done", audio_s=round(audio_s, 1), rtf=ready.timing.rtf, segments=len(segments))

    async def on_session_deleted(self, envelope: Envelope) -> None:
        await forget_session(self.runtime, envelope.event.session_id, STAGE)

    async def _fail(self, envelope: Envelope, error: ErrorInfo, attempts: int) -> None:
        rt = self.runtime
        event = envelope.event
        async with rt.session_factory() as db, db.begin():
            if await job_status(db, STAGE, event.session_id, lock=True) in ("done", "failed"):
                return
            await finish_job(db, STAGE, event.session_id, "failed", {"code": error.code})
            await enqueue(db, TranscriptFailed(session_id=event.session_id, error=error, attempts=attempts), rt.name,
                          traceparent=envelope.traceparent)
        rt.relay.wake()
        rt.metrics.failures.labels(STAGE, error.kind).inc()
        log.warning("transcription_failed", code=error.code)
