"""The notes service's persistence in PostgreSQL: ``notes_inputs`` (the newest merged
transcript of a session, the input of notes.regenerate), ``notes_runs`` (one row per
(session, transcript version, request key), claimed before any backend is called), the
notes stage job, the inbox and the outbox. Every method is one transaction; a finished
run's status, its inbox entry and its notes.ready / notes.failed event commit together.

No decisions live here beyond what must be atomic (the claim, the fenced finish); the
handlers decide (services.notes.handlers)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from uuid import UUID

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert

from shared.contracts.events import Event, TranscriptMerged
from shared.db.tables import notes_inputs, notes_runs, stage_jobs
from shared.inbox import claim, forget_session, is_buried
from shared.jobs import finish_job, start_job
from shared.outbox import enqueue

STAGE = "notes"


@dataclass(frozen=True)
class Run:
    id: int
    session_id: UUID
    version: int
    request_key: str
    backend: str
    attempt: int


@dataclass(frozen=True)
class Claim:
    """The claim's outcome: ``claimed`` (new run), ``retaken`` (a crashed or earlier attempt's
    run, attempt + 1), ``finished`` (done or failed already), ``held`` (another live worker
    runs it) or ``buried`` (the session was deleted)."""

    outcome: str
    run: Run | None = None


@dataclass(frozen=True)
class Finish:
    """How a run ends: its row's status and columns, the stage job's detail, the event."""

    status: str  # done | failed
    values: dict
    job_detail: dict
    event: Event


class NotesRunStore:
    def __init__(self, session_factory, consumer: str) -> None:
        self._session_factory = session_factory
        self.consumer = consumer

    async def remember_input(self, merged: TranscriptMerged, traceparent: str | None) -> int | None:
        """Keep the newest merged transcript; returns the newest stored version (None when the
        session was deleted: nothing is stored)."""
        payload = merged.model_dump(mode="json")
        async with self._session_factory() as db, db.begin():
            if await is_buried(db, self.consumer, merged.session_id):
                return None
            await db.execute(
                insert(notes_inputs)
                .values(session_id=merged.session_id, transcript_version=merged.version, merged=payload,
                        traceparent=traceparent)
                .on_conflict_do_update(
                    index_elements=[notes_inputs.c.session_id],
                    set_={"transcript_version": merged.version, "merged": payload, "traceparent": traceparent,
                          "updated_at": func.now()},
                    where=notes_inputs.c.transcript_version <= merged.version,
                )
            )
            return (await db.execute(
                select(notes_inputs.c.transcript_version).where(notes_inputs.c.session_id == merged.session_id)
            )).scalar_one()

    async def latest_input(self, session_id: UUID) -> TranscriptMerged | None:
        async with self._session_factory() as db:
            row = (await db.execute(
                select(notes_inputs.c.merged).where(notes_inputs.c.session_id == session_id)
            )).first()
        return TranscriptMerged.model_validate(row.merged) if row is not None else None

    async def claim(self, session_id: UUID, version: int, request_key: str, backend: str, worker: str,
                    stale_s: float) -> Claim:
        """Insert the run as ours, or look at the existing one: retake it when its worker went
        quiet for ``stale_s`` (or it is this worker's own earlier attempt)."""
        async with self._session_factory() as db, db.begin():
            if await is_buried(db, self.consumer, session_id):
                return Claim("buried")
            row = (await db.execute(
                insert(notes_runs)
                .values(session_id=session_id, transcript_version=version, request_key=request_key, backend=backend,
                        status="running", attempts=1, worker=worker)
                .on_conflict_do_nothing()
                .returning(notes_runs.c.id, notes_runs.c.attempts)
            )).first()
            if row is not None:
                await start_job(db, STAGE, session_id)
                return Claim("claimed", Run(row.id, session_id, version, request_key, backend, row.attempts))
            existing = (await db.execute(
                select(notes_runs.c.id, notes_runs.c.status, notes_runs.c.worker,
                       (notes_runs.c.updated_at < func.now() - timedelta(seconds=stale_s)).label("stale"))
                .where(notes_runs.c.session_id == session_id, notes_runs.c.transcript_version == version,
                       notes_runs.c.request_key == request_key)
                .with_for_update()
            )).first()
            if existing is None:  # deleted between the insert and the select (session.deleted)
                return Claim("held")
            if existing.status != "running":
                return Claim("finished")
            if not (existing.stale or existing.worker == worker):
                return Claim("held")
            attempt = (await db.execute(
                update(notes_runs).where(notes_runs.c.id == existing.id)
                .values(attempts=notes_runs.c.attempts + 1, worker=worker, updated_at=func.now(), backend=backend)
                .returning(notes_runs.c.attempts)
            )).scalar_one()
            await start_job(db, STAGE, session_id)
            return Claim("retaken", Run(existing.id, session_id, version, request_key, backend, attempt))

    async def heartbeat(self, run: Run) -> None:
        await self._touch(run, func.now())

    async def release(self, run: Run) -> None:
        """Age the claim so the next delivery retakes it at once (shutdown mid-run)."""
        await self._touch(run, datetime(1970, 1, 1, tzinfo=timezone.utc))

    async def _touch(self, run: Run, updated_at) -> None:
        async with self._session_factory() as db, db.begin():
            await db.execute(
                update(notes_runs)
                .where(notes_runs.c.id == run.id, notes_runs.c.attempts == run.attempt,
                       notes_runs.c.status == "running")
                .values(updated_at=updated_at)
            )

    async def finish(self, run: Run, event_id: str, finish: Finish, traceparent: str | None) -> bool:
        """Mark the run finished, record the delivery and enqueue its event, if this worker
        still holds the run (the attempt fences retakes); False when it lost the run."""
        async with self._session_factory() as db, db.begin():
            owned = (await db.execute(
                update(notes_runs)
                .where(notes_runs.c.id == run.id, notes_runs.c.attempts == run.attempt,
                       notes_runs.c.status == "running")
                .values(status=finish.status, updated_at=func.now(), **finish.values)
                .returning(notes_runs.c.id)
            )).first()
            if owned is None:
                return False
            await claim(db, self.consumer, event_id, run.session_id)
            await finish_job(db, STAGE, run.session_id, finish.status, finish.job_detail)
            await enqueue(db, finish.event, self.consumer, traceparent=traceparent)
        return True

    async def forget(self, session_id: UUID) -> int:
        """session.deleted: drop the session's runs, input, job and inbox rows and bury it (the
        one shared forget); returns the runs dropped."""
        deleted = await forget_session(self._session_factory, self.consumer, session_id, [
            notes_runs, notes_inputs, delete(stage_jobs).where(stage_jobs.c.stage == STAGE)])
        return deleted["notes_runs"]
