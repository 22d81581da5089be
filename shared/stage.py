"""The flow shared by the audio stages (transcriber, diarizer): deduplicate by session,
run blocking inference off the event loop with progress ticks, retry transient errors
with backoff, publish the result or a failure through the outbox, and send undecodable
audio to the DLQ once. Subclasses supply only the stage-specific work."""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from datetime import datetime, timedelta, timezone

from shared.audio import AudioDecodeError
from shared.contracts.events import AudioUploaded, ErrorInfo, Event, Stage, StageFailed, Timing
from shared.envelope import Envelope
from shared.inbox import claim
from shared.jobs import ProgressFn, ProgressReporter, finish_job, forget_session, job_status, start_job
from shared.logging import get_logger
from shared.outbox import enqueue
from shared.resilience import PermanentError, TransientError, retrying
from shared.runtime import ServiceRuntime

log = get_logger(__name__)


def pending_timing() -> Timing:
    """Placeholder until the worker measures the run (with_timing replaces it)."""
    now = datetime.now(timezone.utc)
    return Timing(started_at=now, finished_at=now, processing_s=0.0, audio_s=0.0, rtf=0.0)


class AudioStageWorker(ABC):
    stage: Stage
    failed_event: type[StageFailed]

    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime
        runtime.metrics.declare_stage(self.stage.value, audio=True)
        self._lock = asyncio.Lock()  # one model per process, one job at a time

    @abstractmethod
    async def process(self, event: AudioUploaded, progress: ProgressFn) -> tuple[Event, float]:
        """Do the work; return (result event without timing, audio seconds)."""

    def with_timing(self, result: Event, started_at: datetime, elapsed: float, audio_s: float) -> Event:
        timing = Timing(started_at=started_at, finished_at=started_at + timedelta(seconds=elapsed),
                        processing_s=round(elapsed, 3), audio_s=round(audio_s, 3), rtf=round(elapsed / max(audio_s, 1e-6), 4))
        return result.model_copy(update={"timing": timing})

    async def on_audio_uploaded(self, envelope: Envelope) -> None:
        event = envelope.event
        assert isinstance(event, AudioUploaded)
        rt, stage = self.runtime, self.stage.value
        async with rt.session_factory() as db, db.begin():
            if await job_status(db, stage, event.session_id) in ("done", "failed"):
                rt.metrics.duplicates.labels(rt.name).inc()
                log.info("duplicate_audio_uploaded_ignored", stage=stage)
                return
            attempt = await start_job(db, stage, event.session_id)

        reporter = ProgressReporter(asyncio.get_running_loop(), rt.broker, event.session_id, self.stage, rt.name,
                                    envelope.traceparent)
        reporter(0.0, f"queued for {stage}")
        started_at = datetime.now(timezone.utc)
        t0 = time.perf_counter()
        settings = rt.settings
        try:
            async with self._lock:
                async for try_ in retrying(settings.dlq_max_attempts, 1.0, 30.0, retry_on=(TransientError,)):
                    with try_:
                        result, audio_s = await self.process(event, reporter)
        except (AudioDecodeError, FileNotFoundError) as exc:
            reason = exc.reason if isinstance(exc, AudioDecodeError) else "the audio file is missing from storage"
            code = exc.code if isinstance(exc, AudioDecodeError) else "audio_missing"
            await self.fail(envelope, ErrorInfo(kind="permanent", code=code, message=reason), attempt)
            await self.dead_letter(envelope, reason)
            return
        except PermanentError as exc:
            await self.fail(envelope, ErrorInfo(kind="permanent", code=exc.code, message=exc.message), attempt)
            return
        except TransientError as exc:
            await self.fail(envelope, ErrorInfo(kind="transient", code=exc.code, message=exc.message), attempt)
            return
        elapsed = time.perf_counter() - t0
        result = self.with_timing(result, started_at, elapsed, audio_s)
        async with rt.session_factory() as db, db.begin():
            if await job_status(db, stage, event.session_id, lock=True) == "done":
                return  # another delivery finished first
            await claim(db, rt.name, envelope.event_id, event.session_id)
            await finish_job(db, stage, event.session_id, "done", {"rtf": result.timing.rtf})
            await enqueue(db, result, rt.name, traceparent=envelope.traceparent)
        rt.relay.wake()
        rt.metrics.stage_seconds.labels(stage).observe(elapsed)
        rt.metrics.rtf.labels(stage).observe(result.timing.rtf)
        rt.metrics.audio_seconds.labels(stage).inc(audio_s)
        log.info("stage_done", stage=stage, audio_s=round(audio_s, 1), rtf=result.timing.rtf)

    async def fail(self, envelope: Envelope, error: ErrorInfo, attempts: int) -> None:
        rt, stage = self.runtime, self.stage.value
        sid = envelope.event.session_id
        async with rt.session_factory() as db, db.begin():
            if await job_status(db, stage, sid, lock=True) in ("done", "failed"):
                return
            await finish_job(db, stage, sid, "failed", {"code": error.code})
            await enqueue(db, self.failed_event(session_id=sid, error=error, attempts=attempts), rt.name,
                          traceparent=envelope.traceparent)
        rt.relay.wake()
        rt.metrics.failures.labels(stage, error.kind).inc()
        log.warning("stage_failed", stage=stage, code=error.code, kind=error.kind)

    async def dead_letter(self, envelope: Envelope, reason: str) -> None:
        """Undecodable input: one DLQ record with the cause; never retried."""
        await self.runtime.dead_letter(envelope.record, "permanent", reason)

    async def on_session_deleted(self, envelope: Envelope) -> None:
        await forget_session(self.runtime, envelope.event.session_id, self.stage.value)
