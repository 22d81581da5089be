"""The notes service as a real process on a real Kafka-protocol broker and PostgreSQL.

The LLM is a real HTTP server started here (FastAPI under uvicorn in a background thread)
that speaks the chat-completions protocol; the service reaches it through AsyncOpenAI with
TB_LLM_BASE_URL. Requests are counted on the server side, so "one paid call" is measured
where the money would be spent.

Isolation: this module runs its own Tansu broker and its own database. The end-to-end
stack (a session-scoped fixture) runs a notes service in the same consumer group on the
shared broker; on a private broker nothing else consumes these events.

Order matters and is the file order: the offline process runs first and is stopped, then
one LLM-configured process serves the remaining tests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import socket
import threading
import time
import uuid
from collections import defaultdict
from contextlib import contextmanager
from datetime import timedelta

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select

from shared.contracts.events import (
    MergedSegment,
    MergedWord,
    NotesFailed,
    NotesReady,
    NotesRegenerate,
    SessionDeleted,
    SessionProgress,
    SpeakerInfo,
    TranscriptMerged,
)
from shared.contracts.notes import RiskCategory
from shared.db.bootstrap import drop_database, prepare_database
from shared.db.engine import create_engine, create_session_factory
from shared.db.tables import inbox, notes_inputs, notes_runs
from devtools.localbroker import LocalBroker, ensure_topics, free_port
from shared.settings import Settings
from tests.helpers import ARTIFACTS, opened, publish, start_stack

# --- a realistic session -----------------------------------------------------------------------
THERAPIST, CLIENT = "SPEAKER_00", "SPEAKER_01"
LINES = [
    (0.0, "THERAPIST", "How has the week been since we last met?"),
    (4.0, "CLIENT", "Work has been brutal. I stay late every night and I can't switch off."),
    (12.0, "THERAPIST", "That sounds exhausting. How has your sleep been?"),
    (16.0, "CLIENT", "I wake up at four and lie there worrying. Honestly I've been thinking about killing myself."),
    (30.0, "THERAPIST", "Thank you for telling me that. We will make a safety plan together before you leave today."),
    (38.0, "THERAPIST", "This week I'd like you to keep a sleep diary and bring it to our next session."),
    (46.0, "CLIENT", "Okay, I can do that. It helps to say it out loud."),
]


def _seg(start: float, role: str, text: str) -> MergedSegment:
    speaker = THERAPIST if role == "THERAPIST" else CLIENT
    words, t = [], start
    for w in text.split():
        words.append(MergedWord(start=round(t, 2), end=round(t + 0.25, 2), word=w, speaker=speaker))
        t += 0.3
    return MergedSegment(start=start, end=round(t, 2), speaker=speaker, role=role, text=text, words=words)


def merged_event(session_id: uuid.UUID | None = None, version: int = 1) -> TranscriptMerged:
    segments = [_seg(*line) for line in LINES]
    return TranscriptMerged(
        session_id=session_id or uuid.uuid4(), version=version, language="en", duration_s=50.0,
        segments=segments, diarized=True,
        speakers=[SpeakerInfo(label=THERAPIST, role="THERAPIST", talk_time_s=20.0),
                  SpeakerInfo(label=CLIENT, role="CLIENT", talk_time_s=18.0)],
        full_text="\n".join(f"{role}: {text}" for _, role, text in LINES),
    )


LLM_NOTES = {
    "key_topics": ["work stress", "sleep"],
    "topic_summary": "Work stress, early waking and a disclosure of suicidal thoughts.",
    "action_items": [{"task": "Keep a sleep diary", "category": "tracking", "owner": "client"}],
    "significant_quotes": [{"quote": "I wake up at four and lie there worrying", "speaker": CLIENT,
                            "role": "CLIENT", "start": 16.0, "end": 18.0}],
    "risk_flags": [{"category": "suicidal_ideation", "severity": "high", "source": "llm",
                    "evidence": "I've been thinking about killing myself", "start": 19.0}],
    "session_mood": "low",
    "mood_trajectory": "stable",
    "therapist_notes": "Client disclosed suicidal ideation; safety plan started.",
    "patient_summary": "We talked about work and sleep and made a plan to keep you safe.",
}
USAGE = (900, 300)


# --- the fake OpenAI-compatible server --------------------------------------------------------
class FakeLLM:
    def __init__(self) -> None:
        self.mode = "ok"  # ok | 503 | 401
        self.requests: list[float] = []
        self.lock = threading.Lock()

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request):
            body = await request.json()
            with self.lock:
                self.requests.append(time.monotonic())
            if self.mode == "503":
                return JSONResponse({"error": {"message": "overloaded", "type": "server_error"}}, status_code=503)
            if self.mode == "401":
                return JSONResponse({"error": {"message": "invalid api key", "type": "auth"}}, status_code=401)
            return JSONResponse({
                "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", "test"),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": json.dumps(LLM_NOTES)}}],
                "usage": {"prompt_tokens": USAGE[0], "completion_tokens": USAGE[1], "total_tokens": sum(USAGE)},
            })

        return app


@pytest.fixture(scope="module")
def fake_llm():
    fake = FakeLLM()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(fake.app(), host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=1, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    assert server.started, "fake LLM server did not start"
    yield f"http://127.0.0.1:{port}/v1", fake
    server.should_exit = True
    thread.join(timeout=5)


# --- private brokers + database -----------------------------------------------------------------
class Tail:
    """Every record of the topics this module reads, collected from the beginning by one
    consumer in a background thread, so waiting for an event costs milliseconds."""

    TOPICS = ("notes.ready", "notes.failed", "session.progress")

    def __init__(self, bootstrap: str, partitions: int = 4) -> None:
        self.bootstrap, self.partitions = bootstrap, partitions
        self._records: dict[tuple[str, bytes], list] = defaultdict(list)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._consume()), daemon=True)

    def start(self) -> "Tail":
        self._thread.start()
        assert self._ready.wait(30), "topic tail did not start"
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20)
        await consumer.start()
        try:
            tps = [TopicPartition(t, p) for t in self.TOPICS for p in range(self.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            self._ready.set()
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=100)
                with self._lock:
                    for tp, recs in batch.items():
                        for r in recs:
                            self._records[(tp.topic, r.key)].append(r)
        finally:
            await consumer.stop()

    def get(self, topic: str, sid: uuid.UUID) -> list:
        with self._lock:
            return list(self._records[(topic, str(sid).encode())])


TAILS: dict[str, Tail] = {}


@contextmanager
def private_database(infra):
    db_url = f"{infra[0].rsplit('/', 1)[0]}/tb_notes_{uuid.uuid4().hex[:8]}"
    asyncio.run(prepare_database(db_url))
    try:
        yield db_url
    finally:
        asyncio.run(drop_database(db_url))


@pytest.fixture(scope="module")
def notes_db(infra):
    with private_database(infra) as db_url:
        yield db_url


@contextmanager
def notes_process(service_env: dict[str, str], db_url: str, label: str, extra_env: dict[str, str]):
    """A private broker (so no other notes consumer - e.g. the e2e stack's - shares the group
    or the topics), a tail on it, and one notes service process."""
    broker = LocalBroker(log_path=ARTIFACTS / f"tansu-{label}.log").start()
    stack = tail = None
    try:
        asyncio.run(ensure_topics(broker.bootstrap_servers, 4))
        tail = TAILS[broker.bootstrap_servers] = Tail(broker.bootstrap_servers).start()
        env = {**service_env, "TB_DATABASE_URL": db_url, "TB_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
               "TB_LOG_LEVEL": "INFO", **extra_env}
        log = ARTIFACTS / label / "notes.log"
        if log.exists():
            log.unlink()
        t0 = time.monotonic()
        stack = start_stack(env, ["notes"], label)
        while "service_started" not in (log.read_text(errors="replace") if log.exists() else ""):
            assert stack.processes["notes"].poll() is None and time.monotonic() - t0 < 180, f"notes did not start; see {log}"
            time.sleep(0.1)
        print(f"\n[notes] {label} service ready in {time.monotonic() - t0:.1f}s")
        yield env
    finally:
        if stack is not None:
            stack.stop_all()
        if tail is not None:
            tail.stop()
            TAILS.pop(broker.bootstrap_servers, None)
        broker.stop()


@pytest.fixture
def offline_service(service_env, infra):
    """Its own database: the module's LLM-configured service may still be running on
    ``notes_db``, and its outbox relay would publish this service's events to its own broker."""
    with private_database(infra) as db_url, \
            notes_process(service_env, db_url, "notes-offline", {"TB_LLM_BASE_URL": ""}) as env:
        yield env


