"""What the shared runtime decides before and after a handler runs: events of a
tombstoned session are dropped, bad records and failing handlers go to the DLQ once,
as a copy of the original record. Fakes only: no database, no broker."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

from shared.contracts.events import SessionDeleted, TranscriptRemerge
from shared.envelope import build_headers, encode
from shared.resilience import PermanentError
from shared.runtime import ServiceRuntime
from shared.settings import Settings
from shared.telemetry import ServiceMetrics
from tests.unit.fakes import FakeBroker, FakeTombstones

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def kafka_message(event=None, topic: str | None = None, value: bytes | None = None):
    """What FastStream hands the subscriber: the raw record and its body."""
    topic = topic or "transcript.remerge"
    headers = build_headers(event, "tests", traceparent=TRACEPARENT) if event is not None else {"ce_id": "x"}
    raw = SimpleNamespace(topic=topic, partition=2, offset=41, key=b"the-key",
                          headers=[(k, v.encode()) for k, v in headers.items()])
    return SimpleNamespace(raw_message=raw, body=value if value is not None else encode(event)), headers


def runtime(buried=(), attempts: int = 2) -> ServiceRuntime:
    return ServiceRuntime(
        name="joiner", settings=Settings(dlq_max_attempts=attempts), broker=FakeBroker(),
        metrics=ServiceMetrics("joiner"), blobs=None, executor=None,
        tombstones=FakeTombstones(set(buried)), retry_base_delay_s=0.0,
    )


class Recorder:
    def __init__(self, error: Exception | None = None) -> None:
        self.calls, self.error = [], error

    async def __call__(self, envelope) -> None:
        self.calls.append(envelope)
        if self.error is not None:
            raise self.error




async def test_event_of_a_tombstoned_session_is_dropped():
    buried, alive = uuid.uuid4(), uuid.uuid4()
    rt, handler = runtime(buried={buried}), Recorder()
    await rt.dispatch(kafka_message(TranscriptRemerge(session_id=buried))[0], handler)
    assert handler.calls == []
    await rt.dispatch(kafka_message(TranscriptRemerge(session_id=alive))[0], handler)
    assert [e.event.session_id for e in handler.calls] == [alive]
    assert rt.broker.sent == []


async def test_session_deleted_reaches_the_handler_even_when_buried():
    sid = uuid.uuid4()
    rt, handler = runtime(buried={sid}), Recorder()
    await rt.dispatch(kafka_message(SessionDeleted(session_id=sid), topic="session.deleted")[0], handler)
    assert len(handler.calls) == 1  # a redelivered delete forgets again, harmlessly


async def test_unparseable_record_is_dead_lettered_as_received():
    rt, handler = runtime(), Recorder()
    msg, headers = kafka_message(TranscriptRemerge(session_id=uuid.uuid4()), value=b"{not json")
    await rt.dispatch(msg, handler)
    assert handler.calls == []
    [sent] = rt.broker.sent
    assert (sent["topic"], sent["value"], sent["key"]) == ("transcript.remerge.dlq", b"{not json", b"the-key")
    assert {k: sent["headers"][k] for k in headers} == headers  # every original header, ce_* and traceparent
    assert sent["headers"]["dlq_error_kind"] == "permanent"
    assert sent["headers"]["dlq_error_message"] == "invalid event: ValidationError"
    assert (sent["headers"]["dlq_original_partition"], sent["headers"]["dlq_original_offset"]) == ("2", "41")
    # DLQ records are counted by the broker's publish middleware (test_metrics_wiring), not here.


async def test_permanent_error_goes_to_the_dlq_without_retry():
    rt, handler = runtime(attempts=3), Recorder(PermanentError("bad_input", "cannot use this"))
    msg, headers = kafka_message(TranscriptRemerge(session_id=uuid.uuid4()))
    await rt.dispatch(msg, handler)
    assert len(handler.calls) == 1
    [sent] = rt.broker.sent
    assert sent["value"] == msg.body and sent["headers"]["ce_id"] == headers["ce_id"]
    assert (sent["headers"]["dlq_error_kind"], sent["headers"]["dlq_error_message"]) == ("permanent", "cannot use this")


async def test_transient_errors_are_retried_then_dead_lettered_once():
    rt, handler = runtime(attempts=3), Recorder(ConnectionError("db went away: patient text here"))
    msg, _ = kafka_message(TranscriptRemerge(session_id=uuid.uuid4()))
    await rt.dispatch(msg, handler)
    assert len(handler.calls) == 3
    [sent] = rt.broker.sent
    assert sent["headers"]["dlq_error_kind"] == "transient"
    assert sent["headers"]["dlq_error_message"] == "ConnectionError after 3 attempts"  # the type, never the text
    assert sent["headers"]["dlq_service"] == "joiner"
