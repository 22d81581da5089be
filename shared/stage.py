"""The flow shared by the audio stages (transcriber, diarizer), as plain handler functions
over their dependencies: deduplicate by session, run the stage's work (blocking inference
goes through run_blocking, never on the event loop) with progress ticks, retry transient
errors with backoff, publish the result or a failure through the outbox (the job store
owns that SQL), and send undecodable audio to the DLQ once.

A stage supplies only ``process(event, progress) -> (result without timing, audio seconds)``;
``StageDeps.on_runtime`` wires the real parts, unit tests wire fakes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Protocol
from uuid import UUID

from shared.audio import AudioDecodeError, decode_audio
from shared.contracts.events import AudioUploaded, ErrorInfo, Event, Stage, StageFailed, Timing
from shared.envelope import Envelope
from shared.jobs import ProgressFn, ProgressReporter, StageJobStore, forget_session
from shared.logging import get_logger
from shared.resilience import PermanentError, TransientError, retrying
from shared.telemetry import ServiceMetrics, current_traceparent, work_span

log = get_logger(__name__)

# (result, audio seconds); a None result: the work was handed on (fan-out), nothing to complete here
Process = Callable[[AudioUploaded, ProgressFn], Awaitable[tuple[Event | None, float]]]


class StageJobs(Protocol):
    """What the handlers need from the job store (StageJobStore, or a fake in unit tests)."""

    async def begin(self, session_id: UUID) -> int | None: ...
    async def complete(self, session_id: UUID, event_id: str, result: Event, traceparent: str | None,
                       detail: dict) -> bool: ...
    async def fail(self, session_id: UUID, failed: Event, traceparent: str | None, code: str) -> bool: ...


@dataclass
class StageDeps:
    consumer: str  # this service's name: the inbox consumer and the duplicates metric's label
    stage: Stage
    failed_event: type[StageFailed]
    process: Process
    jobs: StageJobs
    progress: Callable[[UUID, str | None], ProgressFn]  # (session, traceparent) -> tick reporter
    dead_letter: Callable[[Envelope, str], Awaitable[None]]
    forget: Callable[[UUID], Awaitable[None]]
    wake: Callable[[], None]  # the outbox relay: publish what was just committed
    metrics: ServiceMetrics
    retry_attempts: int = 3
    retry_initial_s: float = 1.0
    retry_max_s: float = 30.0
    sleep: Callable[[float], Awaitable[None]] | None = None  # the retry backoff's (None: asyncio.sleep)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one model per process, one job at a time

    @classmethod
    def on_runtime(cls, runtime, stage: Stage, failed_event: type[StageFailed], process: Process) -> "StageDeps":
        runtime.metrics.declare_stage(stage.value, audio=True)  # zero series before the first job
        def progress(session_id: UUID, traceparent: str | None) -> ProgressFn:
            return ProgressReporter(asyncio.get_running_loop(), runtime.broker, session_id, stage, runtime.name,
                                    traceparent)

        async def dead_letter(envelope: Envelope, reason: str) -> None:
            await send_to_dlq(runtime, envelope, reason)

        async def forget(session_id: UUID) -> None:
            await forget_session(runtime, session_id, stage.value)

        return cls(consumer=runtime.name, stage=stage, failed_event=failed_event, process=process,
                   jobs=StageJobStore(runtime.session_factory, runtime.name, stage.value), progress=progress,
                   dead_letter=dead_letter, forget=forget, wake=runtime.relay.wake, metrics=runtime.metrics,
                   retry_attempts=runtime.settings.dlq_max_attempts)


def audio_loader(blobs) -> Callable[[str], object]:
    """Blocking: a blob uri -> decoded mono samples (run it through run_blocking)."""
    return lambda uri: blobs.with_local_copy(uri, decode_audio)


def pending_timing() -> Timing:
    """Placeholder until the worker measures the run (with_timing replaces it)."""
    now = datetime.now(timezone.utc)
    return Timing(started_at=now, finished_at=now, processing_s=0.0, audio_s=0.0, rtf=0.0)


def with_timing(result: Event, started_at: datetime, elapsed: float, audio_s: float) -> Event:
    timing = Timing(started_at=started_at, finished_at=started_at + timedelta(seconds=elapsed),
                    processing_s=round(elapsed, 3), audio_s=round(audio_s, 3), rtf=round(elapsed / max(audio_s, 1e-6), 4))
    return result.model_copy(update={"timing": timing})


async def on_audio_uploaded(envelope: Envelope, deps: StageDeps) -> None:
    event = envelope.event
    assert isinstance(event, AudioUploaded)
    stage = deps.stage.value
    attempt = await deps.jobs.begin(event.session_id)
    if attempt is None:
        deps.metrics.duplicates.labels(deps.consumer).inc()
        log.info("duplicate_audio_uploaded_ignored", stage=stage)
        return
    started_at = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    try:
        with work_span(stage, event.session_id, envelope.traceparent):  # ticks hang under the stage's span
            reporter = deps.progress(event.session_id, current_traceparent(envelope.traceparent))
            reporter(0.0, f"queued for {stage}")
            async with deps.lock:
                async for try_ in retrying(deps.retry_attempts, deps.retry_initial_s, deps.retry_max_s,
                                           retry_on=(TransientError,), sleep=deps.sleep):
                    with try_:
                        result, audio_s = await deps.process(event, reporter)
    except (AudioDecodeError, FileNotFoundError) as exc:
        reason = exc.reason if isinstance(exc, AudioDecodeError) else "the audio file is missing from storage"
        code = exc.code if isinstance(exc, AudioDecodeError) else "audio_missing"
        await _fail(envelope, deps, ErrorInfo(kind="permanent", code=code, message=reason), attempt)
        await deps.dead_letter(envelope, reason)
        return
    except (PermanentError, TransientError) as exc:
        kind = "permanent" if isinstance(exc, PermanentError) else "transient"
        await _fail(envelope, deps, ErrorInfo(kind=kind, code=exc.code, message=exc.message), attempt)
        return
    elapsed = time.perf_counter() - t0
    if result is None:  # fanned out: the replica that finishes the last chunk completes the job
        log.info("stage_fanned_out", stage=stage, audio_s=round(audio_s, 1))
        return
    result = with_timing(result, started_at, elapsed, audio_s)
    if not await deps.jobs.complete(event.session_id, envelope.event_id, result, envelope.traceparent,
                                    {"rtf": result.timing.rtf}):
        return  # another delivery finished first
    deps.wake()
    deps.metrics.stage_seconds.labels(stage).observe(elapsed)
    deps.metrics.rtf.labels(stage).observe(result.timing.rtf)
    deps.metrics.audio_seconds.labels(stage).inc(audio_s)
    log.info("stage_done", stage=stage, audio_s=round(audio_s, 1), rtf=result.timing.rtf)


async def _fail(envelope: Envelope, deps: StageDeps, error: ErrorInfo, attempts: int) -> None:
    sid = envelope.event.session_id
    failed = deps.failed_event(session_id=sid, error=error, attempts=attempts)
    if not await deps.jobs.fail(sid, failed, envelope.traceparent, error.code):
        return
    deps.wake()
    deps.metrics.failures.labels(deps.stage.value, error.kind).inc()
    log.warning("stage_failed", stage=deps.stage.value, code=error.code, kind=error.kind)


async def on_session_deleted(envelope: Envelope, deps: StageDeps) -> None:
    await deps.forget(envelope.event.session_id)


async def send_to_dlq(runtime, envelope: Envelope, reason: str) -> None:
    """Undecodable input: one DLQ record with the cause; never retried."""
    await runtime.dead_letter(envelope.record, "permanent", reason)