@pytest.fixture(scope="module")
def llm_service(service_env, notes_db, fake_llm):
    base_url, fake = fake_llm
    metrics_port = free_port()
    extra = {"TB_LLM_BASE_URL": base_url, "TB_LLM_API_KEY": "test-key", "TB_LLM_MODEL": "test-model",
             "TB_LLM_TIMEOUT_S": "5", "TB_BREAKER_OPEN_S": "8", "TB_LLM_RETRY_INITIAL_S": "0.05",
             "TB_LLM_RETRY_MAX_S": "0.1", "TB_METRICS_PORT": str(metrics_port)}
    with notes_process(service_env, notes_db, "notes-llm", extra) as env:
        yield env, fake, f"http://127.0.0.1:{metrics_port}/metrics"


@pytest.fixture
async def db(notes_db):
    engine = create_engine(Settings(database_url=notes_db))
    yield create_session_factory(engine)
    await engine.dispose()


# --- helpers -----------------------------------------------------------------------------------
async def records(env, topic: str, sid: uuid.UUID) -> list:
    """The session's records on a topic, sealed payloads opened with its data key."""
    got = TAILS[env["TB_KAFKA_BOOTSTRAP_SERVERS"]].get(topic, sid)
    return [dataclasses.replace(r, value=json.dumps(await opened(env["TB_DATABASE_URL"], r)).encode()) for r in got]


