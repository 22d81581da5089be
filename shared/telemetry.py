"""OpenTelemetry tracing (OTLP when an endpoint is configured) and Prometheus metrics.

Tracing: one trace per session, rooted at the upload request. Every process has a real
tracer provider; HTTP requests get spans from the FastAPI instrumentation, consume and
publish from FastStream's telemetry middleware, stage work from ``work_span``, and every
record carries the traceparent of a span that is exported.

Every metric of the project is defined here, on one registry per process (no module
globals). Labels are bounded sets only: stage, kind, topic, route template, status;
never a session id. The process itself (gateway, transcriber, ...) is not a label of the
metrics: Prometheus attaches it as the target's ``service`` label (file_sd, compose or
pod discovery)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from shared.settings import Settings

FAILURE_KINDS = ("transient", "permanent")
LLM_TOKEN_KINDS = ("prompt", "completion")
SESSION_OUTCOMES = ("processed", "failed")


TRACER_NAME = "therapybridge"
_TRACE_CONTEXT = TraceContextTextMapPropagator()


def configure_tracing(settings: Settings, service: str) -> None:
    """A real tracer provider in every process, so spans (and the traceparents handed on in
    records and outbox rows) are real spans; they leave the process over OTLP/HTTP only
    when an endpoint is set (TB_/OTEL_EXPORTER_OTLP_ENDPOINT, base URL: /v1/traces is
    appended). Set once per process: OpenTelemetry ignores a second global provider."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(resource=Resource.create({"service.name": f"therapybridge-{service}"}))
    if settings.otel_exporter_otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        exporter = OTLPSpanExporter(endpoint=settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(WithoutExceptionText(exporter)))
    trace.set_tracer_provider(provider)


class WithoutExceptionText:
    """A span exporter that passes spans on without exception messages, stack traces or status
    descriptions: a library (the HTTP instrumentation, FastStream) records an exception's
    text, which may quote patient data. The exception's type stays."""

    def __init__(self, exporter) -> None:
        self._exporter = exporter

    def export(self, spans):
        return self._exporter.export([scrub_exception_text(span) for span in spans])

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._exporter.force_flush(timeout_millis)


def scrub_exception_text(span):
    from opentelemetry.sdk.trace import Event, ReadableSpan

    if not span.events and not span.status.description:
        return span
    events = [Event(e.name, {k: v for k, v in (e.attributes or {}).items()
                             if k not in ("exception.message", "exception.stacktrace")}, e.timestamp)
              for e in span.events]
    return ReadableSpan(name=span.name, context=span.context, parent=span.parent, resource=span.resource,
                        attributes=span.attributes, events=events, links=span.links, kind=span.kind,
                        status=Status(span.status.status_code), start_time=span.start_time, end_time=span.end_time,
                        instrumentation_scope=span.instrumentation_scope)


def flush_traces() -> None:
    """Export what is buffered (on shutdown: the batch processor would otherwise wait)."""
    provider = trace.get_tracer_provider()
    if hasattr(provider, "force_flush"):
        provider.force_flush(5_000)


def current_traceparent(fallback: str | None = None) -> str | None:
    """The W3C traceparent of the span active here, else ``fallback``: what an outbox row or a
    direct publish stores as its parent, so the relay's publish span hangs under a span
    that is actually exported (not an invented span id)."""
    if not trace.get_current_span().get_span_context().is_valid:
        return fallback
    carrier: dict[str, str] = {}
    _TRACE_CONTEXT.inject(carrier)
    return carrier.get("traceparent", fallback)


