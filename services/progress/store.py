"""The progress service's persistence: the session read model (session_status), its
history (status_history, read by SSE resume), the stage results (session_results), the
inbox claim and the outbox, behind a small transaction interface so the handlers decide
without knowing SQL (and are unit tested on tests/unit/fakes.py).

Every event's transaction locks the session's session_status row first, so everything
written for one session is serialised across replicas."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy import cast, func, or_, select
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.dialects.postgresql import insert

from shared.contracts.events import SessionStatus, StageState, Topic
from shared.db.tables import outbox, session_results, session_status, status_history, tombstones
from shared.outbox import latest_ids, republish as republish_rows
from shared.store import PgStore, PgTransaction
from services.progress.state import TERMINAL, SessionView


class ProgressTransaction(Protocol):
    async def claim(self, event_id: str, session_id: UUID) -> bool:
        """True the first time this event id is seen (inbox)."""

    async def lock_view(self, session_id: UUID, now: datetime) -> tuple[SessionView, int]:
        """The session's view and its last seq, locked; created ("uploading", seq 0) if new."""

    async def merged_version(self, session_id: UUID) -> int | None:
        """The version of the stored transcript.merged, if any."""

    async def save_result(self, session_id: UUID, **values: Any) -> None:
        """Create or update the session's stage results (session_results columns)."""

    async def save_status(self, view: SessionView, status: SessionStatus, now: datetime, traceparent: str | None) -> None:
        """Store the view with ``status.seq``, append ``status`` to the history and
        publish it after commit (outbox)."""

    async def stranded(self, stall_cutoff: datetime, deadline_cutoff: datetime, limit: int) -> list["Stranded"]:
        """Unfinished sessions with no progress since ``stall_cutoff`` and not re-driven
        since then either (or past ``deadline_cutoff``), locked, SKIP LOCKED."""

    async def latest_events(self, session_id: UUID, topics: list[str]) -> dict[str, int]:
        """topic -> id of the session's latest outbox row of that topic (sent or not)."""

    async def republish(self, outbox_ids: list[int]) -> int:
        """Copy these outbox rows (same payload, headers and ce_id) as unsent rows."""

    async def unseen_uploads(self, since: datetime, cutoff: datetime, limit: int) -> list[tuple[UUID, int]]:
        """(session id, outbox id) of audio.uploaded events sent between ``since`` and
        ``cutoff`` that never reached this read model (no row, no tombstone): lost on the way."""

    async def mark_redriven(self, session_id: UUID, redrives: dict[str, int], now: datetime) -> None:
        """Store the re-drive counts and time; ``updated_at`` (last progress) stays."""


class ProgressStore(Protocol):
    def transaction(self) -> Any:
        """``async with store.transaction() as tx``: one unit of work; commits on exit."""

    async def forget(self, session_id: UUID) -> None:
        """session.deleted: drop the session's rows and leave a tombstone."""


@dataclass
class Stranded:
    view: SessionView
    seq: int
    updated_at: datetime  # the last visible progress
    redrives: dict[str, int] = field(default_factory=dict)


def _view(row) -> SessionView:
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


class _PgProgressTransaction(PgTransaction):
    async def lock_view(self, session_id: UUID, now: datetime) -> tuple[SessionView, int]:
        await self.db.execute(insert(session_status).values(
            session_id=session_id, status="uploading", updated_at=now).on_conflict_do_nothing())
        row = (await self.db.execute(
            select(session_status).where(session_status.c.session_id == session_id).with_for_update())).one()
        return _view(row), row.seq

    async def merged_version(self, session_id: UUID) -> int | None:
        return (await self.db.execute(
            select(session_results.c.merged_version).where(session_results.c.session_id == session_id))).scalar()

    async def save_result(self, session_id: UUID, **values: Any) -> None:
        await self.db.execute(
            insert(session_results).values(session_id=session_id, **values)
            .on_conflict_do_update(index_elements=[session_results.c.session_id], set_=values))

    async def save_status(self, view: SessionView, status: SessionStatus, now: datetime, traceparent: str | None) -> None:
        await self.db.execute(session_status.update().where(session_status.c.session_id == status.session_id).values(
            owner_id=view.owner_id, status=view.status, percent=view.percent, seq=status.seq, message=view.message,
            eta_s=view.eta_s, error=view.error, stages={k: v.model_dump(mode="json") for k, v in view.stages.items()},
            warnings=view.warnings, audio_s=view.audio_s, updated_at=now,
            finished_at=now if view.status in TERMINAL else None,
        ))
        await self.db.execute(status_history.insert().values(
            session_id=status.session_id, seq=status.seq, payload=status.model_dump(mode="json")))
        await self.publish(status, traceparent)

    async def stranded(self, stall_cutoff: datetime, deadline_cutoff: datetime, limit: int) -> list[Stranded]:
        c = session_status.c
        rows = (await self.db.execute(
            select(session_status).where(
                c.status.not_in(TERMINAL), c.updated_at < stall_cutoff,
                or_(c.redriven_at.is_(None), c.redriven_at < stall_cutoff, c.updated_at < deadline_cutoff),
            ).order_by(c.updated_at).with_for_update(skip_locked=True).limit(limit))).all()
        return [Stranded(_view(r), r.seq, r.updated_at, dict(r.redrives or {})) for r in rows]

    async def latest_events(self, session_id: UUID, topics: list[str]) -> dict[str, int]:
        return await latest_ids(self.db, session_id, topics)

    async def republish(self, ids: list[int]) -> int:
        copied = await republish_rows(self.db, ids)
        self.published += copied  # wakes the relay after commit
        return copied

    async def unseen_uploads(self, since: datetime, cutoff: datetime, limit: int) -> list[tuple[UUID, int]]:
        key = cast(outbox.c.key, PgUUID(as_uuid=True))
        seen = select(session_status.c.session_id).where(session_status.c.session_id == key)
        buried = select(tombstones.c.session_id).where(tombstones.c.session_id == key,
                                                       tombstones.c.consumer == self.consumer)
        rows = (await self.db.execute(
            select(key, func.max(outbox.c.id)).where(
                outbox.c.topic == Topic.AUDIO_UPLOADED.value, outbox.c.created_at < cutoff,
                outbox.c.created_at > since,
                ~seen.exists(), ~buried.exists(),
            ).group_by(outbox.c.key).limit(limit))).all()
        return [(sid, last_id) for sid, last_id in rows]

    async def mark_redriven(self, session_id: UUID, redrives: dict[str, int], now: datetime) -> None:
        await self.db.execute(session_status.update().where(session_status.c.session_id == session_id).values(
            redrives=redrives, redriven_at=now))


class PgProgressStore(PgStore):
    """The read model in PostgreSQL."""

    transaction_class = _PgProgressTransaction
    owned_tables = (status_history, session_results, session_status)
