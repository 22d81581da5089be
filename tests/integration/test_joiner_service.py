"""The joiner as real processes on the real broker and PostgreSQL: exactly one merge
under a race and across a crash, and graceful degradation."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from shared.contracts.events import (
    DiarizationFailed, DiarizationReady, Engine, ErrorInfo, SpeakerTurn, Timing, TranscriptReady, TranscriptSegment, Word,
)
from shared.db.engine import create_engine, create_session_factory
from shared.db.tables import join_state
from tests.helpers import opened, publish, read_topic, start_stack, wait_for_records

NOW = datetime.now(timezone.utc)
TIMING = Timing(started_at=NOW, finished_at=NOW, processing_s=1.0, audio_s=6.0, rtf=0.16)


def halves(sid):
    words_a = [Word(start=0.0 + i * 0.4, end=0.35 + i * 0.4, word=w) for i, w in enumerate([" How", " are", " you", " today?"])]
    words_b = [Word(start=3.0 + i * 0.4, end=3.35 + i * 0.4, word=w) for i, w in enumerate([" I", " feel", " tired."])]
    transcript = TranscriptReady(
        session_id=sid, language="en", duration_s=6.0, engine=Engine(backend="test"), timing=TIMING,
        segments=[TranscriptSegment(start=0.0, end=1.55, text="How are you today?", words=words_a),
                  TranscriptSegment(start=3.0, end=4.15, text="I feel tired.", words=words_b)])
    diarization = DiarizationReady(
        session_id=sid, speaker_count=2, engine=Engine(backend="test"), timing=TIMING,
        turns=[SpeakerTurn(start=0.0, end=1.7, speaker="SPEAKER_00"), SpeakerTurn(start=2.9, end=4.3, speaker="SPEAKER_01")])
    return transcript, diarization


def merged_payloads(records):
    return [json.loads(r.value) for r in records]


async def _join_row(settings, sid):
    engine = create_engine(settings)
    try:
        async with create_session_factory(engine)() as db:
            return (await db.execute(select(join_state).where(join_state.c.session_id == sid))).first()
    finally:
        await engine.dispose()


@pytest.fixture
def joiner_env(service_env):
    return {**service_env, "TB_JOIN_DIARIZATION_DEADLINE_S": "4", "TB_JOIN_SCHEDULER_INTERVAL_S": "0.5"}


async def test_race_two_joiners_one_merge(settings, joiner_env):
    # Two processes in different groups both receive both halves; whichever claims
    # each half handles it, concurrently, on the same join row.
    stack = start_stack(joiner_env, [], "joiner-race")
    stack.start_service("joiner", "joiner-a", {"TB_CONSUMER_GROUP": f"race-a-{uuid.uuid4().hex[:6]}"})
    stack.start_service("joiner", "joiner-b", {"TB_CONSUMER_GROUP": f"race-b-{uuid.uuid4().hex[:6]}"})
    try:
        await asyncio.sleep(8)  # group joins
        sessions = [uuid.uuid4() for _ in range(6)]
        pairs = [halves(sid) for sid in sessions]
        await asyncio.gather(*[publish(settings.kafka_bootstrap_servers, ev, database_url=settings.database_url) for pair in pairs for ev in pair])
        for sid in sessions:
            records = await wait_for_records(settings.kafka_bootstrap_servers, "transcript.merged", str(sid), timeout_s=30)
            assert len(records) == 1, f"{sid}: expected one merge, got {len(records)}"
        await asyncio.sleep(2)
        for sid in sessions:
            records = await read_topic(settings.kafka_bootstrap_servers, "transcript.merged", key=str(sid))
            assert len(records) == 1
            payload = await opened(settings.database_url, records[0])
            assert payload["diarized"] is True
            assert [s["speaker"] for s in payload["segments"]] == ["SPEAKER_00", "SPEAKER_01"]
    finally:
        stack.stop_all()


async def test_restart_after_first_half(settings, joiner_env):
    # A long deadline: a restart into a used group can take ~11 s on Tansu.
    stack = start_stack({**joiner_env, "TB_JOIN_DIARIZATION_DEADLINE_S": "120"}, ["joiner"], "joiner-restart")
    try:
        sid = uuid.uuid4()
        transcript, diarization = halves(sid)
        await publish(settings.kafka_bootstrap_servers, transcript, database_url=settings.database_url)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            row = await _join_row(settings, sid)
            if row is not None and row.transcript is not None:
                break
            await asyncio.sleep(0.3)
        assert row is not None and row.transcript is not None
        stack.stop_service("joiner", sig=signal.SIGKILL)  # crash, no clean shutdown
        stack.start_service("joiner")
        await publish(settings.kafka_bootstrap_servers, diarization, database_url=settings.database_url)
        records = await wait_for_records(settings.kafka_bootstrap_servers, "transcript.merged", str(sid), timeout_s=40)
        await asyncio.sleep(2)
        records = await read_topic(settings.kafka_bootstrap_servers, "transcript.merged", key=str(sid))
        assert len(records) == 1
        assert (await opened(settings.database_url, records[0]))["diarized"] is True
    finally:
        stack.stop_all()


async def test_degrade_on_failure_and_on_deadline(settings, joiner_env):
    stack = start_stack(joiner_env, ["joiner"], "joiner-degrade")
    try:
        failed_sid, silent_sid = uuid.uuid4(), uuid.uuid4()
        t1, _ = halves(failed_sid)
        t2, _ = halves(silent_sid)
        await publish(settings.kafka_bootstrap_servers, t1, database_url=settings.database_url)
        await publish(settings.kafka_bootstrap_servers, DiarizationFailed(
            session_id=failed_sid, error=ErrorInfo(kind="permanent", code="backend_unavailable", message="pyannote could not load")),
            database_url=settings.database_url)
        started = time.monotonic()
        await publish(settings.kafka_bootstrap_servers, t2, database_url=settings.database_url)  # diarization never arrives

        for sid in (failed_sid, silent_sid):
            records = await wait_for_records(settings.kafka_bootstrap_servers, "transcript.merged", str(sid), timeout_s=40)
            assert len(records) == 1
            payload = await opened(settings.database_url, records[0])
            assert payload["diarized"] is False
            assert {s["speaker"] for s in payload["segments"]} == {"Unknown"}
            assert payload["warnings"] and "Speaker identification unavailable" in payload["warnings"][0]
            assert "How are you today?" in payload["full_text"]
        assert time.monotonic() - started >= 3.5, "the deadline merge must wait for the deadline"
        silent = (await read_topic(settings.kafka_bootstrap_servers, "transcript.merged", key=str(silent_sid)))[0]
        assert "4 s" in (await opened(settings.database_url, silent))["warnings"][0]

        # Late diarization after a degraded merge is recorded, not merged silently...
        _, late = halves(silent_sid)
        await publish(settings.kafka_bootstrap_servers, late, database_url=settings.database_url)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            row = await _join_row(settings, silent_sid)
            if row.late_diarization:
                break
            await asyncio.sleep(0.3)
        assert row.late_diarization and row.diarization is not None
        # ...and a remerge command publishes a diarized version 2.
        from shared.contracts.events import TranscriptRemerge

        await publish(settings.kafka_bootstrap_servers, TranscriptRemerge(session_id=silent_sid))
        records = await wait_for_records(settings.kafka_bootstrap_servers, "transcript.merged", str(silent_sid), count=2, timeout_s=30)
        latest = await opened(settings.database_url, records[-1])
        assert latest["version"] == 2 and latest["diarized"] is True and latest["warnings"] == []
    finally:
        stack.stop_all()


async def test_rejected_record_reaches_the_dlq_with_its_original_headers(settings, joiner_env):
    """The one DLQ writer, through a real joiner on the real broker: the copy keeps the
    value byte for byte, the key and every original header (CloudEvents ce_*, the trace)."""
    from aiokafka import AIOKafkaProducer

    from shared.envelope import build_headers, normalise_headers, trace_id_of

    stack = start_stack(joiner_env, ["joiner"], "joiner-dlq")
    try:
        sid = uuid.uuid4()
        transcript, _ = halves(sid)
        headers = build_headers(transcript, "tests", event_id=f"poison-{sid}")
        value = b'{"session_id": "' + str(sid).encode() + b'", "not": "a transcript"}'
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_idempotence=False)
        await producer.start()
        try:
            await producer.send_and_wait("transcript.ready", value, key=str(sid).encode(),
                                         headers=[(k, v.encode()) for k, v in headers.items()])
        finally:
            await producer.stop()
        [record] = await wait_for_records(settings.kafka_bootstrap_servers, "transcript.ready.dlq", str(sid), timeout_s=40)
        copied = normalise_headers(record.headers)
        assert record.value == value
        assert {k: copied[k] for k in headers if k.startswith("ce_")} == {k: v for k, v in headers.items() if k.startswith("ce_")}
        assert copied["content-type"] == "application/json"
        assert copied["dlq_original_traceparent"] == headers["traceparent"]
        assert trace_id_of(copied["traceparent"]) == trace_id_of(headers["traceparent"])  # same trace
        assert (copied["dlq_error_kind"], copied["dlq_service"]) == ("permanent", "joiner")
        assert copied["dlq_error_message"] == "invalid event: ValidationError"
        assert copied["dlq_original_topic"] == "transcript.ready"
        row = await _join_row(settings, sid)
        assert row is None  # nothing of the rejected record was stored
    finally:
        stack.stop_all()
