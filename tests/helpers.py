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


async def publish(bootstrap: str, event, source: str = "tests", event_id: str | None = None) -> str:
    ce_id, _, _ = await publish_record(bootstrap, event, source, event_id)
    return ce_id


async def publish_record(bootstrap: str, event, source: str = "tests",
                         event_id: str | None = None) -> tuple[str, TopicPartition, int]:
    """Publish one event; returns its ce_id and where it landed (partition, offset)."""
    from shared.contracts.events import topic_of

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        headers = build_headers(event, source, event_id=event_id or str(uuid.uuid4()))
        sent = await producer.send_and_wait(
            topic_of(event).value, encode(event), key=str(event.session_id).encode(),
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
