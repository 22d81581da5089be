"""Retention: sessions older than TB_RETENTION_DAYS are deleted exactly as DELETE
/api/sessions/{id} deletes one (row, data key, unsent events, blobs; session.deleted for the
other services), by a periodic job of the gateway. The gateway runs it because it owns the
sessions table, the data keys and the deletion path; the progress service only holds a read
model. Several replicas may run it: SKIP LOCKED hands each expired session to one of them."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from shared.blobstore import session_prefix
from shared.contracts.events import SessionDeleted
from shared.logging import get_logger
from shared.outbox import enqueue
from services.gateway import queries
from services.gateway.state import GatewayState

log = get_logger(__name__)
SOURCE = "gateway"


async def delete_expired_sessions(state: GatewayState, batch_size: int = 50) -> int:
    """One pass: delete up to ``batch_size`` sessions past retention; returns how many."""
    days = state.settings.retention_days
    if days <= 0:
        return 0
    cutoff = datetime.now(timezone.utc) - timedelta(days=days)
    async with state.session_factory() as db, db.begin():
        expired = await queries.sessions_older_than(db, cutoff, batch_size)
        for row in expired:
            await queries.delete_session(db, row.id)
            await enqueue(db, SessionDeleted(session_id=row.id, owner_id=row.therapist_id), SOURCE)
            await queries.audit(db, row.therapist_id, row.id, "retention_delete")
    for row in expired:
        await asyncio.to_thread(state.blobs.delete_prefix, session_prefix(row.id))
    if expired:
        state.publish_soon()
        log.info("retention_sessions_deleted", sessions=len(expired), retention_days=days)
    return len(expired)


def schedule_retention(state: GatewayState) -> None:
    """Run the retention pass periodically once the gateway has started (TB_RETENTION_DAYS > 0)."""
    settings = state.settings
    if settings.retention_days > 0:
        state.runtime.every("retention", settings.retention_interval_s, lambda: delete_expired_sessions(state))
