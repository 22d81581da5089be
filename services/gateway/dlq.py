"""The operator's view of the dead-letter topics (``therapybridge dlq``): list and show
``<topic>.dlq`` records (headers and the error; the payload only on request, since it may
hold transcript text), and replay them to their original topic. Talks to the broker
directly (an operator tool, not a gateway route); blocking wrappers over aiokafka."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

DLQ_SUFFIX = ".dlq"
# Headers the DLQ writer (shared.broker.publish_dlq) adds; a replay removes them again.
DLQ_HEADERS = ("dlq_error_kind", "dlq_error_message", "dlq_service", "dlq_original_topic",
               "dlq_original_partition", "dlq_original_offset", "dlq_original_traceparent")


@dataclass(frozen=True)
class DlqRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    @property
    def ref(self) -> str:
        """How the commands name one record: topic:partition:offset."""
        return f"{self.topic}:{self.partition}:{self.offset}"

    def summary(self) -> dict:
        h = self.headers
        return {"ref": self.ref, "original_topic": h.get("dlq_original_topic"), "service": h.get("dlq_service"),
                "error_kind": h.get("dlq_error_kind"), "error": h.get("dlq_error_message"),
                "event_id": h.get("ce_id"), "type": h.get("ce_type"), "key": (self.key or b"").decode(errors="replace"),
                "bytes": len(self.value or b""), "at_ms": self.timestamp_ms}

    def replay_headers(self) -> dict[str, str]:
        """The original record's headers: the DLQ's own removed, its traceparent restored."""
        headers = {k: v for k, v in self.headers.items() if k not in DLQ_HEADERS}
        if "dlq_original_traceparent" in self.headers:
            headers["traceparent"] = self.headers["dlq_original_traceparent"]
        return headers


def parse_ref(ref: str) -> tuple[str, int, int]:
    topic, partition, offset = ref.rsplit(":", 2)
    if not topic.endswith(DLQ_SUFFIX):
        raise ValueError(f"{topic} is not a DLQ topic")
    return topic, int(partition), int(offset)


async def dlq_topics(bootstrap: str) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        return sorted(t for t in await admin.list_topics() if t.endswith(DLQ_SUFFIX))
    finally:
        await admin.close()


async def read_dlq(bootstrap: str, topics: list[str], idle_s: float = 1.0, timeout_s: float = 30.0) -> list[DlqRecord]:
    """Every record of these topics, from the beginning (no consumer group: nothing is committed)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[DlqRecord] = []
        deadline, idle_since = time.monotonic() + timeout_s, time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - idle_since < idle_s:
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                idle_since = time.monotonic()
                records += [DlqRecord(r.topic, r.partition, r.offset, r.timestamp, r.key, r.value,
                                      {k: v.decode(errors="replace") for k, v in r.headers}) for r in recs]
        return sorted(records, key=lambda r: (r.topic, r.partition, r.offset))
    finally:
        await consumer.stop()


async def replay(bootstrap: str, records: list[DlqRecord]) -> list[str]:
    """Publish each record, byte for byte, to its original topic; returns the refs replayed."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, max_request_size=64 * 2**20)
    await producer.start()
    try:
        done = []
        for record in records:
            original = record.headers.get("dlq_original_topic") or record.topic.removesuffix(DLQ_SUFFIX)
            await producer.send_and_wait(original, record.value, key=record.key,
                                         headers=[(k, v.encode()) for k, v in record.replay_headers().items()])
            done.append(record.ref)
        return done
    finally:
        await producer.stop()


def run(coro):
    return asyncio.run(coro)
