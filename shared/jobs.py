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
from shared.logging import get_logger

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


async def forget_session(runtime, session_id: UUID, stage: str) -> None:
    """session.deleted for an audio stage: its stage_jobs row, through the one shared forget."""
    from sqlalchemy import delete

    from shared.inbox import forget_session as forget

    await forget(runtime.session_factory, runtime.name, session_id,
                 [delete(stage_jobs).where(stage_jobs.c.stage == stage)])
