"""Transactional outbox on the real broker and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from shared.broker import create_broker
from shared.contracts.events import SessionDeleted
from shared.db.engine import create_engine, create_session_factory
from shared.db.tables import inbox, outbox, sessions
from shared.envelope import normalise_headers
from shared.inbox import claim
from shared.outbox import OutboxRelay, broker_publisher, enqueue
from tests.helpers import read_topic


@pytest.fixture
async def db_factory(settings):
    engine = create_engine(settings)
    yield create_session_factory(engine)
    await engine.dispose()


@pytest.fixture
async def broker(settings):
    broker = create_broker(settings, "outbox-test")
    await broker.connect()
    yield broker
    await broker.stop()


async def test_rolled_back_transaction_leaves_no_event(db_factory):
    sid = uuid.uuid4()
    with pytest.raises(RuntimeError):
        async with db_factory() as db, db.begin():
            await enqueue(db, SessionDeleted(session_id=sid), "tests")
            raise RuntimeError("state change failed")
    async with db_factory() as db:
        count = (await db.execute(select(func.count()).select_from(outbox).where(outbox.c.key == str(sid)))).scalar()
    assert count == 0


async def test_relay_killed_before_publishing_then_exactly_once(settings, db_factory, broker):
    sid = uuid.uuid4()
    # The state change and its event commit together...
    async with db_factory() as db, db.begin():
        await db.execute(sessions.delete().where(sessions.c.id == sid))  # a state change (no-op row)
        event_id = await enqueue(db, SessionDeleted(session_id=sid), "tests")

    # ...a relay that dies after publishing but before marking the row sent...
    class Crash(Exception):
        pass

    real_publish = broker_publisher(broker)

    async def publish_then_die(topic, value, key, headers):
        await real_publish(topic, value, key, headers)
        if key in (str(sid), str(sid).encode()):  # other tests' unsent rows may share the batch
            raise Crash()

    with pytest.raises(Crash):
        for _ in range(100):  # until the batch that holds this row (others' rows may come first)
            await OutboxRelay(db_factory, publish_then_die).relay_once()
    async with db_factory() as db:
        unsent = (await db.execute(select(outbox.c.published_at).where(outbox.c.key == str(sid)))).scalar_one()
    assert unsent is None, "the row must stay unsent when the relay dies mid-batch"

    # ...and after a restart the event is published again and marked.
    relay = OutboxRelay(db_factory, broker_publisher(broker))
    assert await relay.relay_once() >= 1
    for _ in range(100):  # drained (rows of services still running elsewhere may keep coming)
        if await relay.relay_once() == 0:
            break
    async with db_factory() as db:
        sent = (await db.execute(select(outbox.c.published_at).where(outbox.c.key == str(sid)))).scalar_one()
    assert sent is not None

    records = await read_topic(settings.kafka_bootstrap_servers, "session.deleted", key=str(sid))
    assert len(records) == 2  # at least once on the wire: one duplicate from the crash
    ids = {normalise_headers(r.headers)["ce_id"] for r in records}
    assert ids == {event_id}  # the duplicate carries the same CloudEvents id

    # An idempotent consumer sees it exactly once.
    handled = 0
    for record in records:
        async with db_factory() as db, db.begin():
            if await claim(db, "outbox-test-consumer", normalise_headers(record.headers)["ce_id"], sid):
                handled += 1
    assert handled == 1
    async with db_factory() as db:
        rows = (await db.execute(select(func.count()).select_from(inbox).where(inbox.c.session_id == sid))).scalar()
    assert rows == 1


async def test_cloudevents_headers_on_the_wire(settings, db_factory, broker):
    sid = uuid.uuid4()
    async with db_factory() as db, db.begin():
        await enqueue(db, SessionDeleted(session_id=sid), "tests", traceparent="00-" + "c" * 32 + "-" + "d" * 16 + "-01")
    await OutboxRelay(db_factory, broker_publisher(broker)).relay_once()
    (record,) = await read_topic(settings.kafka_bootstrap_servers, "session.deleted", key=str(sid))
    headers = normalise_headers(record.headers)
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_type"] == "org.therapybridge.session.deleted"
    assert headers["ce_source"] == "tests"
    assert headers["ce_subject"] == str(sid)
    assert headers["traceparent"].startswith("00-" + "c" * 32)
    assert headers["content-type"] == "application/json"
    assert record.key == str(sid).encode()


async def test_trace_continues_through_the_telemetry_middleware(settings, db_factory):
    """With a real tracer provider (as in the services), FastStream's telemetry middleware
    must continue the session's trace from the record's traceparent, not start a new one."""
    from shared.telemetry import configure_tracing

    configure_tracing(settings, "outbox-trace-test")
    traced = create_broker(settings, "outbox-trace-test")
    await traced.connect()
    try:
        sid = uuid.uuid4()
        parent = "00-" + "e" * 32 + "-" + "f" * 16 + "-01"
        async with db_factory() as db, db.begin():
            await enqueue(db, SessionDeleted(session_id=sid), "tests", traceparent=parent)
        await OutboxRelay(db_factory, broker_publisher(traced)).relay_once()
    finally:
        await traced.stop()
    (record,) = await read_topic(settings.kafka_bootstrap_servers, "session.deleted", key=str(sid))
    traceparent = normalise_headers(record.headers)["traceparent"]
    assert traceparent.split("-")[1] == "e" * 32  # same trace
    assert traceparent.split("-")[2] != "f" * 16  # a new span
