"""Consumer idempotency: remember which event ids a consumer has handled, in the same
transaction as the state change, so a redelivered or duplicated event is a no-op.

Deletion lives here too, because it is the inbox's mirror image: ``forget_session`` is
the one way every consumer forgets a deleted session (its own rows, its inbox entries,
and a tombstone so a late event cannot recreate them), and ``Tombstones`` is what the
runtime asks before handing an event to a handler."""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from sqlalchemy import Delete, Table, delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

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
    found = await db.execute(
        select(tombstones.c.session_id).where(tombstones.c.consumer == consumer, tombstones.c.session_id == session_id)
    )
    return found.first() is not None


async def forget_session(
    session_factory: async_sessionmaker[AsyncSession],
    consumer: str,
    session_id: UUID,
    owned: Iterable[Table | Delete],
) -> dict[str, int]:
    """session.deleted, in one transaction: delete the consumer's rows of the session
    (``owned``: tables with a session_id column, or DELETE statements narrowed further,
    e.g. to one stage), its inbox entries, and bury the id. Returns rows deleted per table."""
    deleted: dict[str, int] = {}
    async with session_factory() as db, db.begin():
        for item in owned:
            statement = item if isinstance(item, Delete) else delete(item)
            table = statement.table
            result = await db.execute(statement.where(table.c.session_id == session_id))
            deleted[table.name] = result.rowcount
        await db.execute(delete(inbox).where(inbox.c.consumer == consumer, inbox.c.session_id == session_id))
        await bury(db, consumer, session_id)
    return deleted


class Tombstones:
    """Which sessions this consumer has forgotten (the runtime drops their late events)."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession], consumer: str) -> None:
        self._sessions, self._consumer = session_factory, consumer

    async def is_buried(self, session_id: UUID) -> bool:
        async with self._sessions() as db:
            return await is_buried(db, self._consumer, session_id)
