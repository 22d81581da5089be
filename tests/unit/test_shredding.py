"""Crypto-shredding without a database: a sealed event or blob opens with its session's
key only; once the key is destroyed nothing (not another key, not the runtime) reads it,
and the runtime drops a sealed event whose session has no key."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace

import pytest

from shared.broker import publish_event
from shared.contracts.events import SessionDeleted, TranscriptReady
from shared.envelope import build_headers, encode
from shared.runtime import ServiceRuntime
from shared.settings import Settings
from shared.shredding import (
    BLOB_CHUNK,
    KeyShredded,
    chunk_span,
    new_data_key,
    open_blob,
    open_frames,
    open_payload,
    plaintext_size,
    seal_blob,
    seal_payload,
    sealed_session,
    total_chunks,
)
from shared.telemetry import ServiceMetrics
from tests.unit.fakes import FakeBroker, FakeTombstones

WORDS = "the patient described insomnia and ruminating about the divorce"


def transcript(session_id: uuid.UUID) -> TranscriptReady:
    return TranscriptReady.model_validate({
        "session_id": str(session_id), "language": "en", "duration_s": 3.0,
        "segments": [{"start": 0.0, "end": 3.0, "text": WORDS}],
        "engine": {"backend": "test"},
        "timing": {"started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:01Z",
                   "processing_s": 1.0, "audio_s": 3.0, "rtf": 0.3},
    })


def test_a_sealed_event_keeps_only_routing_fields_in_clear_and_opens_with_its_key():
    sid, key = uuid.uuid4(), new_data_key()
    sealed = seal_payload(key, "transcript.ready", encode(transcript(sid)))
    assert b"insomnia" not in sealed and b"divorce" not in sealed
    assert set(json.loads(sealed)) == {"session_id", "schema_version", "sealed"}
    assert sealed_session(sealed) == str(sid)
    assert b"insomnia" in open_payload(key, "transcript.ready", sealed)


def test_a_payload_sealed_with_a_destroyed_key_cannot_be_read():
    sid, key = uuid.uuid4(), new_data_key()
    sealed = seal_payload(key, "transcript.ready", encode(transcript(sid)))
    del key  # destroyed: all that is left is a new key
    with pytest.raises(KeyShredded):
        open_payload(new_data_key(), "transcript.ready", sealed)


def test_a_sealed_payload_cannot_be_moved_to_another_topic_or_session():
    sid, key = uuid.uuid4(), new_data_key()
    sealed = seal_payload(key, "transcript.ready", encode(transcript(sid)))
    with pytest.raises(KeyShredded):
        open_payload(key, "transcript.merged", sealed)
    moved = json.dumps({**json.loads(sealed), "session_id": str(uuid.uuid4())}).encode()
    with pytest.raises(KeyShredded):
        open_payload(key, "transcript.ready", moved)


@pytest.mark.parametrize("size", [0, 1, BLOB_CHUNK - 1, BLOB_CHUNK, BLOB_CHUNK + 1, 3 * BLOB_CHUNK + 17])
def test_a_sealed_blob_round_trips_and_knows_its_plaintext_size(size):
    key, data = new_data_key(), bytes(range(256)) * (size // 256) + bytes(size % 256)
    sealed = seal_blob(key, "sessions/x/audio.wav", data)
    assert plaintext_size(len(sealed)) == size
    assert open_blob(key, "sessions/x/audio.wav", sealed) == data
    with pytest.raises(KeyShredded):
        open_blob(new_data_key(), "sessions/x/audio.wav", sealed)


def test_a_byte_range_decrypts_only_the_chunks_it_needs():
    key, data = new_data_key(), b"".join(i.to_bytes(4, "big") for i in range(100_000))  # 400 KB
    sealed = seal_blob(key, "k", data)
    first, last = BLOB_CHUNK + 10, 3 * BLOB_CHUNK + 5
    start, end = chunk_span(first, last, len(sealed))
    pieces = [sealed[start:end + 1][i:i + 1000] for i in range(0, end + 1 - start, 1000)]  # any slicing
    plain = b"".join(open_frames(key, "k", iter(pieces), first // BLOB_CHUNK, total_chunks(len(sealed))))
    offset = first - (first // BLOB_CHUNK) * BLOB_CHUNK
    assert plain[offset:offset + last - first + 1] == data[first:last + 1]


def test_a_truncated_blob_does_not_open():
    key = new_data_key()
    sealed = seal_blob(key, "k", b"x" * (2 * BLOB_CHUNK + 5))
    with pytest.raises(KeyShredded):
        open_blob(key, "k", sealed[:-(BLOB_CHUNK // 2)])


def test_patient_data_cannot_be_published_around_the_outbox():
    with pytest.raises(ValueError, match="outbox"):
        import asyncio

        asyncio.run(publish_event(FakeBroker(), transcript(uuid.uuid4()), "transcriber"))


class FakeKeys:
    def __init__(self, keys: dict) -> None:
        self.keys, self.forgotten = keys, []

    async def get(self, session_id):
        return self.keys.get(str(session_id))

    def forget(self, session_id):
        self.forgotten.append(str(session_id))


def kafka_message(topic: str, event, value: bytes):
    headers = build_headers(event, "tests")
    raw = SimpleNamespace(topic=topic, partition=0, offset=7, key=b"k", headers=[(k, v.encode()) for k, v in headers.items()])
    return SimpleNamespace(raw_message=raw, body=value)


def runtime(keys: FakeKeys) -> ServiceRuntime:
    return ServiceRuntime(name="joiner", settings=Settings(dlq_max_attempts=1), broker=FakeBroker(),
                          metrics=ServiceMetrics("joiner"), blobs=None, executor=None,
                          tombstones=FakeTombstones(set()), keys=keys, retry_base_delay_s=0.0)


async def test_the_runtime_hands_handlers_the_opened_event_and_drops_a_shredded_one():
    alive, shredded, key = uuid.uuid4(), uuid.uuid4(), new_data_key()
    rt, seen = runtime(FakeKeys({str(alive): key})), []

    async def handler(envelope):
        seen.append(envelope)

    for sid in (alive, shredded):
        event = transcript(sid)
        await rt.dispatch(kafka_message("transcript.ready", event, seal_payload(key, "transcript.ready", encode(event))),
                          handler)
    assert [e.event.session_id for e in seen] == [alive]
    assert seen[0].event.segments[0].text == WORDS
    assert b"insomnia" not in seen[0].record.value  # a DLQ copy would stay sealed
    assert rt.broker.sent == []  # dropped, not dead-lettered


async def test_session_deleted_evicts_the_cached_key():
    sid = uuid.uuid4()
    keys = FakeKeys({})
    rt = runtime(keys)

    async def handler(envelope):
        pass

    event = SessionDeleted(session_id=sid)
    await rt.dispatch(kafka_message("session.deleted", event, encode(event)), handler)
    assert keys.forgotten == [str(sid)]


class FlakyKeys(FakeKeys):
    def __init__(self, keys: dict, failures: int) -> None:
        super().__init__(keys)
        self.failures = failures

    async def get(self, session_id):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database restarting")
        return await super().get(session_id)


async def test_a_failed_key_lookup_is_retried_not_dead_lettered():
    sid, key = uuid.uuid4(), new_data_key()
    rt, seen = runtime(FlakyKeys({str(sid): key}, failures=1)), []
    rt.settings = Settings(dlq_max_attempts=2)

    async def handler(envelope):
        seen.append(envelope)

    event = transcript(sid)
    await rt.dispatch(kafka_message("transcript.ready", event, seal_payload(key, "transcript.ready", encode(event))), handler)
    assert [e.event.session_id for e in seen] == [sid] and rt.broker.sent == []
