"""One long session fanned out over two transcriber replicas (separate processes, one
thread each, one consumer group) on the real broker and PostgreSQL: both replicas
transcribe chunks of the same session, transcript.ready is emitted once with ordered
timestamps; a re-driven upload re-sends only the chunk not done; a chunk that keeps
failing goes to the DLQ with its cause and the session fails with a message."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from shared.audio import energy_profile, read_spans
from shared.blobstore import LocalBlobStore
from shared.contracts.events import AudioRef, AudioUploaded
from shared.db.engine import create_engine, create_session_factory
from shared.db.tables import stage_jobs, transcript_chunks, transcript_fanouts
from shared.envelope import normalise_headers
from services.transcriber.chunking import ChunkPolicy
from services.transcriber.fanout_store import _plan_json
from tests.helpers import (give_session_a_key, opened, publish, publish_record, read_topic, wait_for_records,
                           wait_until_consumed)

CHUNK_ENV = {"TB_WHISPER_THREADS": "1", "TB_TRANSCRIBE_ONE_PIECE_MAX_S": "60",
             "TB_TRANSCRIBE_CHUNK_MIN_S": "10", "TB_TRANSCRIBE_CHUNK_MAX_S": "25"}
POLICY = ChunkPolicy(min_s=10, max_s=25, overlap_s=1.0, one_piece_max_s=60)


@pytest.fixture(scope="module")
def replicas(service_env):
    from devtools.stack import Stack
    from tests.helpers import ARTIFACTS

    log_dir = ARTIFACTS / "fanout"
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(env={**service_env, **CHUNK_ENV}, log_dir=log_dir, echo=False)
    for label in ("transcriber-1", "transcriber-2"):
        stack.start_service("transcriber", label)
    yield stack
    stack.stop_all()


@pytest.fixture(scope="module")
def three_minutes():
    from tests.audio_gen import generate_dialogue, long_session

    return generate_dialogue(long_session(3, 2, seed=16), seed=16)


def upload_of(settings, path, duration_s: float) -> AudioUploaded:
    sid = uuid.uuid4()
    data = path.read_bytes()
    uri = LocalBlobStore(settings.blob_dir).put_bytes(f"sessions/{sid}/audio.wav", data)
    return AudioUploaded(session_id=sid, owner_id=uuid.uuid4(), audio=AudioRef(
        uri=uri, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data), content_type="audio/wav",
        duration_s=duration_s, filename="session.wav"))


async def chunk_records(bootstrap: str, sid) -> list:
    return [r for r in await read_topic(bootstrap, "transcript.chunk") if r.key.decode().startswith(f"{sid}:")]


async def test_two_replicas_transcribe_one_session_and_it_is_assembled_once_in_order(settings, replicas,
                                                                                       three_minutes):
    event = upload_of(settings, three_minutes.wav, three_minutes.duration_s)
    sid = str(event.session_id)
    await publish(settings.kafka_bootstrap_servers, event, database_url=settings.database_url)
    ready = await wait_for_records(settings.kafka_bootstrap_servers, "transcript.ready", sid, timeout_s=900)
    assert len(ready) == 1
    body = await opened(settings.database_url, ready[0])
    chunks = body["chunks"]
    assert len(chunks) >= 6 and [c["index"] for c in chunks] == list(range(len(chunks)))
    assert len({c["worker"] for c in chunks}) == 2, chunks  # both replicas transcribed chunks of this session
    words = [w for s in body["segments"] for w in s["words"]]
    starts = [w["start"] for w in words]
    assert starts == sorted(starts) and starts[-1] > 150  # offsets put late words late
    assert abs(body["duration_s"] - three_minutes.duration_s) < 0.1
    work = await chunk_records(settings.kafka_bootstrap_servers, sid)
    assert sorted(r.key.decode() for r in work) == sorted(f"{sid}:{i}" for i in range(len(chunks)))
    assert len({r.partition for r in work}) > 1  # keyed per chunk: spread over partitions
    await asyncio.sleep(2)  # any late duplicate assembly would have been relayed by now
    assert len(await read_topic(settings.kafka_bootstrap_servers, "transcript.ready", key=sid)) == 1


async def seed_fanout(settings, event: AudioUploaded, path, done: dict[int, str], missing_audio: set[int] = frozenset()):
    """A fan-out as a replica left it: plan and chunk rows, some chunks done (their results
    stored), the others pending with their audio stored."""
    blobs = LocalBlobStore(settings.blob_dir)
    chunks = POLICY.plan(energy_profile(path, POLICY.hop_s))
    rows = []
    for chunk, pcm in zip(chunks, read_spans(path, [c.span for c in chunks])):
        key = f"sessions/{event.session_id}/chunks/{chunk.index:04d}"
        audio_uri = f"{blobs.put_bytes(key + '.pcm', (pcm * 32767).astype('<i2').tobytes())}"
        if chunk.index in missing_audio:
            audio_uri += ".gone"
        row = {"session_id": event.session_id, "idx": chunk.index, "status": "pending", "audio_uri": audio_uri,
               "worker": None, "processing_s": None, "result_uri": None}
        if chunk.index in done:
            row.update(status="done", worker="seeded:0", processing_s=1.0, result_uri=blobs.put_json(
                key + ".json", {"language": "en", "segments": [
                    {"start": 1.0, "end": 1.5, "text": done[chunk.index],
                     "words": [{"start": 1.0, "end": 1.5, "word": f" {done[chunk.index]}"}]}]}))
        rows.append(row)
    engine = create_engine(settings)
    try:
        async with create_session_factory(engine)() as db, db.begin():
            await db.execute(insert(transcript_fanouts).values(
                session_id=event.session_id, status="running", total=len(chunks), plan=_plan_json(chunks),
                language=None, duration_s=chunks[-1].cut_end))
            await db.execute(insert(transcript_chunks), rows)
            await db.execute(insert(stage_jobs).values(stage="transcription", session_id=event.session_id,
                                                       status="running", attempts=1))
    finally:
        await engine.dispose()
    await give_session_a_key(settings.database_url, event.session_id)
    return chunks


async def test_a_redriven_upload_retries_only_the_chunk_not_done(settings, replicas, three_minutes):
    event = upload_of(settings, three_minutes.wav, three_minutes.duration_s)
    sid = str(event.session_id)
    await seed_fanout(settings, event, three_minutes.wav, done={i: f"seeded{i}" for i in range(99) if i != 1})
    await publish(settings.kafka_bootstrap_servers, event, database_url=settings.database_url)  # the re-drive
    ready = await wait_for_records(settings.kafka_bootstrap_servers, "transcript.ready", sid, timeout_s=600)
    assert len(ready) == 1
    body = await opened(settings.database_url, ready[0])
    work = await chunk_records(settings.kafka_bootstrap_servers, sid)
    assert [r.key.decode() for r in work] == [f"{sid}:1"]  # only the chunk not done was sent again
    workers = [c["worker"] for c in body["chunks"]]
    assert workers[1].startswith("seeded") is False and all(w == "seeded:0" for i, w in enumerate(workers) if i != 1)
    texts = [s["text"] for s in body["segments"]]
    assert texts[0] == "seeded0" and texts[-1] == f"seeded{len(workers) - 1}"  # kept, in order, around chunk 1
    assert len(texts) > len(workers)  # chunk 1 contributed its own transcribed segments


async def test_a_chunk_that_keeps_failing_goes_to_the_dlq_and_fails_the_session(settings, replicas, three_minutes):
    event = upload_of(settings, three_minutes.wav, three_minutes.duration_s)
    sid = str(event.session_id)
    chunks = await seed_fanout(settings, event, three_minutes.wav, done={i: f"w{i}" for i in range(1, 99)},
                               missing_audio={0})
    await publish(settings.kafka_bootstrap_servers, event, database_url=settings.database_url)
    failed = await wait_for_records(settings.kafka_bootstrap_servers, "transcript.failed", sid, timeout_s=300)
    assert len(failed) == 1
    error = (await opened(settings.database_url, failed[0]))["error"]
    assert error["code"] == "chunk_failed" and f"chunk 1 of {len(chunks)}" in error["message"]
    dlq = [r for r in await read_topic(settings.kafka_bootstrap_servers, "transcript.chunk.dlq")
           if r.key.decode() == f"{sid}:0"]
    assert len(dlq) == 1
    assert "FileNotFoundError" in normalise_headers(dlq[0].headers)["dlq_error_message"]
    assert await read_topic(settings.kafka_bootstrap_servers, "transcript.ready", key=sid) == []
    engine = create_engine(settings)
    try:
        async with create_session_factory(engine)() as db:
            status = (await db.execute(select(transcript_fanouts.c.status).where(
                transcript_fanouts.c.session_id == event.session_id))).scalar_one()
    finally:
        await engine.dispose()
    assert status == "failed"


async def test_deleting_a_session_mid_fan_out_leaves_nothing(settings, replicas, three_minutes):
    from sqlalchemy import func

    from shared.contracts.events import SessionDeleted
    from shared.db.tables import outbox
    from shared.outbox import delete_unsent, enqueue
    from services.transcriber.fanout_store import chunk_event

    event = upload_of(settings, three_minutes.wav, three_minutes.duration_s)
    sid = event.session_id
    chunks = await seed_fanout(settings, event, three_minutes.wav, done={})
    engine = create_engine(settings)
    try:
        sessions = create_session_factory(engine)
        async with sessions() as db, db.begin():  # chunk work items not relayed yet, as a replica leaves them
            for c in chunks[:2]:
                await enqueue(db, chunk_event(sid, c, len(chunks), "file:///x", None), "transcriber",
                              partition_key=f"{sid}:{c.index}")
            assert await delete_unsent(db, sid) == 2  # the gateway's DELETE takes the work items too
        await publish(settings.kafka_bootstrap_servers, SessionDeleted(session_id=sid))
        for _ in range(600):
            async with sessions() as db:
                left = (await db.execute(select(func.count()).select_from(transcript_chunks).where(
                    transcript_chunks.c.session_id == sid))).scalar() + (await db.execute(
                    select(func.count()).select_from(transcript_fanouts).where(
                        transcript_fanouts.c.session_id == sid))).scalar()
            if left == 0:
                break
            await asyncio.sleep(0.5)
        assert left == 0
        async with sessions() as db:
            assert (await db.execute(select(func.count()).select_from(outbox).where(
                outbox.c.key.startswith(str(sid))))).scalar() == 0
    finally:
        await engine.dispose()
    # a late re-drive, then a sentinel: the group has handled it (and relayed anything it enqueued)
    _, where, offset = await publish_record(settings.kafka_bootstrap_servers, event, database_url=settings.database_url)
    await wait_until_consumed(settings.kafka_bootstrap_servers, "transcriber", where, offset, timeout_s=300)
    await asyncio.sleep(1)  # the relay polls every 0.1 s
    assert await chunk_records(settings.kafka_bootstrap_servers, sid) == []  # buried: nothing fans out again


async def test_a_replica_killed_mid_session_leaves_its_chunks_to_the_other(settings, replicas, three_minutes):
    """kill -9 of one replica while the session's chunks are being transcribed: the other
    replica takes over its partitions, the chunk it lost (offset never committed) is
    delivered again, and transcript.ready still comes out once with every chunk in order."""
    import signal

    event = upload_of(settings, three_minutes.wav, three_minutes.duration_s)
    sid = event.session_id
    await publish(settings.kafka_bootstrap_servers, event, database_url=settings.database_url)
    engine = create_engine(settings)
    try:
        sessions = create_session_factory(engine)
        for _ in range(1800):  # until the first chunk is done: the fan-out is under way
            async with sessions() as db:
                done = (await db.execute(select(transcript_chunks.c.idx).where(
                    transcript_chunks.c.session_id == sid, transcript_chunks.c.status == "done"))).all()
            if done:
                break
            await asyncio.sleep(0.5)
        assert done, "no chunk was transcribed"
    finally:
        await engine.dispose()
    assert replicas.kill("transcriber-2") == -signal.SIGKILL
    try:
        ready = await wait_for_records(settings.kafka_bootstrap_servers, "transcript.ready", str(sid), timeout_s=900)
        assert len(ready) == 1
        body = await opened(settings.database_url, ready[0])
        assert [c["index"] for c in body["chunks"]] == list(range(len(body["chunks"])))
        starts = [w["start"] for s in body["segments"] for w in s["words"]]
        assert starts == sorted(starts) and starts[-1] > 150
    finally:
        replicas.processes.pop("transcriber-2", None)
        replicas.start_service("transcriber", "transcriber-2")
