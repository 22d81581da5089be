"""What the records carry as their parent: the active span (a real, exported span), else
the traceparent handed in, never an invented span id; and request spans keep no query
string (a WebSocket or download link may carry an access token there)."""

from __future__ import annotations

import uuid

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.contracts.events import SessionDeleted
from shared.envelope import build_headers, trace_id_of
from shared.telemetry import context_of, current_traceparent
from services.gateway.webapp import _without_query

CALLER = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"


def _tracer():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("tests"), exporter


def test_without_an_active_span_the_given_traceparent_is_the_parent():
    assert current_traceparent(CALLER) == CALLER
    assert current_traceparent(None) is None


def test_the_active_span_is_the_parent():
    tracer, exporter = _tracer()
    with tracer.start_as_current_span("request", context=context_of(CALLER)) as span:
        parent = current_traceparent(CALLER)
    context = span.get_span_context()
    assert parent == f"00-{context.trace_id:032x}-{context.span_id:016x}-01"
    assert trace_id_of(parent) == "a" * 32  # the caller's trace goes on
    assert [s.name for s in exporter.get_finished_spans()] == ["request"]  # the parent is a span that is exported


def test_headers_keep_the_parent_as_given():
    headers = build_headers(SessionDeleted(session_id=uuid.uuid4()), "tests", traceparent=CALLER)
    assert headers["traceparent"] == CALLER
    started = build_headers(SessionDeleted(session_id=uuid.uuid4()), "tests")
    assert trace_id_of(started["traceparent"])  # no parent: a new trace


def test_an_invalid_traceparent_gives_no_context():
    assert context_of("00-" + "0" * 32 + "-" + "0" * 16 + "-01") is None
    assert context_of("garbage") is None and context_of(None) is None


def test_request_spans_drop_the_query_string():
    tracer, exporter = _tracer()
    with tracer.start_as_current_span("GET /api/sessions/{session_id}/export/srt", attributes={
            "http.target": "/api/sessions/1/export/srt?token=secret", "http.url": "http://h/api/sessions/1/export/srt?token=secret"}) as span:
        _without_query(span, {"path": "/api/sessions/1/export/srt", "query_string": b"token=secret"})
    (finished,) = exporter.get_finished_spans()
    assert "secret" not in str(dict(finished.attributes))
    assert finished.attributes["http.target"] == "/api/sessions/1/export/srt"


def test_exported_spans_carry_no_exception_text():
    from opentelemetry.sdk.trace.export import SpanExportResult
    from opentelemetry.trace import Status, StatusCode

    from shared.telemetry import WithoutExceptionText

    tracer, exporter = _tracer()
    with tracer.start_as_current_span("handler") as span:
        span.record_exception(ValueError("patient Jane Doe said something"))
        span.set_status(Status(StatusCode.ERROR, "ValueError: patient Jane Doe said something"))
    received = InMemorySpanExporter()
    assert WithoutExceptionText(received).export(exporter.get_finished_spans()) == SpanExportResult.SUCCESS
    (exported,) = received.get_finished_spans()
    assert "Jane" not in str([dict(e.attributes) for e in exported.events]) + str(exported.status.description)
    assert exported.events[0].attributes["exception.type"] == "ValueError"
    assert exported.status.status_code == StatusCode.ERROR
