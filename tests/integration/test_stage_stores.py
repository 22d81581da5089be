"""The notes run store (services.notes.runs) and the audio-stage job store
(shared.jobs.StageJobStore) on a real PostgreSQL, and the same contract checked on the
in-memory fakes the unit tests use, so the fakes cannot drift from the real stores.
Needs PostgreSQL only (no broker): this module makes its own database."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from services.notes.runs import Finish, NotesRunStore
from shared.contracts.events import (
    ErrorInfo,
    NotesFailed,
    TOPIC_MODELS,
    Topic,
    TranscriptFailed,
    TranscriptMerged,
    TranscriptReady,
)
from shared.db.bootstrap import drop_database, prepare_database
from shared.db.engine import create_engine, create_session_factory
from shared.db.tables import inbox, notes_runs, outbox, stage_jobs
from shared.inbox import bury
from shared.jobs import StageJobStore
from shared.settings import Settings
from shared.shredding import create_session_key, open_payload, sealed_session, session_key
from shared.stage import pending_timing
from tests.conftest import _base_url
from tests.unit.fakes_stages import FakeNotesRuns, FakeStageJobs


@pytest.fixture(scope="module")
def store_db():
    url = f"{_base_url()}/tb_stores_{uuid.uuid4().hex[:8]}"
    asyncio.run(prepare_database(url))
    try:
        yield url
    finally:
        asyncio.run(drop_database(url))


@pytest.fixture
async def session_factory(store_db):
    engine = create_engine(Settings(database_url=store_db))
    yield create_session_factory(engine)
    await engine.dispose()


class Real:
    """Reads back what the real stores wrote (outbox, inbox, tombstones)."""

    def __init__(self, factory) -> None:
        self.factory = factory

    async def enqueued(self, sid: uuid.UUID) -> list:
        """The session's outbox events, sealed payloads opened with its data key."""
        async with self.factory() as db:
            rows = (await db.execute(select(outbox.c.topic, outbox.c.payload)
                                     .where(outbox.c.key == str(sid)).order_by(outbox.c.id))).all()
            key = await session_key(db, sid)
        return [TOPIC_MODELS[Topic(r.topic)].model_validate_json(
            open_payload(key, r.topic, r.payload.encode()) if sealed_session(r.payload.encode()) else r.payload)
            for r in rows]

    async def give_key(self, sid: uuid.UUID) -> None:
        """As an upload does: without a key the session counts as deleted and nothing is sealed for it."""
        async with self.factory() as db, db.begin():
            await create_session_key(db, sid)

    async def inbox_has(self, consumer: str, event_id: str) -> bool:
        async with self.factory() as db:
            return (await db.execute(select(inbox.c.event_id).where(
                inbox.c.consumer == consumer, inbox.c.event_id == event_id))).first() is not None

    async def bury(self, consumer: str, sid: uuid.UUID) -> None:
        async with self.factory() as db, db.begin():
            await bury(db, consumer, sid)


class Fake:
    def __init__(self, store) -> None:
        self.store = store

    async def enqueued(self, sid: uuid.UUID) -> list:
        return [e for e in self.store.enqueued if e.session_id == sid]

    async def give_key(self, sid: uuid.UUID) -> None:
        pass

    async def inbox_has(self, consumer: str, event_id: str) -> bool:
        return event_id in self.store.inbox

    async def bury(self, consumer: str, sid: uuid.UUID) -> None:
        self.store.buried.add(sid)


@pytest.fixture(params=["postgres", "fake"])
def notes_store(request, session_factory):
    if request.param == "postgres":
        return NotesRunStore(session_factory, "notes"), Real(session_factory)
    fake = FakeNotesRuns("notes")
    return fake, Fake(fake)


@pytest.fixture(params=["postgres", "fake"])
def job_store(request, session_factory):
    if request.param == "postgres":
        return StageJobStore(session_factory, "transcriber", "transcription"), Real(session_factory)
    fake = FakeStageJobs()
    return fake, Fake(fake)


def merged(sid: uuid.UUID, version: int) -> TranscriptMerged:
    return TranscriptMerged(session_id=sid, version=version, language="en", duration_s=1.0, segments=[],
                            diarized=False, full_text="", speakers=[])


def failed_finish(sid: uuid.UUID, version: int = 1) -> Finish:
    error = ErrorInfo(kind="permanent", code="llm_unauthorized", message="m")
    return Finish("failed", {"error": error.model_dump(mode="json")}, {"version": version, "code": error.code},
                  NotesFailed(session_id=sid, error=error, transcript_version=version))


# --- notes ------------------------------------------------------------------------------------
async def test_notes_input_keeps_the_newest_version(notes_store):
    store, _ = notes_store
    sid = uuid.uuid4()
    assert await store.latest_input(sid) is None
    assert await store.remember_input(merged(sid, 2), None) == 2
    assert await store.remember_input(merged(sid, 1), None) == 2
    assert (await store.latest_input(sid)).version == 2
    assert await store.remember_input(merged(sid, 3), None) == 3


