"""Deletion's database side on the real PostgreSQL: the retention pass deletes a session past
TB_RETENTION_DAYS exactly as DELETE does (row, data key, unsent events, blobs, one
session.deleted) and leaves a younger one alone; enqueue seals patient data and enqueues
nothing for a session without a key; the relay prunes relayed rows."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from shared.contracts.events import SessionDeleted, TranscriptMerged
from shared.db.engine import create_engine, create_session_factory
from shared.db.tables import audit_log, outbox, session_keys, sessions, therapists
from shared.outbox import OutboxRelay, enqueue
from shared.shredding import create_session_key, open_payload
from services.gateway.main import create_app
from services.gateway.retention import delete_expired_sessions


@pytest.fixture
async def db_factory(settings):
    engine = create_engine(settings)
    yield create_session_factory(engine)
    await engine.dispose()


def merged(session_id) -> TranscriptMerged:
    return TranscriptMerged(session_id=session_id, diarized=False, full_text="CLIENT: my sister in Valparaiso")


async def add_session(db_factory, therapist_id, created_at) -> uuid.UUID:
    sid = uuid.uuid4()
    async with db_factory() as db, db.begin():
        await db.execute(sessions.insert().values(
            id=sid, therapist_id=therapist_id, audio_uri=f"blob://sessions/{sid}/audio.wav", audio_bytes=1,
            audio_sha256="0" * 64, content_type="audio/wav", duration_s=1.0, created_at=created_at))
        await create_session_key(db, sid)
        await enqueue(db, merged(sid), "joiner")  # an event not relayed yet
    return sid


async def test_retention_deletes_old_sessions_as_delete_does(settings, db_factory):
    therapist_id, now = uuid.uuid4(), datetime.now(timezone.utc)
    async with db_factory() as db, db.begin():
        await db.execute(therapists.insert().values(id=therapist_id, email=f"ret-{therapist_id}@x.test",
                                                    password_hash="x"))
    old = await add_session(db_factory, therapist_id, now - timedelta(days=31))
    young = await add_session(db_factory, therapist_id, now - timedelta(days=29))
    app = create_app(settings.model_copy(update={"retention_days": 30}), with_broker=False)
    state = app.state.gateway
    state.blobs.inner.put_bytes(f"sessions/{old}/audio.wav", b"sealed audio")
    try:
        assert await delete_expired_sessions(state) == 1
        assert await delete_expired_sessions(state) == 0  # nothing left past retention
    finally:
        await state.runtime.engine.dispose()
    async with db_factory() as db:
        left = set((await db.execute(select(sessions.c.id).where(sessions.c.id.in_([old, young])))).scalars())
        keys = set((await db.execute(select(session_keys.c.session_id)
                                     .where(session_keys.c.session_id.in_([old, young])))).scalars())
        events = (await db.execute(select(outbox.c.topic).where(outbox.c.key == str(old)))).scalars().all()
        actions = (await db.execute(select(audit_log.c.action).where(audit_log.c.session_id == old))).scalars().all()
    assert left == {young} and keys == {young}
    assert events == ["session.deleted"]  # its unsent transcript.merged went with it
    assert actions == ["retention_delete"]
    assert not state.blobs.inner.exists(f"blob://sessions/{old}/audio.wav")


async def test_enqueue_seals_patient_data_and_drops_events_of_keyless_sessions(db_factory):
    keyed, keyless = uuid.uuid4(), uuid.uuid4()
    async with db_factory() as db, db.begin():
        key = await create_session_key(db, keyed)
        await enqueue(db, merged(keyed), "joiner")
        await enqueue(db, merged(keyless), "joiner")  # deleted (or never uploaded): nothing
        await enqueue(db, SessionDeleted(session_id=keyless), "gateway")  # in clear, always
    async with db_factory() as db:
        rows = (await db.execute(select(outbox.c.key, outbox.c.topic, outbox.c.payload)
                                 .where(outbox.c.key.in_([str(keyed), str(keyless)])))).all()
    by_topic = {(r.key, r.topic): r.payload for r in rows}
    assert set(by_topic) == {(str(keyed), "transcript.merged"), (str(keyless), "session.deleted")}
    sealed = by_topic[(str(keyed), "transcript.merged")]
    assert "Valparaiso" not in sealed and set(json.loads(sealed)) == {"session_id", "schema_version", "sealed"}
    assert "Valparaiso" in open_payload(key, "transcript.merged", sealed.encode()).decode()


async def test_relay_prunes_relayed_rows_after_the_keep_time(db_factory):
    sid = uuid.uuid4()
    async with db_factory() as db, db.begin():
        await db.execute(outbox.delete())  # other tests' rows: this relay would publish them too
        await enqueue(db, SessionDeleted(session_id=sid), "gateway")
    published = []

    async def publish(topic, value, key, headers):
        published.append(topic)

    await OutboxRelay(db_factory, publish, keep_sent_s=3600).relay_once()
    async with db_factory() as db:
        assert (await db.execute(select(outbox.c.published_at).where(outbox.c.key == str(sid)))).scalar() is not None
    await OutboxRelay(db_factory, publish, keep_sent_s=0).relay_once()
    async with db_factory() as db:
        assert (await db.execute(select(outbox.c.id).where(outbox.c.key == str(sid)))).first() is None
    assert published == ["session.deleted"]
