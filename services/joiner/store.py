"""The joiner's persistence: the join_state row per session, the inbox claim and the
outbox, behind a small transaction interface so the handlers decide without knowing
SQL (and are unit tested on tests/unit/fakes.py).

Every transaction locks the session's row (SELECT ... FOR UPDATE), so two joiner
processes receiving the two halves at the same moment serialise and exactly one of them
publishes transcript.merged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.contracts.events import Event
from shared.db.tables import join_state
from shared.inbox import claim, forget_session
from shared.outbox import enqueue


@dataclass
class JoinRow:
    """What the joiner remembers of one session (the join_state columns)."""

    session_id: UUID
    transcript: dict | None = None
    diarization: dict | None = None
    transcript_error: dict | None = None
    diarization_error: dict | None = None
    transcript_at: datetime | None = None
    deadline_at: datetime | None = None
    merged_version: int = 0
    merged_at: datetime | None = None
    degraded: bool = False
    late_diarization: bool = False
    traceparent: str | None = None


class JoinTransaction(Protocol):
    async def claim(self, event_id: str, session_id: UUID) -> bool:
        """True the first time this event id is seen (inbox)."""

    async def save(self, session_id: UUID, **fields: Any) -> None:
        """Create or update the session's row with these JoinRow fields."""

    async def lock(self, session_id: UUID) -> JoinRow | None:
        """The session's row, locked until the transaction ends."""

    async def due(self, now: datetime, limit: int) -> list[JoinRow]:
        """Unmerged rows with a transcript whose deadline has passed, locked (rows another
        replica holds are skipped)."""

    async def publish(self, event: Event, traceparent: str | None) -> None:
        """Publish after commit (outbox)."""


class JoinStore(Protocol):
    def transaction(self) -> Any:
        """``async with store.transaction() as tx``: one unit of work; commits on exit."""

    async def forget(self, session_id: UUID) -> None:
        """session.deleted: drop the session's rows and leave a tombstone."""


def _row(record) -> JoinRow:
    return JoinRow(**{name: getattr(record, name) for name in JoinRow.__dataclass_fields__})


class _PgJoinTransaction:
    def __init__(self, db: AsyncSession, consumer: str) -> None:
        self._db, self._consumer = db, consumer
        self.published = 0

    async def claim(self, event_id: str, session_id: UUID) -> bool:
        return await claim(self._db, self._consumer, event_id, session_id)

    async def save(self, session_id: UUID, **fields: Any) -> None:
        await self._db.execute(
            insert(join_state).values(session_id=session_id, **fields)
            .on_conflict_do_update(index_elements=[join_state.c.session_id], set_=fields)
        )

    async def lock(self, session_id: UUID) -> JoinRow | None:
        found = (await self._db.execute(
            select(join_state).where(join_state.c.session_id == session_id).with_for_update()
        )).first()
        return _row(found) if found is not None else None

    async def due(self, now: datetime, limit: int) -> list[JoinRow]:
        rows = (await self._db.execute(
            select(join_state).where(
                join_state.c.merged_at.is_(None), join_state.c.transcript.is_not(None), join_state.c.deadline_at <= now,
            ).with_for_update(skip_locked=True).limit(limit)
        )).all()
        return [_row(r) for r in rows]

    async def publish(self, event: Event, traceparent: str | None) -> None:
        await enqueue(self._db, event, self._consumer, traceparent=traceparent)
        self.published += 1


class PgJoinStore:
    """join_state in PostgreSQL; wakes the outbox relay after a commit that published."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession], consumer: str, relay=None) -> None:
        self._sessions, self._consumer, self._relay = session_factory, consumer, relay

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_PgJoinTransaction]:
        async with self._sessions() as db:
            async with db.begin():
                tx = _PgJoinTransaction(db, self._consumer)
                yield tx
        if tx.published and self._relay is not None:
            self._relay.wake()

    async def forget(self, session_id: UUID) -> None:
        await forget_session(self._sessions, self._consumer, session_id, [join_state])
