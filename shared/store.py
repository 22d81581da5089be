"""What every service's PostgreSQL store shares: a unit of work (one transaction) that
claims the event in the inbox, enqueues what it publishes in the outbox, and wakes the
outbox relay after a commit that published; and forgetting a deleted session. A service's
store subclasses these with its own queries (e.g. services/joiner/store.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import ClassVar
from uuid import UUID

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.contracts.events import Event
from shared.inbox import claim, forget_session
from shared.outbox import enqueue


class PgTransaction:
    def __init__(self, db: AsyncSession, consumer: str) -> None:
        self.db, self.consumer = db, consumer
        self.published = 0

    async def claim(self, event_id: str, session_id: UUID) -> bool:
        """True the first time this consumer sees the event id (inbox)."""
        return await claim(self.db, self.consumer, event_id, session_id)

    async def publish(self, event: Event, traceparent: str | None) -> None:
        """Published by the relay once the transaction commits (outbox)."""
        await enqueue(self.db, event, self.consumer, traceparent=traceparent)
        self.published += 1


class PgStore:
    transaction_class: ClassVar[type[PgTransaction]] = PgTransaction
    owned_tables: ClassVar[tuple[Table, ...]] = ()  # what session.deleted removes

    def __init__(self, session_factory: async_sessionmaker[AsyncSession], consumer: str, relay=None) -> None:
        self.sessions, self.consumer, self._relay = session_factory, consumer, relay

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgTransaction]:
        """``async with store.transaction() as tx``: commits on exit, rolls back on error."""
        async with self.sessions() as db:
            async with db.begin():
                tx = self.transaction_class(db, self.consumer)
                yield tx
        if tx.published and self._relay is not None:
            self._relay.wake()

    async def forget(self, session_id: UUID) -> None:
        """session.deleted: drop the session's rows, inbox entries, and leave a tombstone."""
        await forget_session(self.sessions, self.consumer, session_id, self.owned_tables)
