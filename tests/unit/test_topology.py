"""The topology in shared/topology.py is the one truth about who consumes and produces
what: subscriptions come from it, publishing outside it is refused at run time, and a
static scan fails when a service's code mentions, consumes or produces an event its
declaration does not list (or declares one its code never produces)."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest

import shared.topology as topology
from shared.broker import create_broker, publish_event
from shared.contracts.events import TOPIC_MODELS, NotesReady, SessionDeleted, SessionProgress, Stage, Topic
from shared.outbox import enqueue
from shared.runtime import ServiceRuntime
from shared.settings import Settings
from shared.topology import EXTERNAL_ONLY, GATEWAY, JOINER, NOTES, SERVICES, TopologyError, consumers_of, producers_of

ROOT = Path(__file__).resolve().parents[2]
SESSION = "0b5c3a5e-2f0e-4a8e-9a55-1d1f0c7e9b11"
EVENT_MODELS = {model.__name__: topic for topic, model in TOPIC_MODELS.items()}
DECLARATIONS = {name: value for name, value in vars(topology).items() if isinstance(value, topology.ServiceTopology)}
# Shared helpers that publish on behalf of the service that uses them (progress ticks).
PUBLISHING_HELPERS = {name: {Topic.SESSION_PROGRESS} for name in ("AudioStageWorker", "StageDeps", "ProgressReporter")}
TYPE_CHECKS = {"isinstance", "issubclass"}


def name_of(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def called_names(call: ast.Call) -> set[str]:
    """``f(...)`` -> {f}; ``Owner.method(...)`` -> {Owner, method}."""
    names = {name_of(call.func)}
    if isinstance(call.func, ast.Attribute):
        names.add(name_of(call.func.value))
    return names - {None}


def produced_by_call(call: ast.Call) -> set[Topic]:
    """Constructing an event model, calling a publishing helper, or handing an event
    model class to a call (a stage's failure event given to the shared flow)."""
    names = called_names(call)
    produced = {EVENT_MODELS[n] for n in names if n in EVENT_MODELS and n == name_of(call.func)}
    for name in names:
        produced |= PUBLISHING_HELPERS.get(name, set())
    if not names & TYPE_CHECKS:
        arguments = [*call.args, *(k.value for k in call.keywords)]
        produced |= {EVENT_MODELS[a.id] for a in arguments if isinstance(a, ast.Name) and a.id in EVENT_MODELS}
    return produced


def scan(source: str) -> tuple[set[Topic], set[Topic]]:
    """(topics the code mentions, topics it produces). Producing is constructing an event
    model, naming one as a stage's failure event, or using a publishing helper."""
    mentioned: set[Topic] = set()
    produced: set[Topic] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and name_of(node.value) == "Topic" and node.attr in Topic.__members__:
            mentioned.add(Topic[node.attr])
        if name_of(node) in EVENT_MODELS and not isinstance(node, ast.Attribute):
            mentioned.add(EVENT_MODELS[name_of(node)])
        if isinstance(node, ast.Call):
            produced |= produced_by_call(node)
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                produced |= PUBLISHING_HELPERS.get(name_of(base), set())
        if isinstance(node, ast.Assign) and [name_of(t) for t in node.targets] == ["failed_event"]:
            produced.add(EVENT_MODELS[name_of(node.value)])
    return mentioned, produced


def package_sources(service: str) -> dict[Path, str]:
    return {path: path.read_text() for path in sorted((ROOT / "services" / service).rglob("*.py"))}


def declaration_names_in(source: str) -> set[str]:
    return {node.id for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Name) and node.id in DECLARATIONS}


def test_every_service_package_is_declared():
    packages = {p.name for p in (ROOT / "services").iterdir() if (p / "main.py").exists()}
    assert packages == set(SERVICES)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_service_code_mentions_only_declared_topics(service):
    declared = SERVICES[service]
    mentioned, produced = set(), set()
    for source in package_sources(service).values():
        found, made = scan(source)
        mentioned |= found
        produced |= made
    allowed = set(declared.consumes) | set(declared.produces)
    assert sorted(t.value for t in mentioned - allowed) == [], "used but not declared in shared/topology.py"
    assert sorted(t.value for t in produced - set(declared.produces)) == [], "produced but not declared"
    assert sorted(t.value for t in set(declared.produces) - produced) == [], "declared but never produced"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_main_subscribes_from_its_own_declaration(service):
    own = next(name for name, value in DECLARATIONS.items() if value is SERVICES[service])
    assert declaration_names_in((ROOT / "services" / service / "main.py").read_text()) == {own}


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_main_names_only_consumed_topics(service):
    """main.py wires subscriptions: any topic it names is one it consumes."""
    mentioned, _ = scan((ROOT / "services" / service / "main.py").read_text())
    assert sorted(t.value for t in mentioned - set(SERVICES[service].consumes)) == []


def test_the_scan_catches_an_undeclared_consume_and_produce():
    """The static check can fail: a joiner that handles notes.failed and builds notes.ready."""
    code = ("runtime.consume(JOINER, {Topic.NOTES_FAILED: handler.on_event})\n"
            "ready = NotesReady(session_id=sid, notes=notes, engine=engine)\n")
    mentioned, produced = scan(code)
    assert Topic.NOTES_FAILED in mentioned - set(JOINER.consumes)
    assert produced - set(JOINER.produces) == {Topic.NOTES_READY}