async def wait_records(env, topic: str, sid: uuid.UUID, count: int = 1, timeout_s: float = 30.0) -> list:
    deadline = time.monotonic() + timeout_s
    while True:
        got = await records(env, topic, sid)
        if len(got) >= count or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.05)


def ready_of(record) -> NotesReady:
    return NotesReady.model_validate_json(record.value)


def failed_of(record) -> NotesFailed:
    return NotesFailed.model_validate_json(record.value)


def metric(url: str, name: str, labels: str = "") -> float:
    text = httpx.get(url, timeout=5).text
    pattern = re.compile(rf"^{re.escape(name)}{re.escape('{' + labels + '}') if labels else ''}\s+([0-9.e+-]+)$", re.M)
    found = pattern.findall(text)
    return float(found[0]) if found else 0.0


async def wait_metric(url: str, name: str, labels: str, at_least: float, timeout_s: float = 20.0) -> float:
    deadline = time.monotonic() + timeout_s
    while True:
        value = metric(url, name, labels)
        if value >= at_least or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.2)


# --- tests -------------------------------------------------------------------------------------
async def test_offline_notes_from_transcript_merged(offline_service):
    """No LLM endpoint: the offline backend, labelled as such, with the safety net's risk
    flag and the homework the therapist set."""
    env = offline_service
    engine = create_engine(Settings(database_url=env["TB_DATABASE_URL"]))
    db = create_session_factory(engine)
    event = merged_event()
    sid = event.session_id
    t1 = time.monotonic()
    await publish(env["TB_KAFKA_BOOTSTRAP_SERVERS"], event, source="joiner", database_url=env["TB_DATABASE_URL"])
    [record] = await wait_records(env, "notes.ready", sid)
    latency = time.monotonic() - t1
    ready = ready_of(record)
    assert ready.engine.backend == "offline" and ready.engine.prompt_tokens == 0 and ready.engine.cost_usd == 0
    assert ready.transcript_version == 1 and ready.timing is not None
    notes = ready.notes
    flags = [f for f in notes.risk_flags if f.category is RiskCategory.suicidal_ideation]
    assert flags, notes.risk_flags
    assert flags[0].role == "CLIENT" and "killing myself" in flags[0].evidence and flags[0].high_priority
    assert any("sleep diary" in a.task.lower() for a in notes.action_items), notes.action_items
    assert "offline" in notes.therapist_notes.lower()
    client_text = " ".join(t for _, r, t in LINES if r == "CLIENT")
    assert all(q.quote in client_text for q in notes.significant_quotes)

    # progress ticks while working, stage notes
    ticks = [SessionProgress.model_validate_json(r.value) for r in await wait_records(env, "session.progress", sid)]
    assert ticks and all(t.stage.value == "notes" for t in ticks)
    # the run row, the input for regenerate, the inbox entry
    async with db() as s:
        runs = (await s.execute(select(notes_runs).where(notes_runs.c.session_id == sid))).all()
        assert [(r.request_key, r.backend, r.status) for r in runs] == [("auto", "offline", "done")]
        assert runs[0].notes["action_items"] and runs[0].engine["backend"] == "offline"
        stored = (await s.execute(select(notes_inputs.c.transcript_version)
                                  .where(notes_inputs.c.session_id == sid))).scalar_one()
        assert stored == 1
        assert (await s.execute(select(inbox.c.event_id).where(inbox.c.consumer == "notes",
                                                                inbox.c.session_id == sid))).all()
    await engine.dispose()
    print(f"\n[notes] offline: merged->notes.ready {latency:.2f}s, "
          f"{len(notes.risk_flags)} risk flag(s), {len(notes.action_items)} action item(s)")