def current_trace_id() -> str | None:
    """The active span's trace id (hex), for log lines: logs and traces meet on it."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None


def context_of(traceparent: str | None) -> Context | None:
    """An OpenTelemetry context whose parent is ``traceparent`` (None when it is missing or invalid)."""
    if not traceparent:
        return None
    ctx = _TRACE_CONTEXT.extract({"traceparent": traceparent})
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


@contextmanager
def work_span(name: str, session_id: object, traceparent: str | None = None) -> Iterator[trace.Span]:
    """A span around one stage's work (transcription, diarization, merge, notes). Its parent
    is the active span (the record's consume span); with none active (a periodic task, e.g.
    the joiner's deadline sweep) it is ``traceparent``, the record that caused the work.
    Attributes are ids only, never PHI; an exception is recorded by its type alone."""
    tracer = trace.get_tracer(TRACER_NAME)
    parent = None if trace.get_current_span().get_span_context().is_valid else context_of(traceparent)
    with tracer.start_as_current_span(name, context=parent, record_exception=False,
                                      set_status_on_exception=False) as span:
        span.set_attribute("tb.session_id", str(session_id))
        try:
            yield span
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            span.set_attribute("error.type", type(exc).__name__)
            raise


class ServiceMetrics:
    """The metrics every service exports, on its own registry (no module globals)."""

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.service = service
        self.registry = registry or CollectorRegistry()
        self._stage_metrics()
        self._delivery_metrics()
        self._state_metrics()
        self._http_metrics()
        self.duplicates.labels(service)  # a zero series from the start: rate() and increase() work at once

    def _stage_metrics(self) -> None:
        self.stage_seconds = Histogram(
            "tb_stage_duration_seconds", "Processing time of one stage run", ["stage"], registry=self.registry,
            buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600),
        )
        self.rtf = Histogram(
            "tb_stage_real_time_factor", "Processing seconds per audio second", ["stage"], registry=self.registry,
            buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2),
        )
        self.audio_seconds = Counter(
            "tb_audio_seconds_processed_total", "Audio seconds processed", ["stage"], registry=self.registry
        )
        self.failures = Counter("tb_stage_failures_total", "Stage failures", ["stage", "kind"], registry=self.registry)
        self.llm_tokens = Counter("tb_llm_tokens_total", "LLM tokens", ["kind"], registry=self.registry)
        self.llm_cost = Counter("tb_llm_cost_usd_total", "Estimated LLM cost (USD)", registry=self.registry)

    def _delivery_metrics(self) -> None:
        self.duplicates = Counter(
            "tb_duplicate_events_total", "Redelivered/duplicate events ignored", ["consumer"], registry=self.registry
        )
        # Counted where records are published (PublishMetricsMiddleware), so every path that
        # dead-letters is counted once; ``topic`` is the topic the record came from.
        self.dlq = Counter(
            "tb_dlq_records_total", "Records sent to a DLQ, by source topic and error kind", ["topic", "kind"],
            registry=self.registry,
        )
        self.events_published = Counter(
            "tb_events_published_total",
            "Events published, by the service whose event it is (CloudEvents source) and topic; "
            "an outbox relay may publish another service's rows",
            ["source", "topic"], registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "tb_consumer_lag", "Records not yet committed by this consumer, per assigned partition",
            ["group", "topic", "partition"], registry=self.registry,
        )

    def _state_metrics(self) -> None:
        self.breaker_state = Gauge(
            "tb_circuit_breaker_open", "1 when the breaker is open", ["dependency"], registry=self.registry
        )
        self.sessions = Counter("tb_sessions_total", "Sessions by terminal status", ["status"], registry=self.registry)
        self.sessions_by_status = Gauge(
            "tb_sessions_by_status", "Sessions in the read model by current status (database-wide)", ["status"],
            registry=self.registry,
        )
        self.outbox_backlog = Gauge(
            "tb_outbox_backlog", "Unpublished outbox rows (database-wide), by the service whose event it is",
            ["source"], registry=self.registry,
        )
        self.outbox_oldest_age = Gauge(
            "tb_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row (0: none)", ["source"],
            registry=self.registry,
        )

    def _http_metrics(self) -> None:
        self.http_requests = Counter(
            "tb_http_requests_total", "HTTP requests by method, route template and status code",
            ["method", "route", "status"], registry=self.registry,
        )
        self.http_seconds = Histogram(
            "tb_http_request_duration_seconds", "HTTP request duration (to the end of the response body)",
            ["method", "route"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.http_in_flight = Gauge(
            "tb_http_requests_in_flight", "HTTP requests being served (SSE streams included)", registry=self.registry
        )

    def declare_stage(self, stage: str, *, audio: bool = False, llm: bool = False) -> None:
        """Create the stage's series at zero, so dashboards and alerts see them before the
        first run (Prometheus cannot compute an increase from a series' first sample)."""
        self.stage_seconds.labels(stage)
        for kind in FAILURE_KINDS:
            self.failures.labels(stage, kind)
        if audio:
            self.rtf.labels(stage)
            self.audio_seconds.labels(stage)
        if llm:
            for kind in LLM_TOKEN_KINDS:
                self.llm_tokens.labels(kind)

    def declare_session_outcomes(self) -> None:
        for status in SESSION_OUTCOMES:
            self.sessions.labels(status)

    def declare_consumed(self, topics: list[str]) -> None:
        for topic in topics:
            for kind in FAILURE_KINDS:
                self.dlq.labels(topic, kind)

    def serve(self, port: int) -> None:
        if port:
            start_http_server(port, registry=self.registry)
