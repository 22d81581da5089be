"""Stage-job bookkeeping for the workers (transcriber, diarizer, notes) and the
thread-safe progress reporter they use from inside blocking inference."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.broker import publish_event
from shared.contracts.events import SessionProgress, Stage
from shared.db.tables import stage_jobs
from shared.inbox import claim
from shared.logging import get_logger
from shared.outbox import enqueue

log = get_logger(__name__)


async def job_status(db: AsyncSession, stage: str, session_id: UUID, lock: bool = False) -> str | None:
    query = select(stage_jobs.c.status).where(stage_jobs.c.stage == stage, stage_jobs.c.session_id == session_id)
    if lock:
        query = query.with_for_update()
    return (await db.execute(query)).scalar_one_or_none()


async def start_job(db: AsyncSession, stage: str, session_id: UUID) -> int:
    """Mark a job running and count the attempt; returns the attempt number."""
    result = await db.execute(
        insert(stage_jobs)
        .values(stage=stage, session_id=session_id, status="running", attempts=1)
        .on_conflict_do_update(
            index_elements=[stage_jobs.c.stage, stage_jobs.c.session_id],
            set_={"status": "running", "attempts": stage_jobs.c.attempts + 1, "updated_at": func.now()},
        )
        .returning(stage_jobs.c.attempts)
    )
    return result.scalar_one()


async def finish_job(db: AsyncSession, stage: str, session_id: UUID, status: str, detail: dict | None = None) -> None:
    await db.execute(
        insert(stage_jobs)
        .values(stage=stage, session_id=session_id, status=status, detail=detail or {})
        .on_conflict_do_update(
            index_elements=[stage_jobs.c.stage, stage_jobs.c.session_id],
            set_={"status": status, "detail": detail or {}, "updated_at": func.now()},
        )
    )



class StageJobStore:
    """The audio stages' persistence: one ``stage_jobs`` row per (stage, session), and the
    result or failure event enqueued in the outbox in the same transaction as the job's
    final status (plus the inbox entry on success), so the DB and the bus agree."""

    def __init__(self, session_factory, consumer: str, stage: str) -> None:
        self._session_factory = session_factory
        self.consumer, self.stage = consumer, stage

    async def begin(self, session_id: UUID) -> int | None:
        """Start (or restart) the job; the attempt number, or None when it already finished."""
        async with self._session_factory() as db, db.begin():
            if await job_status(db, self.stage, session_id) in ("done", "failed"):
                return None
            return await start_job(db, self.stage, session_id)

    async def complete(self, session_id: UUID, event_id: str, result, traceparent: str | None,
                       detail: dict) -> bool:
        """Mark done and enqueue ``result``; False when another delivery finished first."""
        async with self._session_factory() as db, db.begin():
            if await job_status(db, self.stage, session_id, lock=True) == "done":
                return False
            await claim(db, self.consumer, event_id, session_id)
            await finish_job(db, self.stage, session_id, "done", detail)
            await enqueue(db, result, self.consumer, traceparent=traceparent)
        return True

    async def fail(self, session_id: UUID, failed, traceparent: str | None, code: str) -> bool:
        """Mark failed and enqueue ``failed``; False when the job had already finished."""
        async with self._session_factory() as db, db.begin():
            if await job_status(db, self.stage, session_id, lock=True) in ("done", "failed"):
                return False
            await finish_job(db, self.stage, session_id, "failed", {"code": code})
            await enqueue(db, failed, self.consumer, traceparent=traceparent)
        return True

class ProgressReporter:
    """Called from a worker thread with (fraction, message); publishes session.progress
    ticks on the event loop, throttled so a fast model does not flood the bus."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        broker,
        session_id: UUID,
        stage: Stage,
        source: str,
        traceparent: str | None,
        min_interval_s: float = 0.5,
    ) -> None:
        self._loop, self._broker = loop, broker
        self._session_id, self._stage, self._source, self._traceparent = session_id, stage, source, traceparent
        self._min_interval_s = min_interval_s
        self._last_sent = 0.0
        self._last_fraction = -1.0
        self._started = time.monotonic()

    def __call__(self, fraction: float, message: str = "") -> None:
        fraction = max(0.0, min(1.0, fraction))
        now = time.monotonic()
        if fraction < 1.0 and (now - self._last_sent < self._min_interval_s or fraction <= self._last_fraction):
            return
        self._last_sent, self._last_fraction = now, fraction
        elapsed = now - self._started
        eta = elapsed * (1 - fraction) / fraction if fraction > 0.05 else None
        event = SessionProgress(
            session_id=self._session_id, stage=self._stage, fraction=round(fraction, 4), message=message,
            eta_s=round(eta, 1) if eta is not None else None,
        )
        asyncio.run_coroutine_threadsafe(self._publish(event), self._loop)

    async def _publish(self, event: SessionProgress) -> None:
        try:
            await publish_event(self._broker, event, self._source, traceparent=self._traceparent)
        except Exception as exc:  # a lost tick is harmless; the next one carries the state
            log.debug("progress_tick_lost", error=type(exc).__name__)


ProgressFn = Callable[[float, str], None]


async def forget_session(runtime, session_id: UUID, stage: str, extra_tables: tuple = ()) -> None:
    """session.deleted for an audio stage: its stage_jobs row (and the stage's own
    ``extra_tables`` rows of the session), through the one shared forget."""
    from sqlalchemy import delete

    from shared.inbox import forget_session as forget

    await forget(runtime.session_factory, runtime.name, session_id,
                 [delete(stage_jobs).where(stage_jobs.c.stage == stage), *extra_tables])