async def test_llm_notes_once_under_redelivery(llm_service, db):
    env, fake, metrics_url = llm_service
    fake.mode = "ok"
    bootstrap = env["TB_KAFKA_BOOTSTRAP_SERVERS"]
    before = fake.count
    event = merged_event()
    sid = event.session_id
    ce_id = str(uuid.uuid4())
    t0 = time.monotonic()
    await publish(bootstrap, event, source="joiner", database_url=env["TB_DATABASE_URL"], event_id=ce_id)
    [record] = await wait_records(env, "notes.ready", sid)
    latency = time.monotonic() - t0
    ready = ready_of(record)
    engine = ready.engine
    assert engine.backend == "llm" and engine.model == "test-model" and engine.calls == 1
    assert engine.prompt_tokens == USAGE[0] and engine.completion_tokens == USAGE[1]
    assert engine.cost_usd > 0
    assert fake.count - before == 1
    # grounded LLM output + the safety net: one suicidal-ideation flag seen by both
    [flag] = [f for f in ready.notes.risk_flags if f.category is RiskCategory.suicidal_ideation]
    assert flag.source.value == "both" and flag.high_priority
    assert ready.notes.significant_quotes[0].start == 16.0  # repaired to the real time

    # redeliver: the same record (same ce_id), then the same version under a new ce_id
    dup0 = metric(metrics_url, "tb_duplicate_events_total", 'consumer="notes"')
    await publish(bootstrap, event, source="joiner", database_url=env["TB_DATABASE_URL"], event_id=ce_id)
    await publish(bootstrap, event, source="joiner", database_url=env["TB_DATABASE_URL"], event_id=str(uuid.uuid4()))
    dups = await wait_metric(metrics_url, "tb_duplicate_events_total", 'consumer="notes"', dup0 + 2)
    assert dups == dup0 + 2
    await asyncio.sleep(0.5)  # anything the duplicates might (wrongly) have enqueued gets relayed
    assert fake.count - before == 1, "a redelivered transcript.merged must not call the LLM again"
    assert len(await records(env, "notes.ready", sid)) == 1

    # usage recorded in the database and the metrics
    async with db() as s:
        [run] = (await s.execute(select(notes_runs).where(notes_runs.c.session_id == sid))).all()
    assert run.status == "done" and run.backend == "llm"
    assert run.engine["prompt_tokens"] == USAGE[0] and run.engine["cost_usd"] == engine.cost_usd
    assert metric(metrics_url, "tb_llm_tokens_total", 'kind="prompt"') >= USAGE[0]
    assert metric(metrics_url, "tb_llm_tokens_total", 'kind="completion"') >= USAGE[1]
    assert metric(metrics_url, "tb_llm_cost_usd_total") > 0
    print(f"\n[notes] llm: merged->notes.ready {latency:.2f}s, tokens {engine.prompt_tokens}+"
          f"{engine.completion_tokens}, cost ${engine.cost_usd}, LLM requests after 2 redeliveries: "
          f"{fake.count - before}")


