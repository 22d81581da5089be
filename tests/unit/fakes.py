"""In-memory stand-ins for the stores, the clock, blob storage and the broker, so the
handlers' decisions are tested with no database and no broker.

The fake transactions keep the real ones' contract: changes and published events become
visible only when the ``async with`` block exits normally; an exception rolls them back.
Inbox claims follow the same rule, so a handler that fails can be retried."""

from __future__ import annotations

import copy
import dataclasses
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from shared.contracts.events import Event, SessionStatus, topic_of
from shared.envelope import Envelope, RawRecord, build_headers, encode
from services.joiner.store import JoinRow
from services.progress.state import SessionView


class Clock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, 9, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def run_inline(fn, *args):
    """run_blocking without a thread pool."""
    return fn(*args)


class MemoryBlobs:
    def __init__(self) -> None:
        self.objects: dict[str, Any] = {}

    def put_json(self, key: str, obj: Any) -> str:
        uri = f"mem://{key}"
        self.objects[uri] = copy.deepcopy(obj)
        return uri

    def get_json(self, uri: str) -> Any:
        return copy.deepcopy(self.objects[uri])


def delivery(event: Event, event_id: str | None = None, traceparent: str | None = None) -> Envelope:
    """The envelope a consumer would get for ``event`` (with the record it came from)."""
    headers = build_headers(event, "tests", traceparent=traceparent, event_id=event_id)
    topic = topic_of(event).value
    record = RawRecord(topic=topic, partition=0, offset=0, key=str(event.session_id).encode(), value=encode(event),
                       headers=headers)
    return Envelope(topic=topic, event=event, event_id=headers["ce_id"], source="tests",
                    traceparent=headers["traceparent"], headers=headers, record=record)


