"""Helpers shared by integration and end-to-end tests: raw topic readers and a
service-process stack."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from devtools.stack import Stack
from shared.envelope import build_headers, encode

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


async def read_topic(bootstrap: str, topic: str, timeout_s: float = 3.0, key: str | None = None) -> list:
    """Every record currently on a topic (all partitions, from the beginning)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records = []
        deadline = time.monotonic() + timeout_s
        idle_since = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            got = [r for recs in batch.values() for r in recs]
            if got:
                records.extend(got)
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > 1.0:
                break
        if key is not None:
            records = [r for r in records if r.key == key.encode()]
        return records
    finally:
        await consumer.stop()


async def wait_for_records(bootstrap: str, topic: str, key: str, count: int = 1, timeout_s: float = 60.0) -> list:
    deadline = time.monotonic() + timeout_s
    while True:
        records = await read_topic(bootstrap, topic, key=key)
        if len(records) >= count or time.monotonic() > deadline:
            return records
        await asyncio.sleep(0.5)


async def publish(bootstrap: str, event, source: str = "tests", event_id: str | None = None,
                  database_url: str | None = None) -> str:
    ce_id, _, _ = await publish_record(bootstrap, event, source, event_id, database_url)
    return ce_id


async def give_session_a_key(database_url: str, session_id) -> bytes:
    """What the gateway does at upload: a data key for the session (kept if it has one), so
    the services seal its events; a session without a key counts as deleted."""
    from sqlalchemy.dialects.postgresql import insert
    from sqlalchemy.ext.asyncio import create_async_engine

    from shared.db.tables import session_keys
    from shared.shredding import new_data_key, session_key

    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(session_keys).values(session_id=session_id, data_key=new_data_key())
                               .on_conflict_do_nothing())
        async with engine.connect() as conn:
            return await session_key(conn, session_id)
    finally:
        await engine.dispose()


async def publish_record(bootstrap: str, event, source: str = "tests", event_id: str | None = None,
                         database_url: str | None = None) -> tuple[str, TopicPartition, int]:
    """Publish one event; returns its ce_id and where it landed (partition, offset). With
    ``database_url`` the session gets a data key there (as an upload would) and an event
    carrying patient data is sealed with it, as the outbox seals it."""
    from shared.contracts.events import topic_of
    from shared.shredding import is_sealed_topic, seal_payload

    topic, value = topic_of(event).value, encode(event)
    if database_url is not None:
        key = await give_session_a_key(database_url, event.session_id)
        value = seal_payload(key, topic, value) if is_sealed_topic(topic) else value
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        headers = build_headers(event, source, event_id=event_id or str(uuid.uuid4()))
        sent = await producer.send_and_wait(
            topic, value, key=str(event.session_id).encode(),
            headers=[(k, v.encode()) for k, v in headers.items()],
        )
        return headers["ce_id"], TopicPartition(sent.topic, sent.partition), sent.offset
    finally:
        await producer.stop()


async def wait_until_consumed(bootstrap: str, group: str, where: TopicPartition, offset: int,
                              timeout_s: float = 60.0) -> None:
    """The sentinel of a negative check: returns once consumer group ``group`` has committed
    past ``offset`` on ``where``, i.e. its handler has finished with that record (services
    commit after the handler). "Nothing happened" is then asserted after the record was
    handled, not after a guessed sleep."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            committed = (await admin.list_consumer_group_offsets(group, partitions=[where])).get(where)
            if committed is not None and committed.offset > offset:
                return
            assert time.monotonic() < deadline, f"group {group} did not consume {where.topic}[{where.partition}]@{offset}"
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


def start_stack(service_env: dict[str, str], services: list[str], name: str) -> Stack:
    log_dir = ARTIFACTS / name
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(env=service_env, log_dir=log_dir, echo=False)
    for svc in services:
        stack.start_service(svc)
    return stack


async def opened(database_url: str, record) -> dict:
    """A record's payload as JSON, opened with its session's data key when it is sealed."""
    import json

    from shared.shredding import open_payload, sealed_session

    session_id = sealed_session(record.value)
    if session_id is None:
        return json.loads(record.value)
    key = await give_session_a_key(database_url, uuid.UUID(session_id))
    return json.loads(open_payload(key, record.topic, record.value))