async def test_llm_unauthorized_fails_permanently_without_retry(llm_service, db):
    env, fake, _ = llm_service
    fake.mode = "401"
    before = fake.count
    event = merged_event()
    try:
        await publish(env["TB_KAFKA_BOOTSTRAP_SERVERS"], event, source="joiner", database_url=env["TB_DATABASE_URL"])
        [record] = await wait_records(env, "notes.failed", event.session_id)
    finally:
        fake.mode = "ok"
    failed = failed_of(record)
    assert failed.error.kind == "permanent" and failed.error.code == "llm_unauthorized"
    assert "credentials" in failed.error.message and failed.transcript_version == 1
    assert fake.count - before == 1, "a 401 must not be retried"
    assert await records(env, "notes.ready", event.session_id) == []
    async with db() as s:
        [run] = (await s.execute(select(notes_runs).where(notes_runs.c.session_id == event.session_id))).all()
    assert run.status == "failed" and run.error["code"] == "llm_unauthorized"


async def test_regenerate_with_offline_after_llm(llm_service, db):
    env, fake, _ = llm_service
    fake.mode = "ok"
    bootstrap = env["TB_KAFKA_BOOTSTRAP_SERVERS"]
    event = merged_event()
    sid = event.session_id
    await publish(bootstrap, event, source="joiner", database_url=env["TB_DATABASE_URL"])
    [first] = await wait_records(env, "notes.ready", sid)
    assert ready_of(first).engine.backend == "llm"
    before = fake.count
    command_id = await publish(bootstrap, NotesRegenerate(session_id=sid, backend="offline"), source="gateway")
    got = await wait_records(env, "notes.ready", sid, count=2)
    assert len(got) == 2
    second = ready_of(got[1])
    assert second.engine.backend == "offline" and second.transcript_version == 1
    assert any("sleep diary" in a.task.lower() for a in second.notes.action_items)
    assert fake.count == before, "an offline regenerate must not call the LLM"
    # the same command redelivered is a no-op
    await publish(bootstrap, NotesRegenerate(session_id=sid, backend="offline"), source="gateway", event_id=command_id)
    await asyncio.sleep(2.0)
    assert len(await records(env, "notes.ready", sid)) == 2
    async with db() as s:
        runs = (await s.execute(select(notes_runs.c.request_key, notes_runs.c.backend, notes_runs.c.status)
                                .where(notes_runs.c.session_id == sid).order_by(notes_runs.c.id))).all()
    assert [tuple(r) for r in runs] == [("auto", "llm", "done"), (command_id, "offline", "done")]


