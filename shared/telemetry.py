"""OpenTelemetry tracing (OTLP when an endpoint is configured) and Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from shared.settings import Settings


def configure_tracing(settings: Settings, service: str) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(resource=Resource.create({"service.name": f"therapybridge-{service}"}))
    if settings.otel_exporter_otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"))
        )
    trace.set_tracer_provider(provider)


class ServiceMetrics:
    """The metrics every service exports, on its own registry (no module globals)."""

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
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
        self.duplicates = Counter(
            "tb_duplicate_events_total", "Redelivered/duplicate events ignored", ["consumer"], registry=self.registry
        )
        self.dlq = Counter("tb_dlq_records_total", "Records sent to a DLQ", ["topic"], registry=self.registry)
        self.breaker_state = Gauge(
            "tb_circuit_breaker_open", "1 when the breaker is open", ["dependency"], registry=self.registry
        )
        self.llm_tokens = Counter("tb_llm_tokens_total", "LLM tokens", ["kind"], registry=self.registry)
        self.llm_cost = Counter("tb_llm_cost_usd_total", "Estimated LLM cost (USD)", registry=self.registry)
        self.sessions = Counter("tb_sessions_total", "Sessions by terminal status", ["status"], registry=self.registry)

    def serve(self, port: int) -> None:
        if port:
            start_http_server(port, registry=self.registry)