def test_the_scan_sees_stage_workers_and_progress_helpers():
    code = "class H(AudioStageWorker):\n    failed_event = TranscriptFailed\n"
    assert scan(code)[1] == {Topic.SESSION_PROGRESS, Topic.TRANSCRIPT_FAILED}
    code = "deps = StageDeps.on_runtime(runtime, Stage.diarization, DiarizationFailed, work)\n"
    assert scan(code)[1] == {Topic.SESSION_PROGRESS, Topic.DIARIZATION_FAILED}


def test_the_scan_does_not_take_a_type_check_or_a_parse_for_producing():
    code = ("if isinstance(event, TranscriptReady):\n"
            "    merged = TranscriptMerged.model_validate(row)\n")
    mentioned, produced = scan(code)
    assert mentioned == {Topic.TRANSCRIPT_READY, Topic.TRANSCRIPT_MERGED} and produced == set()


def test_every_consumed_topic_has_a_producer_and_every_topic_a_payload():
    assert set(TOPIC_MODELS) == set(Topic)
    for topic in Topic:
        assert producers_of(topic), f"{topic.value} has no producer"
    orphans = {t for t in Topic if not consumers_of(t)}
    assert orphans == set(EXTERNAL_ONLY)  # only the facts declared as for other systems


def test_consumer_groups():
    assert GATEWAY.group is None  # every gateway replica wakes its own streams
    assert {s.group for s in SERVICES.values() if s is not GATEWAY} == set(SERVICES) - {"gateway"}


def test_routes_refuse_an_undeclared_topic_and_a_missing_handler():
    handlers = {t: object() for t in NOTES.consumes}
    assert list(NOTES.routes(handlers)) == [t.value for t in NOTES.consumes]
    with pytest.raises(TopologyError, match="undeclared topics \\['notes.failed'\\]"):
        NOTES.routes({**handlers, Topic.NOTES_FAILED: object()})
    with pytest.raises(TopologyError, match="without a handler \\['notes.regenerate'\\]"):
        NOTES.routes({t: h for t, h in handlers.items() if t is not Topic.NOTES_REGENERATE})


def make_runtime(name: str) -> ServiceRuntime:
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:9")  # never connected: subscribing only registers
    return ServiceRuntime(name=name, settings=settings, broker=create_broker(settings, name),
                          metrics=None, blobs=None, executor=None)


async def handler(envelope) -> None:
    return None


def test_consume_subscribes_once_to_the_declared_topics_in_the_declared_group():
    runtime = make_runtime("joiner")
    runtime.consume(JOINER, {t: handler for t in JOINER.consumes})
    [subscriber] = runtime.broker.subscribers
    assert subscriber.topic_names == [t.value for t in JOINER.consumes]
    assert subscriber.group_id == "joiner"


def test_a_declaration_without_a_group_subscribes_without_one():
    runtime = make_runtime("gateway")
    runtime.consume(GATEWAY, {Topic.SESSION_STATUS: handler, Topic.SESSION_DELETED: handler}, auto_offset_reset="latest")
    [subscriber] = runtime.broker.subscribers
    assert subscriber.topic_names == [Topic.SESSION_STATUS.value, Topic.SESSION_DELETED.value]
    assert subscriber.group_id is None


def test_consume_refuses_at_start_up():
    runtime = make_runtime("joiner")
    with pytest.raises(TopologyError):
        runtime.consume(JOINER, {**{t: handler for t in JOINER.consumes}, Topic.NOTES_FAILED: handler})
    with pytest.raises(TopologyError):
        runtime.consume(JOINER, {Topic.TRANSCRIPT_READY: handler})
    with pytest.raises(TopologyError, match="given the notes declaration"):
        runtime.consume(NOTES, {t: handler for t in NOTES.consumes})
    assert runtime.broker.subscribers == []


def test_outbox_refuses_an_undeclared_produced_topic():
    """The check runs before any SQL, so no database is needed to see it refuse."""
    with pytest.raises(TopologyError, match="joiner produces notes.ready"):
        asyncio.run(enqueue(None, NotesReady.model_validate({"session_id": SESSION, "notes": {},
                                                             "engine": {"backend": "offline"}}), "joiner"))
    with pytest.raises(TopologyError, match="progress produces session.deleted"):
        asyncio.run(enqueue(None, SessionDeleted(session_id=SESSION), "progress"))


def test_direct_publish_refuses_an_undeclared_produced_topic():
    tick = SessionProgress(session_id=SESSION, stage=Stage.join, fraction=0.5)
    with pytest.raises(TopologyError, match="joiner produces session.progress"):
        asyncio.run(publish_event(None, tick, "joiner"))


def test_sources_that_are_not_services_may_publish():
    class Recorder:
        def __init__(self) -> None:
            self.executed = 0

        async def execute(self, statement) -> None:
            self.executed += 1

    db = Recorder()
    asyncio.run(enqueue(db, SessionDeleted(session_id=SESSION), "tests"))
    asyncio.run(enqueue(db, SessionDeleted(session_id=SESSION), "gateway"))
    assert db.executed == 2