async def test_crashed_run_is_retaken_and_live_run_is_waited_for(llm_service, db):
    """A 'running' row whose worker stopped heart-beating is retaken (attempt 2); one whose
    worker is alive is waited for, and once it is done the delivery pays for nothing."""
    env, fake, metrics_url = llm_service
    fake.mode = "ok"
    bootstrap = env["TB_KAFKA_BOOTSTRAP_SERVERS"]
    stale, live = merged_event(), merged_event()
    async with db() as s, s.begin():
        await s.execute(notes_runs.insert().values(
            session_id=stale.session_id, transcript_version=1, request_key="auto", backend="llm", status="running",
            worker="crashed-host:1", updated_at=func.now() - timedelta(minutes=10)))
        await s.execute(notes_runs.insert().values(
            session_id=live.session_id, transcript_version=1, request_key="auto", backend="llm", status="running",
            worker="other-host:2"))
    before = fake.count
    await publish(bootstrap, stale, source="joiner", database_url=env["TB_DATABASE_URL"])
    [record] = await wait_records(env, "notes.ready", stale.session_id)
    assert ready_of(record).engine.backend == "llm" and fake.count - before == 1
    async with db() as s:
        run = (await s.execute(select(notes_runs).where(notes_runs.c.session_id == stale.session_id))).one()
    assert run.status == "done" and run.attempts == 2 and run.worker != "crashed-host:1"

    dup0 = metric(metrics_url, "tb_duplicate_events_total", 'consumer="notes"')
    await publish(bootstrap, live, source="joiner", database_url=env["TB_DATABASE_URL"])
    await asyncio.sleep(2.0)  # the service holds the delivery while the other worker's claim is fresh
    assert fake.count - before == 1
    async with db() as s, s.begin():  # ...the other worker finishes
        await s.execute(notes_runs.update().where(notes_runs.c.session_id == live.session_id)
                        .values(status="done", updated_at=func.now()))
    assert await wait_metric(metrics_url, "tb_duplicate_events_total", 'consumer="notes"', dup0 + 1) == dup0 + 1
    assert fake.count - before == 1
    assert await records(env, "notes.ready", live.session_id) == []  # the other worker publishes, not us


async def test_breaker_open_pauses_consumer_then_resumes(llm_service):
    env, fake, metrics_url = llm_service
    bootstrap = env["TB_KAFKA_BOOTSTRAP_SERVERS"]
    fake.mode = "503"
    base = fake.count
    t0 = time.monotonic()
    try:
        # 1) a session whose 3 attempts all fail (breaker still closed: 3 < 5) -> notes.failed, transient
        first = merged_event()
        await publish(bootstrap, first, source="joiner", database_url=env["TB_DATABASE_URL"])
        [record] = await wait_records(env, "notes.failed", first.session_id)
        failed = failed_of(record)
        assert failed.error.kind == "transient" and failed.error.code == "llm_unavailable"
        assert fake.count - base == 3

        # 2) three more sessions: the next 2 failures open the breaker (5 consecutive)
        queued = [merged_event() for _ in range(3)]
        for ev in queued:
            await publish(bootstrap, ev, source="joiner", database_url=env["TB_DATABASE_URL"])
        deadline = time.monotonic() + 20
        while fake.count - base < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert fake.count - base == 5
        opened_at = time.monotonic()
        assert await wait_metric(metrics_url, "tb_circuit_breaker_open", 'dependency="llm"', 1, timeout_s=2) == 1

        # 3) while open: no requests (the consumer holds its partitions and waits)
        await asyncio.sleep(1.5)
        assert fake.count - base == 5, "requests must stop while the breaker is open"
        quiet_s = time.monotonic() - opened_at
    finally:
        # 4) the endpoint recovers before the breaker's half-open trial (8 s after opening, a margin
        # for a loaded machine);
        # (a failed trial would re-open it for another 8 s: still no notes.failed)
        fake.mode = "ok"
    # nothing was published for the queued sessions while open (checked after the fact, so
    # reading the topics does not delay the recovery past the trial)
    failed_while_open = [r for ev in queued for r in await records(env, "notes.failed", ev.session_id)]
    assert failed_while_open == []

    for ev in queued:
        got = await wait_records(env, "notes.ready", ev.session_id, timeout_s=30)
        assert len(got) == 1 and ready_of(got[0]).engine.backend == "llm"
    resumed_s = time.monotonic() - opened_at
    for ev in queued:
        assert await records(env, "notes.failed", ev.session_id) == []
    assert fake.count - base == 8  # 3 + 2 failures, then one successful call per queued session
    assert metric(metrics_url, "tb_circuit_breaker_open", 'dependency="llm"') == 0
    waiting = [SessionProgress.model_validate_json(r.value).message
               for ev in queued for r in await records(env, "session.progress", ev.session_id)]
    assert any("Waiting for the notes model" in m for m in waiting)
    print(f"\n[notes] breaker: opened after 5 failures, {quiet_s:.1f}s with 0 requests and 0 notes.failed, "
          f"3 queued sessions -> notes.ready {resumed_s:.1f}s after opening (open_s=8); "
          f"whole scenario {time.monotonic() - t0:.1f}s")


