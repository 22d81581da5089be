"""Consumer idempotency: remember which event ids a consumer has handled, in the same
transaction as the state change, so a redelivered or duplicated event is a no-op."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.tables import inbox, tombstones


async def claim(db: AsyncSession, consumer: str, event_id: str, session_id: UUID | None = None) -> bool:
    """True the first time (consumer, event_id) is seen in a committed transaction."""
    result = await db.execute(
        insert(inbox)
        .values(consumer=consumer, event_id=event_id, session_id=session_id)
        .on_conflict_do_nothing()
        .returning(inbox.c.event_id)
    )
    return result.first() is not None


async def bury(db: AsyncSession, consumer: str, session_id: UUID) -> None:
    """Remember that this consumer forgot a deleted session."""
    await db.execute(insert(tombstones).values(consumer=consumer, session_id=session_id).on_conflict_do_nothing())


async def is_buried(db: AsyncSession, consumer: str, session_id: UUID) -> bool:
    from sqlalchemy import select

    found = await db.execute(
        select(tombstones.c.session_id).where(tombstones.c.consumer == consumer, tombstones.c.session_id == session_id)
    )
    return found.first() is not None