class _MemoryStore:
    """What both fakes share: committed state, a working copy per transaction."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {"claims": {}}  # event id -> session id (the inbox)
        self.published: list[tuple[Event, str | None]] = []
        self.forgotten: list[UUID] = []
        self.buried: set[UUID] = set()
        self._pending: list[tuple[Event, str | None]] = []

    @asynccontextmanager
    async def transaction(self):
        working = copy.deepcopy(self.state)
        self._pending = []
        tx = self._transaction(working)
        yield tx
        self.state = working  # reached only without an exception: commit
        self.published.extend(self._pending)

    def _claim(self, working: dict, event_id: str, session_id: UUID) -> bool:
        if event_id in working["claims"]:
            return False
        working["claims"][event_id] = session_id
        return True

    def _forget_claims(self, session_id: UUID) -> None:
        self.state["claims"] = {e: s for e, s in self.state["claims"].items() if s != session_id}
        self.forgotten.append(session_id)
        self.buried.add(session_id)

    def _publish(self, event: Event, traceparent: str | None) -> None:
        self._pending.append((event, traceparent))

    def events(self, kind: type | None = None) -> list[Event]:
        return [e for e, _ in self.published if kind is None or isinstance(e, kind)]


class FakeJoinStore(_MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.state["rows"] = {}

    @property
    def rows(self) -> dict[UUID, JoinRow]:
        return self.state["rows"]

    def _transaction(self, working: dict) -> "_FakeJoinTx":
        return _FakeJoinTx(self, working)

    async def forget(self, session_id: UUID) -> None:
        self.rows.pop(session_id, None)
        self._forget_claims(session_id)


class _FakeJoinTx:
    def __init__(self, store: FakeJoinStore, working: dict) -> None:
        self._store, self._rows, self._working = store, working["rows"], working

    async def claim(self, event_id: str, session_id: UUID) -> bool:
        return self._store._claim(self._working, event_id, session_id)

    async def save(self, session_id: UUID, **fields: Any) -> None:
        row = self._rows.get(session_id) or JoinRow(session_id=session_id)
        self._rows[session_id] = dataclasses.replace(row, **fields)

    async def lock(self, session_id: UUID) -> JoinRow | None:
        return copy.deepcopy(self._rows.get(session_id))

    async def due(self, now: datetime, limit: int) -> list[JoinRow]:
        due = [r for r in self._rows.values()
               if r.merged_at is None and r.transcript is not None and r.deadline_at is not None and r.deadline_at <= now]
        return copy.deepcopy(due[:limit])

    async def publish(self, event: Event, traceparent: str | None) -> None:
        self._store._publish(event, traceparent)


class FakeProgressStore(_MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        # outbox: rows {"id", "topic", "key", "event", "at"} that any service sent (the reconciler's source)
        self.state.update(views={}, results={}, history=[], outbox=[], tombstones=set())

    def sent(self, event: Event, at: datetime) -> int:
        """Record ``event`` as sent through the outbox at ``at`` (by whichever service)."""
        from shared.contracts.events import topic_of

        rows = self.state["outbox"]
        rows.append({"id": len(rows) + 1, "topic": topic_of(event).value, "key": event.session_id, "event": event, "at": at})
        return len(rows)

    def resent(self, session_id: UUID | None = None) -> list[str]:
        """Topics of the rows the reconciler copied to be published again."""
        return [r["topic"] for r in self.state["outbox"] if r.get("copy_of") and session_id in (None, r["key"])]

    @property
    def views(self) -> dict[UUID, dict]:
        return self.state["views"]

    @property
    def results(self) -> dict[UUID, dict]:
        return self.state["results"]

    @property
    def history(self) -> list[SessionStatus]:
        return self.state["history"]

    def _transaction(self, working: dict) -> "_FakeProgressTx":
        return _FakeProgressTx(self, working)

    async def forget(self, session_id: UUID) -> None:
        for table in ("views", "results"):
            self.state[table].pop(session_id, None)
        self.state["tombstones"].add(session_id)
        self.state["history"] = [s for s in self.history if s.session_id != session_id]
        self._forget_claims(session_id)


class _FakeProgressTx:
    def __init__(self, store: FakeProgressStore, working: dict) -> None:
        self._store, self._working = store, working

    async def claim(self, event_id: str, session_id: UUID) -> bool:
        return self._store._claim(self._working, event_id, session_id)

    async def lock_view(self, session_id: UUID, now: datetime) -> tuple[SessionView, int]:
        entry = self._working["views"].setdefault(
            session_id, {"view": SessionView(str(session_id)), "seq": 0, "updated_at": now})
        return copy.deepcopy(entry["view"]), entry["seq"]

    async def merged_version(self, session_id: UUID) -> int | None:
        return self._working["results"].get(session_id, {}).get("merged_version")

    async def save_result(self, session_id: UUID, **values: Any) -> None:
        self._working["results"].setdefault(session_id, {}).update(copy.deepcopy(values))

    async def save_status(self, view: SessionView, status: SessionStatus, now: datetime, traceparent: str | None) -> None:
        entry = self._working["views"].setdefault(status.session_id, {})
        entry.update(view=copy.deepcopy(view), seq=status.seq, updated_at=now)  # re-drive counts stay
        self._working["history"].append(status)
        self._store._publish(status, traceparent)

    async def stranded(self, stall_cutoff: datetime, deadline_cutoff: datetime, limit: int) -> list:
        from services.progress.store import Stranded

        found = [Stranded(copy.deepcopy(e["view"]), e["seq"], e["updated_at"], dict(e.get("redrives", {})))
                 for e in self._working["views"].values()
                 if e["view"].status not in ("processed", "failed") and e["updated_at"] < stall_cutoff
                 and (e.get("redriven_at") is None or e["redriven_at"] < stall_cutoff or e["updated_at"] < deadline_cutoff)]
        return sorted(found, key=lambda s: s.updated_at)[:limit]

    async def latest_events(self, session_id: UUID, topics: list[str]) -> dict[str, int]:
        latest: dict[str, int] = {}
        for row in self._working["outbox"]:
            if row["key"] == UUID(str(session_id)) and row["topic"] in topics:
                latest[row["topic"]] = max(latest.get(row["topic"], 0), row["id"])
        return latest

    async def republish(self, outbox_ids: list[int]) -> int:
        rows = self._working["outbox"]
        for original in [r for r in rows if r["id"] in outbox_ids]:
            rows.append({**original, "id": len(rows) + 1, "copy_of": original["id"]})
        return len(outbox_ids)

    async def unseen_uploads(self, since: datetime, cutoff: datetime, limit: int) -> list[tuple[UUID, int]]:
        latest: dict[UUID, int] = {}
        for row in self._working["outbox"]:
            if (row["topic"] == "audio.uploaded" and since < row["at"] < cutoff and row["key"] not in self._working["views"]
                    and row["key"] not in self._working["tombstones"]):
                latest[row["key"]] = max(latest.get(row["key"], 0), row["id"])
        return list(latest.items())[:limit]

    async def mark_redriven(self, session_id: UUID, redrives: dict[str, int], now: datetime) -> None:
        entry = self._working["views"][UUID(str(session_id))]
        entry.update(redrives=dict(redrives), redriven_at=now)


class FakeTombstones:
    def __init__(self, buried: set[UUID] | None = None) -> None:
        self.buried = buried if buried is not None else set()

    async def is_buried(self, session_id: UUID) -> bool:
        return session_id in self.buried


class FakeBroker:
    """Records what would have been published (the runtime's DLQ writes)."""

    def __init__(self) -> None:
        self.sent: list[dict] = []

    async def publish(self, message, topic, key=None, headers=None, **_):
        self.sent.append({"value": message, "topic": topic, "key": key, "headers": dict(headers or {})})
