"""The joiner and progress stores' contract, run against PostgreSQL and against the
in-memory fakes the handler unit tests use: the fakes are only worth trusting while they
behave like the real thing (commit/rollback, inbox claims, locking queries, forgetting)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from shared.contracts.events import SessionStatus, TranscriptRemerge
from shared.db.engine import create_engine, create_session_factory
from shared.db.tables import outbox, tombstones
from services.joiner.store import PgJoinStore
from services.progress.state import SessionView
from services.progress.store import PgProgressStore
from tests.unit.fakes import FakeJoinStore, FakeProgressStore

LONG_AGO = datetime(2001, 1, 1, tzinfo=timezone.utc)


class PgHarness:
    def __init__(self, factory, store) -> None:
        self.factory, self.store = factory, store

    async def published(self, sid) -> list[str]:
        async with self.factory() as db:
            rows = (await db.execute(select(outbox.c.topic).where(outbox.c.key == str(sid)).order_by(outbox.c.id))).all()
        return [r.topic for r in rows]

    async def buried(self, sid) -> bool:
        async with self.factory() as db:
            return (await db.execute(select(tombstones).where(tombstones.c.session_id == sid))).first() is not None


class FakeHarness:
    def __init__(self, store) -> None:
        self.store = store

    async def published(self, sid) -> list[str]:
        from shared.contracts.events import topic_of

        return [topic_of(e).value for e, _ in self.store.published if e.session_id == sid]

    async def buried(self, sid) -> bool:
        return sid in self.store.buried


@pytest.fixture
async def session_factory(settings):
    engine = create_engine(settings)
    yield create_session_factory(engine)
    await engine.dispose()


@pytest.fixture(params=["postgresql", "fake"])
def joins(request, session_factory):
    if request.param == "fake":
        return FakeHarness(FakeJoinStore())
    return PgHarness(session_factory, PgJoinStore(session_factory, f"join-test-{uuid.uuid4().hex[:6]}"))


@pytest.fixture(params=["postgresql", "fake"])
def views(request, session_factory):
    if request.param == "fake":
        return FakeHarness(FakeProgressStore())
    return PgHarness(session_factory, PgProgressStore(session_factory, f"progress-test-{uuid.uuid4().hex[:6]}"))


# --- joiner ----------------------------------------------------------------------------------
async def test_join_row_round_trip_and_claims(joins):
    sid, store = uuid.uuid4(), joins.store
    async with store.transaction() as tx:
        assert await tx.lock(sid) is None
        assert await tx.claim("e-1", sid) is True
        await tx.save(sid, transcript={"a": 1}, traceparent="tp")
        await tx.save(sid, diarization_error={"message": "x"})
    async with store.transaction() as tx:
        assert await tx.claim("e-1", sid) is False
        row = await tx.lock(sid)
    assert (row.transcript, row.diarization_error, row.traceparent) == ({"a": 1}, {"message": "x"}, "tp")
    assert (row.merged_version, row.merged_at, row.degraded, row.late_diarization) == (0, None, False, False)


async def test_join_rollback_keeps_nothing(joins):
    sid, store = uuid.uuid4(), joins.store
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.claim("e-2", sid)
            await tx.save(sid, transcript={"a": 1})
            await tx.publish(TranscriptRemerge(session_id=sid), None)
            raise RuntimeError("merge failed")
    async with store.transaction() as tx:
        assert await tx.lock(sid) is None
        assert await tx.claim("e-2", sid) is True
    assert await joins.published(sid) == []


async def test_join_due_rows_and_publish_after_commit(joins):
    due, waiting, merged, untranscribed = (uuid.uuid4() for _ in range(4))
    store = joins.store
    async with store.transaction() as tx:
        await tx.save(due, transcript={}, deadline_at=LONG_AGO)
        await tx.save(waiting, transcript={}, deadline_at=LONG_AGO + timedelta(days=3))
        await tx.save(merged, transcript={}, deadline_at=LONG_AGO, merged_at=LONG_AGO, merged_version=1)
        await tx.save(untranscribed, diarization={}, deadline_at=LONG_AGO)
    async with store.transaction() as tx:
        found = {r.session_id for r in await tx.due(LONG_AGO + timedelta(days=1), 1000)}
        assert due in found and not found & {waiting, merged, untranscribed}
        await tx.publish(TranscriptRemerge(session_id=due), "00-" + "1" * 32 + "-" + "2" * 16 + "-01")
    assert await joins.published(due) == ["transcript.remerge"]


async def test_join_forget_drops_rows_and_claims_and_buries(joins):
    sid, store = uuid.uuid4(), joins.store
    async with store.transaction() as tx:
        await tx.claim("e-3", sid)
        await tx.save(sid, transcript={})
    await store.forget(sid)
    async with store.transaction() as tx:
        assert await tx.lock(sid) is None
        assert await tx.claim("e-3", sid) is True  # the inbox entry went with the session
    assert await joins.buried(sid)


# --- progress --------------------------------------------------------------------------------
def status(view: SessionView, seq: int) -> SessionStatus:
    return SessionStatus(session_id=view.session_id, seq=seq, status=view.status, percent=view.percent,
                         message=view.message, stages=view.stages, warnings=view.warnings)


async def test_view_is_created_then_saved_with_its_seq(views):
    sid, store = uuid.uuid4(), views.store
    async with store.transaction() as tx:
        view, seq = await tx.lock_view(sid, LONG_AGO)
        assert (view.status, view.percent, seq) == ("uploading", 0, 0)
        assert set(view.stages) == {"transcription", "diarization", "join", "notes"}
        view.status, view.percent, view.owner_id = "preprocessing", 5, str(uuid.uuid4())
        await tx.save_status(view, status(view, 1), LONG_AGO, None)
    async with store.transaction() as tx:
        again, seq = await tx.lock_view(sid, LONG_AGO)
    assert (again.status, again.percent, again.owner_id, seq) == ("preprocessing", 5, view.owner_id, 1)
    assert await views.published(sid) == ["session.status"]


async def test_results_and_merged_version(views):
    sid, store = uuid.uuid4(), views.store
    async with store.transaction() as tx:
        assert await tx.merged_version(sid) is None
        await tx.save_result(sid, merged={"v": 2}, merged_version=2)
        await tx.save_result(sid, notes={"n": 1})
    async with store.transaction() as tx:
        assert await tx.merged_version(sid) == 2


async def test_stalled_sessions_are_unfinished_and_older_than_the_cutoff(views):
    stale, fresh, finished = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    store = views.store
    async with store.transaction() as tx:
        await tx.lock_view(stale, LONG_AGO)
        await tx.lock_view(fresh, LONG_AGO + timedelta(days=3))
        view, _ = await tx.lock_view(finished, LONG_AGO)
        view.status = "processed"
        await tx.save_status(view, status(view, 1), LONG_AGO, None)
    async with store.transaction() as tx:
        cutoff = LONG_AGO + timedelta(days=1)
        found = {uuid.UUID(s.view.session_id): s.seq for s in await tx.stranded(cutoff, cutoff, 1000)}
    assert found.get(stale) == 0 and fresh not in found and finished not in found


async def test_progress_forget_drops_everything_and_buries(views):
    sid, store = uuid.uuid4(), views.store
    async with store.transaction() as tx:
        await tx.claim("e-4", sid)
        view, _ = await tx.lock_view(sid, LONG_AGO)
        view.status = "preprocessing"
        await tx.save_status(view, status(view, 1), LONG_AGO, None)
        await tx.save_result(sid, transcript={"t": 1})
    await store.forget(sid)
    async with store.transaction() as tx:
        assert await tx.claim("e-4", sid) is True
        assert await tx.merged_version(sid) is None
        view, seq = await tx.lock_view(sid, LONG_AGO)  # recreated from scratch
    assert (view.status, seq) == ("uploading", 0)
    assert await views.buried(sid)
