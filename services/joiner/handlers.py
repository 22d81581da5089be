"""The durable stream join. State (which halves arrived, their payloads, the deadline)
lives in the join_state table; every handler locks the session's row (SELECT ... FOR
UPDATE), so two joiner processes receiving the two halves at the same moment serialise
and exactly one of them publishes transcript.merged (through the outbox)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert

from shared.contracts.events import (
    DiarizationFailed,
    DiarizationReady,
    SessionDeleted,
    TranscriptFailed,
    TranscriptReady,
    TranscriptRemerge,
)
from shared.db.tables import inbox, join_state
from shared.envelope import Envelope
from shared.inbox import claim
from shared.logging import get_logger
from shared.outbox import enqueue
from shared.runtime import ServiceRuntime
from services.joiner.join import build_merged, degraded_warning

log = get_logger(__name__)


class JoinHandler:
    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime
        self.deadline_s = runtime.settings.join_diarization_deadline_s

    # --- events ------------------------------------------------------------------------
    async def on_event(self, envelope: Envelope) -> None:
        event = envelope.event
        if isinstance(event, SessionDeleted):
            await self._forget(event.session_id)
            return
        rt = self.runtime
        sid = event.session_id
        published = False
        async with rt.session_factory() as db, db.begin():
            if not await claim(db, rt.name, envelope.event_id, sid):
                rt.metrics.duplicates.labels(rt.name).inc()
                return
            values: dict = {}
            if isinstance(event, TranscriptReady):
                now = datetime.now(timezone.utc)
                values = {"transcript": event.model_dump(mode="json"), "transcript_at": now,
                          "deadline_at": now + timedelta(seconds=self.deadline_s), "traceparent": envelope.traceparent}
            elif isinstance(event, DiarizationReady):
                values = {"diarization": event.model_dump(mode="json")}
            elif isinstance(event, DiarizationFailed):
                values = {"diarization_error": event.error.model_dump(mode="json")}
            elif isinstance(event, TranscriptFailed):
                values = {"transcript_error": event.error.model_dump(mode="json")}
            if values:
                await db.execute(
                    insert(join_state).values(session_id=sid, **values)
                    .on_conflict_do_update(index_elements=[join_state.c.session_id], set_=values)
                )
            row = (await db.execute(select(join_state).where(join_state.c.session_id == sid).with_for_update())).first()
            if row is None:
                return
            if isinstance(event, TranscriptRemerge):
                published = await self._merge(db, row, envelope.traceparent, force=True)
            elif isinstance(event, DiarizationReady) and row.merged_at is not None:
                if row.degraded:
                    # Late diarization after a degraded merge: recorded; a remerge
                    # (POST /api/sessions/{id}/transcript:remerge or the transcript.remerge
                    # command) publishes a diarized version.
                    await db.execute(join_state.update().where(join_state.c.session_id == sid).values(late_diarization=True))
                    log.info("late_diarization_recorded")
            else:
                published = await self._merge(db, row, envelope.traceparent)
        if published:
            rt.relay.wake()

    async def _merge(self, db, row, traceparent: str | None, force: bool = False, deadline_passed: bool = False) -> bool:
        """Publish transcript.merged if the join is complete (or forced). Caller holds the row lock."""
        if row.transcript is None or row.transcript_error is not None:
            return False
        if row.merged_at is not None and not force:
            return False
        diarization = DiarizationReady.model_validate(row.diarization) if row.diarization else None
        warnings: list[str] = []
        if diarization is None:
            if row.diarization_error:
                warnings.append(degraded_warning(row.diarization_error.get("message", "diarization failed")))
            elif deadline_passed or force:
                warnings.append(degraded_warning(f"speaker identification did not finish within {self.deadline_s:.0f} s"))
            else:
                return False  # wait for the other half (or the deadline)
        transcript = TranscriptReady.model_validate(row.transcript)
        segments = transcript.segments
        if segments is None and transcript.segments_ref:
            from shared.contracts.events import TranscriptSegment

            raw = await self.runtime.run_blocking(self.runtime.blobs.get_json, transcript.segments_ref)
            segments = [TranscriptSegment.model_validate(s) for s in raw]
        version = row.merged_version + 1
        merged = await self.runtime.run_blocking(
            build_merged, row.session_id, transcript, segments or [], diarization, version, warnings
        )
        if len(merged.model_dump_json()) > self.runtime.settings.inline_payload_max_bytes:
            merged.segments_ref = await self.runtime.run_blocking(
                self.runtime.blobs.put_json, f"sessions/{row.session_id}/merged-v{version}.json",
                [s.model_dump(mode="json") for s in merged.segments or []])
            merged.segments = None
        await db.execute(join_state.update().where(join_state.c.session_id == row.session_id).values(
            merged_version=version, merged_at=func.now(), degraded=diarization is None, late_diarization=False))
        await enqueue(db, merged, self.runtime.name, traceparent=traceparent or row.traceparent)
        log.info("transcript_merged", version=version, diarized=merged.diarized, segments=len(merged.segments or []))
        return True

    # --- deadline scheduler ----------------------------------------------------------------
    async def run_deadline_scheduler(self) -> None:
        """Degrade, never hang: merge without speakers when diarization has not arrived by
        the deadline. The deadline is a column, so this survives restarts; SKIP LOCKED lets
        several joiner replicas share the work."""
        interval = self.runtime.settings.join_scheduler_interval_s
        while True:
            try:
                await self.check_deadlines()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("deadline_scheduler_error", error=type(exc).__name__)
            await asyncio.sleep(interval)

    async def check_deadlines(self) -> int:
        rt = self.runtime
        merged = 0
        async with rt.session_factory() as db, db.begin():
            rows = (await db.execute(
                select(join_state).where(
                    join_state.c.merged_at.is_(None), join_state.c.transcript.is_not(None),
                    join_state.c.deadline_at <= func.now(),
                ).with_for_update(skip_locked=True).limit(20)
            )).all()
            for row in rows:
                if await self._merge(db, row, row.traceparent, deadline_passed=True):
                    merged += 1
        if merged:
            rt.relay.wake()
        return merged

    async def _forget(self, session_id) -> None:
        rt = self.runtime
        async with rt.session_factory() as db, db.begin():
            await db.execute(delete(join_state).where(join_state.c.session_id == session_id))
            await db.execute(delete(inbox).where(inbox.c.consumer == rt.name, inbox.c.session_id == session_id))