async def test_session_deleted_forgets_notes(llm_service, db):
    env, fake, _ = llm_service
    fake.mode = "ok"
    event = merged_event()
    sid = event.session_id
    await publish(env["TB_KAFKA_BOOTSTRAP_SERVERS"], event, source="joiner", database_url=env["TB_DATABASE_URL"])
    await wait_records(env, "notes.ready", sid)
    await publish(env["TB_KAFKA_BOOTSTRAP_SERVERS"], SessionDeleted(session_id=sid), source="gateway")
    deadline = time.monotonic() + 20
    while True:
        async with db() as s:
            left = (await s.execute(select(notes_runs.c.id).where(notes_runs.c.session_id == sid))).all()
            left += (await s.execute(select(notes_inputs.c.session_id).where(notes_inputs.c.session_id == sid))).all()
            left += (await s.execute(select(inbox.c.event_id).where(inbox.c.consumer == "notes",
                                                                     inbox.c.session_id == sid))).all()
        if not left or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert left == []


# --- issue 14: the upload's notes_backend is honoured ----------------------------------------


async def test_offline_request_never_reaches_the_configured_llm(llm_service, db):
    """notes_backend="offline" on the upload (carried on transcript.merged): the notes service
    with an LLM configured writes offline notes and sends the LLM nothing."""
    env, fake, _ = llm_service
    fake.mode = "ok"
    before = fake.count
    event = merged_event().model_copy(update={"notes_backend": "offline"})
    await publish(env["TB_KAFKA_BOOTSTRAP_SERVERS"], event, source="joiner", database_url=env["TB_DATABASE_URL"])
    [record] = await wait_records(env, "notes.ready", event.session_id)
    assert ready_of(record).engine.backend == "offline"
    assert any(f.category is RiskCategory.suicidal_ideation for f in ready_of(record).notes.risk_flags)
    await asyncio.sleep(0.5)
    assert fake.count == before, "an offline request must never call the LLM"


async def test_llm_request_without_an_llm_fails_with_a_clear_message(offline_service):
    """notes_backend="llm" on a server with no LLM endpoint: notes.failed, permanent, with a
    message that says what happened and what to do (regenerate offline); no silent fallback."""
    env = offline_service
    event = merged_event().model_copy(update={"notes_backend": "llm"})
    await publish(env["TB_KAFKA_BOOTSTRAP_SERVERS"], event, source="joiner", database_url=env["TB_DATABASE_URL"])
    [record] = await wait_records(env, "notes.failed", event.session_id)
    failed = failed_of(record)
    assert failed.error.kind == "permanent" and failed.error.code == "llm_not_configured"
    assert "no LLM endpoint is configured" in failed.error.message and "offline" in failed.error.message
    assert await records(env, "notes.ready", event.session_id) == []
