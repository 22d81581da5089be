"""Turns transcript.merged / notes.regenerate / session.deleted into notes runs and
notes.ready / notes.failed events (through the outbox).

Idempotency: every run is a row in ``notes_runs`` keyed by (session, transcript version,
request key), claimed *before* any backend is called. "auto" is the request key of
transcript.merged, so a redelivered or duplicated merge (same or different ce_id) for a
version that already has a run never pays for a second LLM call; a notes.regenerate
command's key is its own event id. A run left 'running' by a crashed process (no
heartbeat for ``notes_run_stale_s``) is retaken; the attempt number fences the finish so
two workers never both publish.

Breaker: while the LLM circuit breaker is open the handler waits (asyncio.sleep) and
retries the same message. The subscriber handles one message at a time, so this holds
the consumer's partitions: that is the pause. Sessions are never failed because the
breaker is open. Transient errors after retries and permanent errors give notes.failed.

Logs carry ids, counts, codes and durations only, never transcript text.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from uuid import UUID

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert

from shared.broker import publish_event
from shared.contracts.events import (
    ErrorInfo,
    MergedSegment,
    NotesEngine,
    NotesFailed,
    NotesReady,
    NotesRegenerate,
    SessionProgress,
    Stage,
    Timing,
    TranscriptMerged,
)
from shared.contracts.notes import ClinicalNotes
from shared.db.tables import notes_inputs, notes_runs
from shared.envelope import Envelope
from shared.inbox import claim, forget_session
from shared.jobs import ProgressReporter, finish_job, start_job
from shared.logging import error_location, get_logger
from shared.outbox import enqueue
from shared.resilience import BreakerState, CircuitBreaker, CircuitOpenError, PermanentError, TransientError
from shared.runtime import ServiceRuntime
from services.notes.service import NotesGenerator

log = get_logger(__name__)
STAGE = "notes"
AUTO = "auto"


@dataclass
class Run:
    id: int
    session_id: UUID
    version: int
    request_key: str
    backend: str
    attempt: int


class NotesHandler:
    def __init__(self, runtime: ServiceRuntime, generator: NotesGenerator, breaker: CircuitBreaker,
                 worker_id: str | None = None) -> None:
        self.runtime = runtime
        self.generator = generator
        self.breaker = breaker
        self.worker = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stale_s = runtime.settings.notes_run_stale_s
        self.heartbeat_s = max(0.5, self.stale_s / 4)
        self.paused_s = 0.0  # total time spent paused on the open breaker (for logs/tests)

    # --- events ---------------------------------------------------------------------------
    async def on_transcript_merged(self, envelope: Envelope) -> None:
        event = envelope.event
        assert isinstance(event, TranscriptMerged)
        rt = self.runtime
        async with rt.session_factory() as db, db.begin():
            # Remember the newest merged transcript: notes.regenerate's input.
            await db.execute(
                insert(notes_inputs)
                .values(session_id=event.session_id, transcript_version=event.version,
                        merged=event.model_dump(mode="json"), traceparent=envelope.traceparent)
                .on_conflict_do_update(
                    index_elements=[notes_inputs.c.session_id],
                    set_={"transcript_version": event.version, "merged": event.model_dump(mode="json"),
                          "traceparent": envelope.traceparent, "updated_at": func.now()},
                    where=notes_inputs.c.transcript_version <= event.version,
                )
            )
            latest = (await db.execute(
                select(notes_inputs.c.transcript_version).where(notes_inputs.c.session_id == event.session_id)
            )).scalar_one()
        if latest > event.version:
            rt.metrics.duplicates.labels(rt.name).inc()
            log.info("stale_transcript_version_ignored", version=event.version, latest=latest)
            return
        await self._run(envelope, event, AUTO, None)

    async def on_regenerate(self, envelope: Envelope) -> None:
        command = envelope.event
        assert isinstance(command, NotesRegenerate)
        rt = self.runtime
        async with rt.session_factory() as db:
            row = (await db.execute(
                select(notes_inputs.c.merged).where(notes_inputs.c.session_id == command.session_id)
            )).first()
        if row is None:
            # Nothing merged yet (or the session was deleted): nothing to regenerate from.
            log.warning("regenerate_without_transcript")
            return
        merged = TranscriptMerged.model_validate(row.merged)
        await self._run(envelope, merged, envelope.event_id, command.backend)

    async def on_session_deleted(self, envelope: Envelope) -> None:
        rt = self.runtime
        sid = envelope.event.session_id
        from shared.db.tables import stage_jobs

        deleted = await forget_session(rt.session_factory, rt.name, sid, [
            notes_runs, notes_inputs, delete(stage_jobs).where(stage_jobs.c.stage == STAGE)])
        log.info("notes_session_forgotten", runs=deleted["notes_runs"])

    # --- one run -----------------------------------------------------------------------------
    async def _run(self, envelope: Envelope, merged: TranscriptMerged, request_key: str, requested: str | None) -> None:
        rt = self.runtime
        sid, version = merged.session_id, merged.version
        choice_error: PermanentError | None = None
        try:
            backend = self.generator.choose(requested)
        except PermanentError as exc:
            backend, choice_error = (requested or "unknown")[:32], exc

        run = await self._claim(sid, version, request_key, backend)
        if run is None:
            rt.metrics.duplicates.labels(rt.name).inc()
            log.info("notes_run_exists_ignored", version=version, request_key=_short_key(request_key))
            return
        log.info("notes_run_started", version=version, backend=backend, attempt=run.attempt,
                 request_key=_short_key(request_key))
        reporter = ProgressReporter(asyncio.get_running_loop(), rt.broker, sid, Stage.notes, rt.name,
                                    envelope.traceparent)
        reporter(0.0, "Writing clinical notes")
        heartbeat = asyncio.create_task(self._heartbeat(run), name=f"notes-heartbeat-{run.id}")
        started_at = datetime.now(timezone.utc)
        t0 = time.perf_counter()
        try:
            if choice_error is not None:
                raise choice_error
            segments = await self._segments(merged)
            reporter(0.1, f"Writing clinical notes ({backend})")
            notes, engine = await self._generate_pausing(run, segments, merged, envelope)
        except asyncio.CancelledError:
            heartbeat.cancel()
            await self._release(run)  # shutdown mid-run: let the next delivery retake it at once
            raise
        except PermanentError as exc:
            heartbeat.cancel()
            await self._fail(envelope, run, ErrorInfo(kind="permanent", code=exc.code, message=_safe(exc)))
            return
        except TransientError as exc:
            heartbeat.cancel()
            await self._fail(envelope, run, ErrorInfo(kind="transient", code=exc.code, message=_safe(exc)))
            return
        except Exception as exc:  # a bug or an unexpected library error: fail the run, keep the consumer going
            heartbeat.cancel()
            log.error("notes_run_crashed", error=type(exc).__name__, where=error_location(exc))  # no message: may hold PHI
            await self._fail(envelope, run, ErrorInfo(kind="transient", code="notes_internal_error",
                                                      message="Notes could not be generated (internal error)."))
            return
        heartbeat.cancel()
        elapsed = time.perf_counter() - t0
        audio_s = max(merged.duration_s or (segments[-1].end if segments else 0.0), 1e-6)
        timing = Timing(started_at=started_at, finished_at=started_at + timedelta(seconds=elapsed),
                        processing_s=round(elapsed, 3), audio_s=round(audio_s, 3), rtf=round(elapsed / audio_s, 4))
        await self._succeed(envelope, run, notes, engine, timing)

    async def _segments(self, merged: TranscriptMerged) -> list[MergedSegment]:
        if merged.segments is not None:
            return list(merged.segments)
        if not merged.segments_ref:
            return []
        try:
            raw = await self.runtime.run_blocking(self.runtime.blobs.get_json, merged.segments_ref)
        except FileNotFoundError:
            raise PermanentError("transcript_missing", "The merged transcript is missing from storage.") from None
        return [MergedSegment.model_validate(s) for s in raw]

    async def _generate_pausing(self, run: Run, segments: list[MergedSegment], merged: TranscriptMerged,
                                envelope: Envelope) -> tuple[ClinicalNotes, NotesEngine]:
        """Generate; while the LLM breaker is open, wait for half-open and try again."""
        paused_at: float | None = None
        while True:
            try:
                result = await self.generator.generate(run.backend, segments, merged.speakers)
            except TransientError as exc:
                # CircuitOpenError, or retries exhausted by the very failures that opened the
                # breaker: the dependency is down, so pause rather than fail the session.
                if not isinstance(exc, CircuitOpenError) and self.breaker.state is not BreakerState.open:
                    raise
                wait = self.breaker.seconds_until_half_open()
                if paused_at is None:
                    paused_at = time.monotonic()
                    self.runtime.metrics.breaker_state.labels(self.breaker.name).set(1)
                    log.warning("notes_consumer_paused", reason=exc.code, retry_in_s=round(wait, 1))
                    await self._tick(envelope, run.session_id, "Waiting for the notes model to become available")
                await asyncio.sleep(min(max(wait, 0.2), 5.0))
                continue
            if paused_at is not None:
                paused = time.monotonic() - paused_at
                self.paused_s += paused
                log.info("notes_consumer_resumed", paused_s=round(paused, 1))
            return result

    # --- claim / heartbeat / finish ------------------------------------------------------------
    async def _claim(self, sid: UUID, version: int, request_key: str, backend: str) -> Run | None:
        """Own the run row, or None when it is finished. Waits while another live worker
        holds it (heartbeat fresh); retakes it when that worker went quiet."""
        rt = self.runtime
        waited = False
        while True:
            async with rt.session_factory() as db, db.begin():
                row = (await db.execute(
                    insert(notes_runs)
                    .values(session_id=sid, transcript_version=version, request_key=request_key, backend=backend,
                            status="running", attempts=1, worker=self.worker)
                    .on_conflict_do_nothing()
                    .returning(notes_runs.c.id, notes_runs.c.attempts)
                )).first()
                if row is not None:
                    await start_job(db, STAGE, sid)
                    return Run(row.id, sid, version, request_key, backend, row.attempts)
                stale_before = func.now() - timedelta(seconds=self.stale_s)
                existing = (await db.execute(
                    select(notes_runs.c.id, notes_runs.c.status, notes_runs.c.worker, notes_runs.c.backend,
                           (notes_runs.c.updated_at < stale_before).label("stale"))
                    .where(notes_runs.c.session_id == sid, notes_runs.c.transcript_version == version,
                           notes_runs.c.request_key == request_key)
                    .with_for_update()
                )).first()
                if existing is None:  # deleted between the insert and the select (session.deleted)
                    continue
                if existing.status != "running":
                    return None
                # This process handles one message at a time, so a running row that names
                # this worker is left over from an earlier attempt of this very delivery.
                if existing.stale or existing.worker == self.worker:
                    attempt = (await db.execute(
                        update(notes_runs).where(notes_runs.c.id == existing.id)
                        .values(attempts=notes_runs.c.attempts + 1, worker=self.worker, updated_at=func.now(),
                                backend=backend)
                        .returning(notes_runs.c.attempts)
                    )).scalar_one()
                    await start_job(db, STAGE, sid)
                    log.warning("notes_run_retaken", attempt=attempt)
                    return Run(existing.id, sid, version, request_key, backend, attempt)
            if not waited:
                waited = True
                log.info("notes_run_held_elsewhere_waiting")
            await asyncio.sleep(min(1.0, self.heartbeat_s))

    async def _heartbeat(self, run: Run) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                async with self.runtime.session_factory() as db, db.begin():
                    await db.execute(
                        update(notes_runs)
                        .where(notes_runs.c.id == run.id, notes_runs.c.attempts == run.attempt,
                               notes_runs.c.status == "running")
                        .values(updated_at=func.now())
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a missed beat only risks an early retake
                log.warning("notes_heartbeat_failed", error=type(exc).__name__)

    async def _release(self, run: Run) -> None:
        """Best effort on shutdown: age the claim so the next delivery retakes it immediately."""
        try:
            async with asyncio.timeout(2.0):
                async with self.runtime.session_factory() as db, db.begin():
                    await db.execute(
                        update(notes_runs)
                        .where(notes_runs.c.id == run.id, notes_runs.c.attempts == run.attempt,
                               notes_runs.c.status == "running")
                        .values(updated_at=datetime(1970, 1, 1, tzinfo=timezone.utc))
                    )
        except BaseException as exc:  # noqa: BLE001 - shutting down anyway
            log.debug("notes_release_failed", error=type(exc).__name__)

    async def _finish(self, db, envelope: Envelope, run: Run, status: str, values: dict) -> bool:
        """Mark the run finished if this worker still holds it (attempt fences retakes)."""
        owned = (await db.execute(
            update(notes_runs)
            .where(notes_runs.c.id == run.id, notes_runs.c.attempts == run.attempt, notes_runs.c.status == "running")
            .values(status=status, updated_at=func.now(), **values)
            .returning(notes_runs.c.id)
        )).first()
        if owned is None:
            return False
        await claim(db, self.runtime.name, envelope.event_id, run.session_id)
        return True

    async def _succeed(self, envelope: Envelope, run: Run, notes: ClinicalNotes, engine: NotesEngine,
                       timing: Timing) -> None:
        rt = self.runtime
        ready = NotesReady(session_id=run.session_id, transcript_version=run.version, notes=notes, engine=engine,
                           timing=timing)
        async with rt.session_factory() as db, db.begin():
            if not await self._finish(db, envelope, run, "done", {
                "notes": notes.model_dump(mode="json"), "engine": engine.model_dump(mode="json"), "error": None,
            }):
                log.warning("notes_run_lost_to_another_worker", attempt=run.attempt)
                return
            await finish_job(db, STAGE, run.session_id, "done", {
                "version": run.version, "backend": engine.backend, "tokens": engine.prompt_tokens + engine.completion_tokens,
            })
            await enqueue(db, ready, rt.name, traceparent=envelope.traceparent)
        rt.relay.wake()
        m = rt.metrics
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

    async def _fail(self, envelope: Envelope, run: Run, error: ErrorInfo) -> None:
        rt = self.runtime
        failed = NotesFailed(session_id=run.session_id, error=error, attempts=run.attempt,
                             transcript_version=run.version)
        async with rt.session_factory() as db, db.begin():
            if not await self._finish(db, envelope, run, "failed", {"error": error.model_dump(mode="json")}):
                log.warning("notes_run_lost_to_another_worker", attempt=run.attempt)
                return
            await finish_job(db, STAGE, run.session_id, "failed", {"version": run.version, "code": error.code})
            await enqueue(db, failed, rt.name, traceparent=envelope.traceparent)
        rt.relay.wake()
        rt.metrics.failures.labels(STAGE, error.kind).inc()
        log.warning("notes_failed", version=run.version, backend=run.backend, kind=error.kind, code=error.code)

    async def _tick(self, envelope: Envelope, sid: UUID, message: str) -> None:
        try:
            await publish_event(self.runtime.broker, SessionProgress(session_id=sid, stage=Stage.notes, fraction=0.1,
                                                                     message=message),
                                self.runtime.name, traceparent=envelope.traceparent)
        except Exception as exc:  # a lost tick is harmless
            log.debug("progress_tick_lost", error=type(exc).__name__)


def _safe(exc: Exception) -> str:
    """ServiceError messages are written to be shown; anything else gets a generic one."""
    return getattr(exc, "message", None) or "Notes could not be generated."


def _short_key(key: str) -> str:
    return key if key == AUTO else key[:12]
