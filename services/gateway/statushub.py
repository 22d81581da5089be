"""In-process fan-out of session.status wake-ups to SSE and WebSocket clients.

The bus is the doorbell, the database is the letter: every replica consumes every
session.status (its own consumer, no shared group) and wakes the streams of that
session, which then read status_history from PostgreSQL. A missed or duplicated
wake-up therefore never loses or repeats an update.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from uuid import UUID


class StatusHub:
    def __init__(self) -> None:
        self._waiters: dict[UUID, set[asyncio.Event]] = defaultdict(set)

    def subscribe(self, session_id: UUID) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters[session_id].add(event)
        return event

    def unsubscribe(self, session_id: UUID, event: asyncio.Event) -> None:
        waiters = self._waiters.get(session_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                self._waiters.pop(session_id, None)

    def notify(self, session_id: UUID) -> None:
        for event in list(self._waiters.get(session_id, ())):
            event.set()

    @property
    def listeners(self) -> int:
        return sum(len(v) for v in self._waiters.values())
