"""In-process fan-out of session wake-ups to SSE and WebSocket clients, and the count
of open streams.

The bus is the doorbell, the database is the letter: every replica consumes every
session.status and session.deleted (its own consumer, no shared group) and wakes the
streams of that session, which then read status_history from PostgreSQL. A missed or
duplicated wake-up therefore never loses or repeats an update. A stream holds no
database connection while it waits here.

Streams are capped per therapist and in total (per replica): each one is a task, a
socket and a database read on every wake-up, so one client must not be able to open
them without bound.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from uuid import UUID


class StreamLimitReached(Exception):
    """No stream slot: the therapist's or the replica's cap is reached."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StreamSlot:
    """One open stream of one therapist; release() is idempotent, so the stream's own
    cleanup and the response's background task may both call it."""

    def __init__(self, hub: "StatusHub", therapist_id: UUID) -> None:
        self._hub, self.therapist_id, self._released = hub, therapist_id, False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._hub._release(self.therapist_id)


class StatusHub:
    def __init__(self, max_per_therapist: int = 10, max_total: int = 500) -> None:
        self._waiters: dict[UUID, set[asyncio.Event]] = defaultdict(set)
        self._streams: dict[UUID, int] = defaultdict(int)
        self.max_per_therapist, self.max_total = max_per_therapist, max_total

    # --- wake-ups ------------------------------------------------------------------------------
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

    # --- stream slots --------------------------------------------------------------------------
    def open_stream(self, therapist_id: UUID) -> StreamSlot:
        if self.open_streams >= self.max_total:
            raise StreamLimitReached(f"the server has reached its limit of {self.max_total} open progress streams")
        if self._streams[therapist_id] >= self.max_per_therapist:
            raise StreamLimitReached(
                f"too many open progress streams for this account (limit {self.max_per_therapist}); "
                "close one (e.g. another browser tab) and retry")
        self._streams[therapist_id] += 1
        return StreamSlot(self, therapist_id)

    def _release(self, therapist_id: UUID) -> None:
        self._streams[therapist_id] -= 1
        if self._streams[therapist_id] <= 0:
            self._streams.pop(therapist_id, None)

    def streams_of(self, therapist_id: UUID) -> int:
        return self._streams.get(therapist_id, 0)

    @property
    def open_streams(self) -> int:
        return sum(self._streams.values())
