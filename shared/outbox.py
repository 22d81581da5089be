"""Transactional outbox: events are written to the ``outbox`` table in the same
transaction as the state change that caused them, and a relay publishes them and marks
them sent. The DB and the bus never disagree; a crash between publish and mark gives a
duplicate with the same ce_id, which idempotent consumers (shared.inbox) ignore.

faststream-outbox was considered (see docs/adr/0001-events-outbox-inbox.md); this small relay keeps
the CloudEvents headers and traceparent under our control and adds wake-on-commit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from uuid import UUID

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.contracts.events import Event, topic_of
from shared.db.tables import outbox
from shared.envelope import build_headers, encode
from shared.logging import get_logger
from shared.telemetry import current_traceparent
from shared.shredding import is_sealed_topic, seal_payload, session_key
from shared.topology import check_produces

log = get_logger(__name__)

PublishFn = Callable[[str, bytes, bytes, dict[str, str]], Awaitable[None]]


async def enqueue(
    db: AsyncSession, event: Event, source: str, traceparent: str | None = None, event_id: str | None = None,
    partition_key: str | None = None,
) -> str:
    """Add an event to the outbox inside the caller's transaction; returns its ce_id.
    A service (``source``) may only enqueue topics its declaration produces. A topic that
    carries patient data is sealed with the session's data key, read in the same
    transaction; a session without a key was deleted, so nothing is enqueued (fail closed).
    The record key is the session id (one session's events stay in order on one partition);
    ``partition_key`` replaces it for work items meant to spread (``<session>:<n>``)."""
    topic = topic_of(event).value
    check_produces(source, topic_of(event))
    # The enqueuing span (a request or consume span) is the relay's publish span's parent.
    headers = build_headers(event, source, traceparent=current_traceparent(traceparent), event_id=event_id)
    payload = encode(event)
    if is_sealed_topic(topic):
        key = await session_key(db, event.session_id)
        if key is None:
            log.info("event_for_shredded_session_not_enqueued", topic=topic, session_id=str(event.session_id))
            return headers["ce_id"]
        payload = seal_payload(key, topic, payload)
    record_key = partition_key or str(event.session_id)
    await db.execute(outbox.insert().values(topic=topic, key=record_key, payload=payload.decode(),
                                            headers=headers))
    return headers["ce_id"]


async def delete_unsent(db: AsyncSession, session_id: UUID) -> int:
    """A deleted session's events not yet relayed (inside the deletion's transaction): they
    would be unreadable anyway once its key is gone, and need not reach the broker."""
    keys = or_(outbox.c.key == str(session_id), outbox.c.key.startswith(f"{session_id}:"))  # + its work items
    result = await db.execute(delete(outbox).where(keys, outbox.c.published_at.is_(None)))
    return result.rowcount or 0


async def latest_ids(db: AsyncSession, session_id: UUID, topics: list[str]) -> dict[str, int]:
    """The session's newest outbox id per topic (what a re-drive sends again)."""
    rows = (await db.execute(
        select(outbox.c.topic, func.max(outbox.c.id)).where(
            outbox.c.key == str(session_id), outbox.c.topic.in_(topics)).group_by(outbox.c.topic))).all()
    return {topic: last_id for topic, last_id in rows}


async def republish(db: AsyncSession, outbox_ids: list[int]) -> int:
    """Copies of these outbox rows, as new rows the relay sends (the same events again)."""
    if not outbox_ids:
        return 0
    copies = select(outbox.c.topic, outbox.c.key, outbox.c.payload, outbox.c.headers).where(
        outbox.c.id.in_(outbox_ids)).order_by(outbox.c.id)
    result = await db.execute(outbox.insert().from_select(["topic", "key", "payload", "headers"], copies))
    return result.rowcount


async def prune_sent(db: AsyncSession, keep_s: float) -> int:
    """Relayed rows older than ``keep_s``: the broker holds them now; the table stays small."""
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=keep_s)
    result = await db.execute(delete(outbox).where(outbox.c.published_at < cutoff))
    return result.rowcount or 0


class OutboxRelay:
    """Publishes unsent outbox rows in id order. Several relays may run (one per
    process): FOR UPDATE SKIP LOCKED hands each row to one of them."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        publish: PublishFn,
        poll_interval_s: float = 0.2,
        batch_size: int = 100,
        keep_sent_s: float = 300.0,
    ) -> None:
        self._session_factory = session_factory
        self._publish = publish
        self._poll_interval_s = poll_interval_s
        self._batch_size = batch_size
        self._keep_sent_s = keep_sent_s
        self._next_prune = 0.0
        self._wake = asyncio.Event()
        self._stopping = False
        self.published = 0

    def wake(self) -> None:
        """Call after committing outbox rows to publish them now rather than at the next poll."""
        self._wake.set()

    async def relay_once(self) -> int:
        async with self._session_factory() as db, db.begin():
            rows = (
                await db.execute(
                    select(outbox.c.id, outbox.c.topic, outbox.c.key, outbox.c.payload, outbox.c.headers)
                    .where(outbox.c.published_at.is_(None))
                    .order_by(outbox.c.id)
                    .limit(self._batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for row in rows:
                headers = row.headers if isinstance(row.headers, dict) else json.loads(row.headers)
                await self._publish(row.topic, row.payload.encode(), row.key.encode(), headers)
            if rows:
                await db.execute(
                    update(outbox).where(outbox.c.id.in_([r.id for r in rows])).values(published_at=func.now())
                )
        self.published += len(rows)
        await self._prune_now_and_then()
        return len(rows)

    async def _prune_now_and_then(self) -> None:
        """Delete relayed rows past ``keep_sent_s``, at most every few seconds per relay."""
        now = asyncio.get_running_loop().time()
        if now < self._next_prune:
            return
        self._next_prune = now + max(1.0, min(self._keep_sent_s / 2, 30.0))
        async with self._session_factory() as db, db.begin():
            pruned = await prune_sent(db, self._keep_sent_s)
        if pruned:
            log.debug("outbox_pruned", rows=pruned)

    async def run(self) -> None:
        while not self._stopping:
            try:
                sent = await self.relay_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker or DB hiccup: keep the rows, retry later
                log.warning("outbox_relay_error", error=type(exc).__name__)
                sent = 0
                await asyncio.sleep(1.0)
            if sent:
                continue  # drain backlog without waiting
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_interval_s)
            except asyncio.TimeoutError:
                pass

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()


def broker_publisher(broker) -> PublishFn:
    from shared.broker import send

    async def publish(topic: str, value: bytes, key: bytes, headers: dict[str, str]) -> None:
        await send(broker, topic, value, key, headers)

    return publish
