"""Transcriber and diarizer as real processes on the real broker: duplicates are
no-ops, undecodable audio fails permanently with one DLQ record per stage."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid

import pytest
from sqlalchemy import func, select

from shared.blobstore import LocalBlobStore
from shared.contracts.events import AudioRef, AudioUploaded
from shared.db.engine import create_engine, create_session_factory
from shared.db.tables import outbox, stage_jobs
from shared.envelope import normalise_headers
from tests.conftest import DATA
from tests.helpers import opened, publish, publish_record, read_topic, start_stack, wait_for_records, wait_until_consumed


@pytest.fixture(scope="module")
def stages(service_env):
    stack = start_stack(service_env, ["transcriber", "diarizer"], "audio-stages")
    yield stack
    stack.stop_all()


def upload_event(settings, data: bytes, name: str) -> AudioUploaded:
    sid = uuid.uuid4()
    uri = LocalBlobStore(settings.blob_dir).put_bytes(f"sessions/{sid}/audio.{name.rsplit('.', 1)[1]}", data)
    return AudioUploaded(session_id=sid, owner_id=uuid.uuid4(), audio=AudioRef(
        uri=uri, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data), content_type="audio/flac",
        duration_s=11.0, filename=name))


async def job_rows(settings, sid) -> int:
    engine = create_engine(settings)
    try:
        async with create_session_factory(engine)() as db:
            return (await db.execute(select(func.count()).select_from(stage_jobs).where(
                stage_jobs.c.session_id == sid, stage_jobs.c.stage.in_(("transcription", "diarization"))))).scalar()
    finally:
        await engine.dispose()


async def outbox_drained(settings, sid: str, timeout_s: float = 30.0) -> None:
    """Wait until no event of this session is waiting in the outbox for the relay."""
    engine = create_engine(settings)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            async with create_session_factory(engine)() as db:
                waiting = (await db.execute(select(func.count()).select_from(outbox).where(
                    outbox.c.key == sid, outbox.c.published_at.is_(None)))).scalar()
            if waiting == 0:
                return
            assert time.monotonic() < deadline, f"{waiting} events of the session never left the outbox"
            await asyncio.sleep(0.1)
    finally:
        await engine.dispose()


async def test_duplicate_audio_uploaded_is_processed_once(settings, stages):
    bootstrap = settings.kafka_bootstrap_servers
    event = upload_event(settings, (DATA / "jfk.flac").read_bytes(), "jfk.flac")
    sid = str(event.session_id)
    db_url = settings.database_url
    event_id = await publish(bootstrap, event, database_url=db_url)
    await publish(bootstrap, event, event_id=event_id, database_url=db_url)  # redelivery: same CloudEvents id
    _, where, last = await publish_record(bootstrap, event, database_url=db_url)  # a duplicate publish with a new id
    await wait_for_records(bootstrap, "transcript.ready", sid, timeout_s=120)
    await wait_for_records(bootstrap, "diarization.ready", sid, timeout_s=120)
    # Sentinel instead of a sleep: both stages have handled the last duplicate, and
    # anything that handling wrote to the outbox has been published.
    for group in ("transcriber", "diarizer"):
        await wait_until_consumed(bootstrap, group, where, last, timeout_s=120)
    await outbox_drained(settings, sid)
    transcripts = await read_topic(bootstrap, "transcript.ready", key=sid)
    diarizations = await read_topic(bootstrap, "diarization.ready", key=sid)
    assert len(transcripts) == 1 and len(diarizations) == 1
    assert await job_rows(settings, event.session_id) == 2  # one per stage
    assert b"country" not in transcripts[0].value  # sealed on the bus
    assert (await opened(db_url, transcripts[0]))["segments"]
    assert (await opened(db_url, diarizations[0]))["speaker_count"] == 1  # one speaker: JFK


async def test_undecodable_audio_fails_permanently_with_one_dlq_record(settings, stages):
    bootstrap = settings.kafka_bootstrap_servers
    event = upload_event(settings, b"this is not audio at all" * 100, "bad.flac")
    sid = str(event.session_id)
    _, where, offset = await publish_record(bootstrap, event, database_url=settings.database_url)
    for group in ("transcriber", "diarizer"):  # both stages are done with it (no retry left)
        await wait_until_consumed(bootstrap, group, where, offset, timeout_s=60)
    await outbox_drained(settings, sid)
    failed_t = await read_topic(bootstrap, "transcript.failed", key=sid)
    failed_d = await read_topic(bootstrap, "diarization.failed", key=sid)
    for records in (failed_t, failed_d):
        assert len(records) == 1
        error = json.loads(records[0].value)["error"]
        assert error["kind"] == "permanent" and error["code"] in ("undecodable_audio", "empty_audio")
        assert "Traceback" not in error["message"]
    dlq = await read_topic(bootstrap, "audio.uploaded.dlq", key=sid)
    services = sorted(normalise_headers(r.headers)["dlq_service"] for r in dlq)
    assert services == ["diarizer", "transcriber"]  # once per consuming stage
    assert all(normalise_headers(r.headers)["dlq_error_kind"] == "permanent" for r in dlq)
