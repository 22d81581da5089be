"""The metric plumbing that needs no broker: the stack's file_sd targets and the gateway's
HTTP metrics per route template. (Everything else is checked against a real Prometheus in
tests/integration/test_prometheus.py.)"""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import generate_latest

from devtools.stack import metrics_env, metrics_ports, scrape_targets, write_targets
from shared.instrumentation import HttpMetricsMiddleware
from shared.telemetry import ServiceMetrics


def test_every_worker_gets_its_own_port_and_a_target(tmp_path) -> None:
    services = ["gateway", "transcriber", "diarizer", "joiner", "notes", "progress"]
    ports = metrics_ports(services)
    assert set(ports) == set(services) - {"gateway"}  # the gateway serves /metrics on its HTTP port
    assert len(set(ports.values())) == len(ports)
    assert metrics_env(ports, "notes") == {"TB_METRICS_PORT": str(ports["notes"])}
    assert metrics_env(ports, "gateway") == {}

    path = write_targets(scrape_targets("127.0.0.1:8000", ports), tmp_path / "prometheus" / "targets.json")
    groups = json.loads(path.read_text())
    # file_sd format: a list of {targets: [host:port], labels: {...}}, one per process
    assert {g["labels"]["service"] for g in groups} == set(services)
    assert all(len(g["targets"]) == 1 and ":" in g["targets"][0] for g in groups)
    assert {"127.0.0.1:8000"} | {f"127.0.0.1:{p}" for p in ports.values()} == {g["targets"][0] for g in groups}
    assert not list(path.parent.glob("*.tmp"))


def sample(metrics: ServiceMetrics, name: str, labels: dict) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


@pytest.fixture
def app_and_metrics():
    metrics = ServiceMetrics("gateway")
    app = FastAPI()

    @app.get("/api/sessions/{session_id}")
    async def read(session_id: str) -> dict:
        return {"id": session_id}

    @app.get("/boom")
    async def boom() -> dict:
        raise RuntimeError("fails")

    app.add_middleware(HttpMetricsMiddleware, metrics=metrics)
    return app, metrics


async def test_requests_are_counted_per_route_template(app_and_metrics) -> None:
    app, metrics = app_and_metrics
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for sid in ("a1", "b2", "c3"):
            assert (await client.get(f"/api/sessions/{sid}")).status_code == 200
        assert (await client.get("/no/such/path/123")).status_code == 404
        assert (await client.get("/boom")).status_code == 500

    route = "/api/sessions/{session_id}"
    assert sample(metrics, "tb_http_requests_total", {"method": "GET", "route": route, "status": "200"}) == 3
    assert sample(metrics, "tb_http_requests_total", {"method": "GET", "route": "unmatched", "status": "404"}) == 1
    assert sample(metrics, "tb_http_requests_total", {"method": "GET", "route": "/boom", "status": "500"}) == 1
    assert sample(metrics, "tb_http_request_duration_seconds_count", {"method": "GET", "route": route}) == 3
    assert sample(metrics, "tb_http_requests_in_flight", {}) == 0
    exposition = generate_latest(metrics.registry).decode()
    assert "a1" not in exposition and "/no/such/path" not in exposition


def test_declared_series_exist_at_zero_before_the_first_event() -> None:
    metrics = ServiceMetrics("transcriber")
    metrics.declare_stage("transcription", audio=True)
    metrics.declare_consumed(["audio.uploaded"])
    assert sample(metrics, "tb_stage_failures_total", {"stage": "transcription", "kind": "transient"}) == 0
    assert sample(metrics, "tb_stage_real_time_factor_count", {"stage": "transcription"}) == 0
    assert sample(metrics, "tb_dlq_records_total", {"topic": "audio.uploaded", "kind": "permanent"}) == 0
    assert sample(metrics, "tb_duplicate_events_total", {"consumer": "transcriber"}) == 0


async def test_publishes_count_for_the_event_source_and_dead_letters_by_kind() -> None:
    """The relay in one process publishes any service's outbox row: the counter follows the
    event's CloudEvents source, not the publishing process. DLQ records are counted by the
    topic they came from and the error kind, whoever sends them."""
    from faststream.kafka import TestKafkaBroker

    from shared.broker import create_broker
    from shared.settings import Settings

    metrics = ServiceMetrics("gateway")
    broker = create_broker(Settings(kafka_bootstrap_servers="127.0.0.1:9"), "gateway", metrics=metrics)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish({"x": 1}, "transcript.ready", headers={"ce_source": "transcriber"})
        await test_broker.publish({"x": 1}, "audio.uploaded", headers={"ce_source": "gateway"})
        await test_broker.publish({"x": 1}, "audio.uploaded.dlq",
                                  headers={"ce_source": "gateway", "dlq_error_kind": "permanent"})

    assert sample(metrics, "tb_events_published_total", {"source": "transcriber", "topic": "transcript.ready"}) == 1
    assert sample(metrics, "tb_events_published_total", {"source": "gateway", "topic": "audio.uploaded"}) == 1
    assert sample(metrics, "tb_events_published_total", {"source": "gateway", "topic": "audio.uploaded.dlq"}) is None
    assert sample(metrics, "tb_dlq_records_total", {"topic": "audio.uploaded", "kind": "permanent"}) == 1
