"""Folds every pipeline event into the session read model and publishes session.status
(through the outbox, in the same transaction, with a per-session monotonic seq)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert

from shared.contracts.events import (
    DiarizationReady,
    NotesFailed,
    NotesReady,
    SessionDeleted,
    SessionProgress,
    SessionStatus,
    StageState,
    TranscriptMerged,
    TranscriptReady,
)
from shared.db.tables import inbox, session_results, session_status, status_history
from shared.envelope import Envelope
from shared.inbox import claim
from shared.logging import get_logger
from shared.outbox import enqueue
from shared.runtime import ServiceRuntime
from services.progress.state import SessionView, apply_event

log = get_logger(__name__)


def _view_from_row(row) -> SessionView:
    return SessionView(
        session_id=str(row.session_id),
        owner_id=str(row.owner_id) if row.owner_id else None,
        status=row.status,
        percent=row.percent,
        message=row.message,
        eta_s=row.eta_s,
        error=row.error,
        stages={k: StageState.model_validate(v) for k, v in (row.stages or {}).items()} or SessionView("x").stages,
        warnings=list(row.warnings or []),
        audio_s=row.audio_s,
    )


class ProgressHandler:
    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime

    async def on_event(self, envelope: Envelope) -> None:
        event = envelope.event
        rt = self.runtime
        if isinstance(event, SessionDeleted):
            await self._forget(event.session_id)
            return
        sid = event.session_id
        async with rt.session_factory() as db, db.begin():
            # Progress ticks are idempotent by construction (max fraction); everything
            # else is deduplicated by event id.
            if not isinstance(event, SessionProgress) and not await claim(db, rt.name, envelope.event_id, sid):
                rt.metrics.duplicates.labels(rt.name).inc()
                return
            await db.execute(
                insert(session_status).values(session_id=sid, status="uploading").on_conflict_do_nothing()
            )
            row = (await db.execute(select(session_status).where(session_status.c.session_id == sid).with_for_update())).one()
            view = _view_from_row(row)
            changed = apply_event(view, event)
            await self._store_result(db, envelope)
            if not changed:
                return
            await self._write_status(db, row.seq, view, envelope.traceparent)
        rt.relay.wake()
        if view.status in ("processed", "failed"):
            rt.metrics.sessions.labels(view.status).inc()

    async def _write_status(self, db, previous_seq: int, view: SessionView, traceparent: str | None) -> None:
        """Persist the view with the next seq, append it to the history (SSE resume reads
        it) and publish session.status through the outbox, all in the caller's transaction."""
        sid = view.session_id
        seq = previous_seq + 1
        status = SessionStatus(
            session_id=sid, seq=seq, status=view.status, percent=view.percent, message=view.message,
            eta_s=view.eta_s, error=view.error, stages=view.stages, warnings=view.warnings,
        )
        finished = view.status in ("processed", "failed")
        await db.execute(
            session_status.update().where(session_status.c.session_id == sid).values(
                owner_id=view.owner_id, status=view.status, percent=view.percent, seq=seq, message=view.message,
                eta_s=view.eta_s, error=view.error, stages={k: v.model_dump(mode="json") for k, v in view.stages.items()},
                warnings=view.warnings, audio_s=view.audio_s, updated_at=func.now(),
                finished_at=func.now() if finished else None,
            )
        )
        await db.execute(status_history.insert().values(session_id=sid, seq=seq, payload=status.model_dump(mode="json")))
        await enqueue(db, status, self.runtime.name, traceparent=traceparent)

    # --- reconciler ---------------------------------------------------------------------------
    async def run_reconciler(self) -> None:
        """Nothing stays 'processing' forever: a session with no progress for
        stage_deadline_s is failed with a clear message (SKIP LOCKED: replicas share it)."""
        while True:
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("reconciler_error", error=type(exc).__name__)
            await asyncio.sleep(min(60.0, max(1.0, self.runtime.settings.stage_deadline_s / 10)))

    async def reconcile(self) -> int:
        rt = self.runtime
        limit_s = rt.settings.stage_deadline_s
        failed = 0
        async with rt.session_factory() as db, db.begin():
            rows = (await db.execute(
                select(session_status).where(
                    session_status.c.status.not_in(("processed", "failed")),
                    session_status.c.updated_at < func.now() - timedelta(seconds=limit_s),
                ).with_for_update(skip_locked=True).limit(50)
            )).all()
            for row in rows:
                view = _view_from_row(row)
                stalled = [name for name, st in view.stages.items() if st.state in ("pending", "running")]
                view.status = "failed"
                view.error = (f"Processing stalled: no progress for {limit_s / 60:.0f} minutes "
                              f"(stages not finished: {', '.join(stalled) or 'none'}). Please upload again.")
                view.message = view.error
                view.eta_s = 0.0
                await self._write_status(db, row.seq, view, None)
                failed += 1
        if failed:
            rt.relay.wake()
            rt.metrics.sessions.labels("failed").inc(failed)
            log.warning("stalled_sessions_failed", count=failed)
        return failed

    async def _store_result(self, db, envelope: Envelope) -> None:
        event = envelope.event
        values: dict = {}
        payload = event.model_dump(mode="json")
        if isinstance(event, TranscriptReady):
            values = {"transcript": payload}
        elif isinstance(event, DiarizationReady):
            values = {"diarization": payload}
        elif isinstance(event, TranscriptMerged):
            values = {"merged": payload, "merged_version": event.version}
        elif isinstance(event, NotesReady):
            values = {"notes": payload["notes"], "notes_engine": payload["engine"], "notes_error": None}
        elif isinstance(event, NotesFailed):
            values = {"notes_error": payload["error"]}
        if not values:
            return
        if isinstance(event, TranscriptMerged):
            # Keep only the newest merge even if an older version arrives late.
            stmt = insert(session_results).values(session_id=event.session_id, **values)
            stmt = stmt.on_conflict_do_update(
                index_elements=[session_results.c.session_id], set_=values,
                where=func.coalesce(session_results.c.merged_version, 0) <= event.version,
            )
        else:
            stmt = insert(session_results).values(session_id=event.session_id, **values)
            stmt = stmt.on_conflict_do_update(index_elements=[session_results.c.session_id], set_=values)
        await db.execute(stmt)

    async def _forget(self, session_id) -> None:
        rt = self.runtime
        async with rt.session_factory() as db, db.begin():
            for table in (status_history, session_results, session_status):
                await db.execute(delete(table).where(table.c.session_id == session_id))
            await db.execute(delete(inbox).where(inbox.c.consumer == rt.name, inbox.c.session_id == session_id))
        log.info("session_forgotten")
