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
    from shared.contracts.events import topic_of

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        headers = build_headers(event, source, event_id=event_id or str(uuid.uuid4()))
        await producer.send_and_wait(
            topic_of(event).value, encode(event), key=str(event.session_id).encode(),
            headers=[(k, v.encode()) for k, v in headers.items()],
        )
        return headers["ce_id"]
    finally:
        await producer.stop()


def start_stack(service_env: dict[str, str], services: list[str], name: str) -> Stack:
    log_dir = ARTIFACTS / name
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(env=service_env, log_dir=log_dir, echo=False)
    for svc in services:
        stack.start_service(svc)
    return stack
