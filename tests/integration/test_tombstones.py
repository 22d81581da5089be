"""A deleted session stays deleted: a late event (here transcript.ready after
session.deleted) must not recreate its read-model rows."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timezone

from sqlalchemy import select

from shared.contracts.events import (
    AudioRef, AudioUploaded, Engine, SessionDeleted, Timing, TranscriptReady, TranscriptSegment,
)
from shared.db.engine import create_engine, create_session_factory
from shared.db.tables import session_status, tombstones
from tests.helpers import publish, publish_record, start_stack, wait_until_consumed


async def _rows(settings, sid):
    engine = create_engine(settings)
    try:
        async with create_session_factory(engine)() as db:
            status = (await db.execute(select(session_status.c.status).where(session_status.c.session_id == sid))).first()
            buried = (await db.execute(select(tombstones.c.consumer).where(tombstones.c.session_id == sid))).all()
            return status, {r.consumer for r in buried}
    finally:
        await engine.dispose()


async def _wait(settings, sid, predicate, timeout_s=40.0):
    deadline = time.monotonic() + timeout_s
    while True:
        rows = await _rows(settings, sid)
        if predicate(*rows) or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.3)


async def test_late_event_does_not_resurrect_a_deleted_session(settings, service_env):
    stack = start_stack(service_env, ["progress"], "tombstones")
    try:
        bootstrap, sid = settings.kafka_bootstrap_servers, uuid.uuid4()
        await publish(bootstrap, AudioUploaded(session_id=sid, owner_id=uuid.uuid4(), audio=AudioRef(
            uri="blob://x", sha256="0", bytes=1, content_type="audio/wav", duration_s=5.0)))
        status, _ = await _wait(settings, sid, lambda s, b: s is not None)
        assert status is not None

        await publish(bootstrap, SessionDeleted(session_id=sid))
        status, buried = await _wait(settings, sid, lambda s, b: s is None and "progress" in b)
        assert status is None and "progress" in buried

        now = datetime.now(timezone.utc)
        _, where, offset = await publish_record(bootstrap, TranscriptReady(
            session_id=sid, language="en", duration_s=5.0, engine=Engine(backend="x"),
            timing=Timing(started_at=now, finished_at=now, processing_s=1, audio_s=5, rtf=0.2),
            segments=[TranscriptSegment(start=0, end=1, text="late")]))
        await wait_until_consumed(bootstrap, "progress", where, offset)  # handled (and dropped), not slept on
        status, _ = await _rows(settings, sid)
        assert status is None
    finally:
        stack.stop_all()