async def test_notes_claim_hold_retake_and_fenced_finish(notes_store):
    store, view = notes_store
    sid = uuid.uuid4()
    first = await store.claim(sid, 1, "auto", "llm", "host-a:1", 60.0)
    assert first.outcome == "claimed" and first.run.attempt == 1
    assert (await store.claim(sid, 1, "auto", "llm", "host-b:2", 60.0)).outcome == "held"
    again = await store.claim(sid, 1, "auto", "offline", "host-a:1", 60.0)  # the same worker's earlier attempt
    assert again.outcome == "retaken" and again.run.attempt == 2 and again.run.backend == "offline"
    assert not await store.finish(first.run, "evt-1", failed_finish(sid), None)  # fenced: attempt 1 lost the run
    assert await view.enqueued(sid) == []
    assert await store.finish(again.run, "evt-2", failed_finish(sid), None)
    [event] = await view.enqueued(sid)
    assert isinstance(event, NotesFailed) and await view.inbox_has("notes", "evt-2")
    assert (await store.claim(sid, 1, "auto", "llm", "host-b:2", 60.0)).outcome == "finished"
    assert (await store.claim(sid, 1, "regen-1", "llm", "host-b:2", 60.0)).outcome == "claimed"  # its own run


async def test_notes_buried_session_stores_and_claims_nothing(notes_store):
    store, view = notes_store
    sid = uuid.uuid4()
    await view.bury("notes", sid)
    assert await store.remember_input(merged(sid, 1), None) is None
    assert await store.latest_input(sid) is None
    assert (await store.claim(sid, 1, "auto", "llm", "host-a:1", 60.0)).outcome == "buried"


async def test_notes_forget_drops_runs_and_input(notes_store):
    store, _ = notes_store
    sid = uuid.uuid4()
    await store.remember_input(merged(sid, 1), None)
    await store.claim(sid, 1, "auto", "llm", "host-a:1", 60.0)
    await store.claim(sid, 1, "regen-1", "llm", "host-a:1", 60.0)
    assert await store.forget(sid) == 2
    assert await store.latest_input(sid) is None
    assert (await store.claim(sid, 1, "auto", "llm", "host-a:1", 60.0)).outcome == "buried"


async def test_notes_stale_and_released_runs_are_retaken_by_another_worker(session_factory):
    """Real store only: staleness is the row's updated_at against the database clock."""
    store = NotesRunStore(session_factory, "notes")
    crashed, released = uuid.uuid4(), uuid.uuid4()
    await store.claim(crashed, 1, "auto", "llm", "host-a:1", 60.0)
    async with session_factory() as db, db.begin():
        await db.execute(update(notes_runs).where(notes_runs.c.session_id == crashed)
                         .values(updated_at=func.now() - timedelta(minutes=10)))
    assert (await store.claim(crashed, 1, "auto", "llm", "host-b:2", 60.0)).outcome == "retaken"

    run = (await store.claim(released, 1, "auto", "llm", "host-a:1", 60.0)).run
    await store.heartbeat(run)
    assert (await store.claim(released, 1, "auto", "llm", "host-b:2", 60.0)).outcome == "held"
    await store.release(run)
    taken = await store.claim(released, 1, "auto", "llm", "host-b:2", 60.0)
    assert taken.outcome == "retaken" and taken.run.attempt == 2
    async with session_factory() as db:
        job = (await db.execute(select(stage_jobs.c.status, stage_jobs.c.attempts).where(
            stage_jobs.c.stage == "notes", stage_jobs.c.session_id == released))).one()
    assert tuple(job) == ("running", 2)


# --- audio stages -------------------------------------------------------------------------------
def ready(sid: uuid.UUID) -> TranscriptReady:
    return TranscriptReady(session_id=sid, language="en", duration_s=1.0, segments=[],
                           engine={"backend": "fake"}, timing=pending_timing())


def failed(sid: uuid.UUID) -> TranscriptFailed:
    return TranscriptFailed(session_id=sid, error=ErrorInfo(kind="permanent", code="undecodable_audio", message="m"))


async def test_stage_job_done_once(job_store):
    store, view = job_store
    sid = uuid.uuid4()
    await view.give_key(sid)
    assert await store.begin(sid) == 1
    assert await store.begin(sid) == 2  # a redelivery after a crash mid-run
    assert await store.complete(sid, "evt-1", ready(sid), None, {"rtf": 0.1})
    assert not await store.complete(sid, "evt-2", ready(sid), None, {"rtf": 0.1})  # another delivery was first
    assert not await store.fail(sid, failed(sid), None, "undecodable_audio")
    assert await store.begin(sid) is None
    [event] = await view.enqueued(sid)
    assert isinstance(event, TranscriptReady) and await view.inbox_has("transcriber", "evt-1")


async def test_stage_job_failed_once(job_store):
    store, view = job_store
    sid = uuid.uuid4()
    await view.give_key(sid)
    assert await store.begin(sid) == 1
    assert await store.fail(sid, failed(sid), None, "undecodable_audio")
    assert not await store.fail(sid, failed(sid), None, "undecodable_audio")
    assert await store.begin(sid) is None
    [event] = await view.enqueued(sid)
    assert isinstance(event, TranscriptFailed)
