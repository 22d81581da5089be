"""Turns transcript.merged / notes.regenerate / session.deleted into notes runs and
notes.ready / notes.failed events (enqueued by the store, in the run's transaction).
Plain functions of (envelope, NotesDeps); the SQL lives in services.notes.runs.

Idempotency: every run is a row keyed by (session, transcript version, request key),
claimed *before* any backend is called. "auto" is the request key of transcript.merged,
so a redelivered or duplicated merge (same or different ce_id) for a version that already
has a run never pays for a second LLM call; a notes.regenerate command's key is its own
event id. A run left 'running' by a crashed process (no heartbeat for
``notes_run_stale_s``) is retaken; the attempt number fences the finish so two workers
never both publish. A deleted (tombstoned) session gets no input stored and no run.

Breaker: while the LLM circuit breaker is open the handler waits and retries the same
message. The subscriber handles one message at a time, so this holds the consumer's
partitions: that is the pause. Sessions are never failed because the breaker is open.
Transient errors after retries and permanent errors give notes.failed.

Logs carry ids, counts, codes and durations only, never transcript text or exception text.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol
from uuid import UUID

from shared.broker import publish_event
from shared.contracts.events import (
    ErrorInfo,
    MergedSegment,
    NotesEngine,
    NotesFailed,
    NotesReady,
    NotesRegenerate,
    SessionProgress,
    SpeakerInfo,
    Stage,
    Timing,
    TranscriptMerged,
)
from shared.contracts.notes import ClinicalNotes
from shared.envelope import Envelope
from shared.jobs import ProgressFn, ProgressReporter
from shared.logging import error_location, get_logger
from shared.resilience import BreakerState, CircuitBreaker, CircuitOpenError, PermanentError, TransientError
from shared.telemetry import ServiceMetrics, work_span
from services.notes.corrections import correct, has_corrections
from services.notes.runs import STAGE, Claim, Finish, NotesRunStore, Run

log = get_logger(__name__)
AUTO = "auto"


class NotesRuns(Protocol):
    """What the handlers need from the store (NotesRunStore, or a fake in unit tests)."""

    async def remember_input(self, merged: TranscriptMerged, traceparent: str | None) -> int | None: ...
    async def latest_input(self, session_id: UUID) -> TranscriptMerged | None: ...
    async def claim(self, session_id: UUID, version: int, request_key: str, backend: str, worker: str,
                    stale_s: float) -> Claim: ...
    async def heartbeat(self, run: Run) -> None: ...
    async def release(self, run: Run) -> None: ...
    async def finish(self, run: Run, event_id: str, finish: Finish, traceparent: str | None) -> bool: ...
    async def forget(self, session_id: UUID) -> int: ...


class NotesBackends(Protocol):
    """services.notes.service.NotesGenerator: picks a backend and writes the notes."""

    def choose(self, requested: str | None) -> str: ...
    async def generate(self, backend: str, segments: list[MergedSegment],
                       speakers: list[SpeakerInfo]) -> tuple[ClinicalNotes, NotesEngine]: ...


@dataclass
class NotesDeps:
    store: NotesRuns
    generator: NotesBackends
    breaker: CircuitBreaker
    load_segments: Callable[[str], Awaitable[Any]]  # blob uri -> list of segment dicts (off the loop)
    progress: Callable[[UUID, str | None], ProgressFn]  # (session, traceparent) -> tick reporter
    tick: Callable[[UUID, str, str | None], Awaitable[None]]  # one progress message, now
    wake: Callable[[], None]  # the outbox relay: publish what was just committed
    metrics: ServiceMetrics
    consumer: str
    stale_s: float
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}")
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # waits on a held run or an open breaker
    clock: Callable[[], float] = time.monotonic
    paused_s: float = 0.0  # total time spent paused on the open breaker (for logs and tests)

    @property
    def heartbeat_s(self) -> float:
        return max(0.5, self.stale_s / 4)

    @classmethod
    def on_runtime(cls, runtime, generator: NotesBackends, breaker: CircuitBreaker) -> "NotesDeps":
        def progress(session_id: UUID, traceparent: str | None) -> ProgressFn:
            return ProgressReporter(asyncio.get_running_loop(), runtime.broker, session_id, Stage.notes,
                                    runtime.name, traceparent)

        async def tick(session_id: UUID, message: str, traceparent: str | None) -> None:
            event = SessionProgress(session_id=session_id, stage=Stage.notes, fraction=0.1, message=message)
            await publish_event(runtime.broker, event, runtime.name, traceparent=traceparent)

        async def load_segments(uri: str) -> Any:
            return await runtime.run_blocking(runtime.blobs.get_json, uri)

        return cls(store=NotesRunStore(runtime.session_factory, runtime.name), generator=generator, breaker=breaker,
                   load_segments=load_segments, progress=progress, tick=tick, wake=runtime.relay.wake,
                   metrics=runtime.metrics, consumer=runtime.name, stale_s=runtime.settings.notes_run_stale_s)


# --- events -----------------------------------------------------------------------------------
async def on_transcript_merged(envelope: Envelope, deps: NotesDeps) -> None:
    merged = envelope.event
    assert isinstance(merged, TranscriptMerged)
    latest = await deps.store.remember_input(merged, envelope.traceparent)
    if latest is None:
        log.info("event_for_deleted_session_dropped", version=merged.version)
        return
    if latest > merged.version:
        deps.metrics.duplicates.labels(deps.consumer).inc()
        log.info("stale_transcript_version_ignored", version=merged.version, latest=latest)
        return
    await run_notes(envelope, deps, merged, AUTO, merged.notes_backend)  # the upload's choice, if any


async def on_regenerate(envelope: Envelope, deps: NotesDeps) -> None:
    command = envelope.event
    assert isinstance(command, NotesRegenerate)
    merged = await deps.store.latest_input(command.session_id)
    if merged is None:
        # Nothing merged yet (or the session was deleted): nothing to regenerate from.
        log.warning("regenerate_without_transcript")
        return
    if has_corrections(command):
        segments, speakers = correct(await _segments(merged, deps), merged.speakers, command)
        merged = merged.model_copy(update={"segments": segments, "segments_ref": None, "speakers": speakers})
    await run_notes(envelope, deps, merged, envelope.event_id, command.backend)


async def on_session_deleted(envelope: Envelope, deps: NotesDeps) -> None:
    runs = await deps.store.forget(envelope.event.session_id)
    log.info("notes_session_forgotten", runs=runs)


# --- one run ----------------------------------------------------------------------------------
async def run_notes(envelope: Envelope, deps: NotesDeps, merged: TranscriptMerged, request_key: str,
                    requested: str | None) -> None:
    """Claim the run, generate (pausing on an open breaker), then finish it with notes.ready or
    notes.failed. A backend that cannot be chosen still claims the run, so it fails once."""
    choice_error: PermanentError | None = None
    try:
        backend = deps.generator.choose(requested)
    except PermanentError as exc:
        backend, choice_error = (requested or "unknown")[:32], exc
    run = await claim_run(deps, merged.session_id, merged.version, request_key, backend)
    if run is None:
        return
    log.info("notes_run_started", version=run.version, backend=backend, attempt=run.attempt,
             request_key=_short_key(request_key))
    reporter = deps.progress(run.session_id, envelope.traceparent)
    reporter(0.0, "Writing clinical notes")
    heartbeat = asyncio.create_task(_heartbeat(run, deps), name=f"notes-heartbeat-{run.id}")
    try:
        if choice_error is not None:
            raise choice_error
        started_at, t0 = datetime.now(timezone.utc), deps.clock()
        segments = await _segments(merged, deps)
        reporter(0.1, f"Writing clinical notes ({backend})")
        with work_span("notes generation", run.session_id, envelope.traceparent):
            notes, engine = await _generate_pausing(envelope, deps, run, segments, merged.speakers)
        timing = _timing(started_at, deps.clock() - t0, merged, segments)
    except asyncio.CancelledError:
        heartbeat.cancel()
        await _release(run, deps)  # shutdown mid-run: let the next delivery retake it at once
        raise
    except Exception as exc:
        heartbeat.cancel()
        await _fail(envelope, deps, run, error_of(exc))
        return
    heartbeat.cancel()
    await _succeed(envelope, deps, run, notes, engine, timing)


def error_of(exc: Exception) -> ErrorInfo:
    """The notes.failed error: ServiceError codes and messages are written to be shown;
    anything else is a bug or an unexpected library error, reported generically."""
    if isinstance(exc, (PermanentError, TransientError)):
        kind = "permanent" if isinstance(exc, PermanentError) else "transient"
        return ErrorInfo(kind=kind, code=exc.code, message=exc.message or "Notes could not be generated.")
    log.error("notes_run_crashed", error=type(exc).__name__, where=error_location(exc))  # no message: may hold PHI
    return ErrorInfo(kind="transient", code="notes_internal_error", message="Notes could not be generated (internal error).")


async def claim_run(deps: NotesDeps, sid: UUID, version: int, request_key: str, backend: str) -> Run | None:
    """Own the run, or None when it is finished (or the session deleted). Waits while another
    live worker holds it (heartbeat fresh); the store retakes it when that worker went quiet."""
    waited = False
    while True:
        claim = await deps.store.claim(sid, version, request_key, backend, deps.worker, deps.stale_s)
        if claim.outcome in ("claimed", "retaken"):
            if claim.outcome == "retaken":
                log.warning("notes_run_retaken", attempt=claim.run.attempt)
            return claim.run
        if claim.outcome == "finished":
            deps.metrics.duplicates.labels(deps.consumer).inc()
            log.info("notes_run_exists_ignored", version=version, request_key=_short_key(request_key))
            return None
        if claim.outcome == "buried":
            log.info("event_for_deleted_session_dropped", version=version)
            return None
        if not waited:
            waited = True
            log.info("notes_run_held_elsewhere_waiting")
        await deps.sleep(min(1.0, deps.heartbeat_s))


async def _segments(merged: TranscriptMerged, deps: NotesDeps) -> list[MergedSegment]:
    if merged.segments is not None:
        return list(merged.segments)
    if not merged.segments_ref:
        return []
    try:
        raw = await deps.load_segments(merged.segments_ref)
    except FileNotFoundError:
        raise PermanentError("transcript_missing", "The merged transcript is missing from storage.") from None
    return [MergedSegment.model_validate(s) for s in raw]


async def _generate_pausing(envelope: Envelope, deps: NotesDeps, run: Run, segments: list[MergedSegment],
                            speakers: list[SpeakerInfo]) -> tuple[ClinicalNotes, NotesEngine]:
    """Generate; while the LLM breaker is open, wait for half-open and try again."""
    paused_at: float | None = None
    while True:
        try:
            result = await deps.generator.generate(run.backend, segments, speakers)
        except TransientError as exc:
            # CircuitOpenError, or retries exhausted by the very failures that opened the
            # breaker: the dependency is down, so pause rather than fail the session.
            if not isinstance(exc, CircuitOpenError) and deps.breaker.state is not BreakerState.open:
                raise
            wait = deps.breaker.seconds_until_half_open()
            if paused_at is None:
                paused_at = deps.clock()
                deps.metrics.breaker_state.labels(deps.breaker.name).set(1)
                log.warning("notes_consumer_paused", reason=exc.code, retry_in_s=round(wait, 1))
                await _tick(envelope, deps, run.session_id, "Waiting for the notes model to become available")
            await deps.sleep(min(max(wait, 0.2), 5.0))
            continue
        if paused_at is not None:
            paused = deps.clock() - paused_at
            deps.paused_s += paused
            log.info("notes_consumer_resumed", paused_s=round(paused, 1))
        return result


def _timing(started_at: datetime, elapsed: float, merged: TranscriptMerged, segments: list[MergedSegment]) -> Timing:
    audio_s = max(merged.duration_s or (segments[-1].end if segments else 0.0), 1e-6)
    return Timing(started_at=started_at, finished_at=started_at + timedelta(seconds=elapsed),
                  processing_s=round(elapsed, 3), audio_s=round(audio_s, 3), rtf=round(elapsed / audio_s, 4))


# --- heartbeat / release / finish ---------------------------------------------------------------
async def _heartbeat(run: Run, deps: NotesDeps) -> None:
    while True:
        await asyncio.sleep(deps.heartbeat_s)
        try:
            await deps.store.heartbeat(run)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a missed beat only risks an early retake
            log.warning("notes_heartbeat_failed", error=type(exc).__name__)


async def _release(run: Run, deps: NotesDeps) -> None:
    """Best effort on shutdown: age the claim so the next delivery retakes it immediately."""
    try:
        async with asyncio.timeout(2.0):
            await deps.store.release(run)
    except BaseException as exc:  # noqa: BLE001 - shutting down anyway
        log.debug("notes_release_failed", error=type(exc).__name__)


async def _succeed(envelope: Envelope, deps: NotesDeps, run: Run, notes: ClinicalNotes, engine: NotesEngine,
                   timing: Timing) -> None:
    ready = NotesReady(session_id=run.session_id, transcript_version=run.version, notes=notes, engine=engine,
                       timing=timing)
    finish = Finish("done", {"notes": notes.model_dump(mode="json"), "engine": engine.model_dump(mode="json"),
                             "error": None},
                    {"version": run.version, "backend": engine.backend,
                     "tokens": engine.prompt_tokens + engine.completion_tokens}, ready)
    if not await deps.store.finish(run, envelope.event_id, finish, envelope.traceparent):
        log.warning("notes_run_lost_to_another_worker", attempt=run.attempt)
        return
    deps.wake()
    m = deps.metrics
    m.stage_seconds.labels(STAGE).observe(timing.processing_s)
    if engine.prompt_tokens:
        m.llm_tokens.labels("prompt").inc(engine.prompt_tokens)
    if engine.completion_tokens:
        m.llm_tokens.labels("completion").inc(engine.completion_tokens)
    if engine.cost_usd:
        m.llm_cost.inc(engine.cost_usd)
    log.info("notes_done", version=run.version, backend=engine.backend, calls=engine.calls,
             prompt_tokens=engine.prompt_tokens, completion_tokens=engine.completion_tokens,
             cost_usd=engine.cost_usd, risk_flags=len(notes.risk_flags), action_items=len(notes.action_items),
             seconds=timing.processing_s)


async def _fail(envelope: Envelope, deps: NotesDeps, run: Run, error: ErrorInfo) -> None:
    failed = NotesFailed(session_id=run.session_id, error=error, attempts=run.attempt, transcript_version=run.version)
    finish = Finish("failed", {"error": error.model_dump(mode="json")}, {"version": run.version, "code": error.code},
                    failed)
    if not await deps.store.finish(run, envelope.event_id, finish, envelope.traceparent):
        log.warning("notes_run_lost_to_another_worker", attempt=run.attempt)
        return
    deps.wake()
    deps.metrics.failures.labels(STAGE, error.kind).inc()
    log.warning("notes_failed", version=run.version, backend=run.backend, kind=error.kind, code=error.code)


async def _tick(envelope: Envelope, deps: NotesDeps, sid: UUID, message: str) -> None:
    try:
        await deps.tick(sid, message, envelope.traceparent)
    except Exception as exc:  # a lost tick is harmless
        log.debug("progress_tick_lost", error=type(exc).__name__)


def _short_key(key: str) -> str:
    return key if key == AUTO else key[:12]
