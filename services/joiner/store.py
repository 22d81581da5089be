"""The joiner's persistence: the join_state row per session, the inbox claim and the
outbox, behind a small transaction interface so the handlers decide without knowing
SQL (and are unit tested on tests/unit/fakes.py).

Every transaction locks the session's row (SELECT ... FOR UPDATE), so two joiner
processes receiving the two halves at the same moment serialise and exactly one of them
publishes transcript.merged."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from shared.contracts.events import Event
from shared.db.tables import join_state
from shared.store import PgStore, PgTransaction


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


class _PgJoinTransaction(PgTransaction):
    async def save(self, session_id: UUID, **fields: Any) -> None:
        await self.db.execute(
            insert(join_state).values(session_id=session_id, **fields)
            .on_conflict_do_update(index_elements=[join_state.c.session_id], set_=fields)
        )

    async def lock(self, session_id: UUID) -> JoinRow | None:
        found = (await self.db.execute(
            select(join_state).where(join_state.c.session_id == session_id).with_for_update()
        )).first()
        return _row(found) if found is not None else None

    async def due(self, now: datetime, limit: int) -> list[JoinRow]:
        rows = (await self.db.execute(
            select(join_state).where(
                join_state.c.merged_at.is_(None), join_state.c.transcript.is_not(None), join_state.c.deadline_at <= now,
            ).with_for_update(skip_locked=True).limit(limit)
        )).all()
        return [_row(r) for r in rows]


class PgJoinStore(PgStore):
    """join_state in PostgreSQL."""

    transaction_class = _PgJoinTransaction
    owned_tables = (join_state,)
