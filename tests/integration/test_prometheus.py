"""A real Prometheus against the project's alert rules and dashboard.

- `promtool check rules` and `promtool test rules` (deploy/prometheus/alerts_test.yml),
  with every alert covered by a case where it fires and one where it stays quiet;
- every service started the way `make run` starts it (own metrics port each, a file_sd
  targets file), one session processed, and a real Prometheus (Debian's `prometheus`
  package) scraping them: every target is up, every PromQL expression of the Grafana
  dashboard returns data, the metric families operators need have samples, and published
  events are counted for the service whose event they are.

The binaries come from `make system-deps`; where they are missing the tests that need
them are skipped and say so."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from devtools.localbroker import free_ports, wait_for_port
from devtools.observe import local_config, start_prometheus, wait_until_ready
from devtools.stack import available_services, metrics_env, scrape_targets, write_targets
from tests.helpers import ARTIFACTS, Stack

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "therapybridge.json"
SAMPLE = ROOT / "samples" / "two_speakers.wav"
DEMO = ("demo@therapybridge.local", "demo-password")
# Grafana's variables, replaced the way Grafana would for a "last hour" view.
GRAFANA_VARIABLES = {"$__range": "1h", "$__rate_interval": "1m", "$__interval": "15s"}
# The producers of the events of one session (DESIGN.md section 3).
PRODUCERS = {"audio.uploaded": "gateway", "transcript.ready": "transcriber", "diarization.ready": "diarizer",
             "transcript.merged": "joiner", "notes.ready": "notes", "session.status": "progress"}
FAMILIES = (
    "tb_http_requests_total", "tb_http_request_duration_seconds_bucket", "tb_stage_duration_seconds_bucket",
    "tb_stage_real_time_factor_bucket", "tb_stage_failures_total", "tb_dlq_records_total", "tb_consumer_lag",
    "tb_sessions_total", "tb_sessions_by_status", "tb_outbox_backlog", "tb_outbox_oldest_age_seconds",
    "tb_llm_tokens_total", "tb_llm_cost_usd_total", "tb_circuit_breaker_open", "tb_events_published_total",
)

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool is not installed (Debian package `prometheus`; `make system-deps`)")
needs_prometheus = pytest.mark.skipif(shutil.which("prometheus") is None,
                                      reason="prometheus is not installed (Debian package `prometheus`; `make system-deps`)")


def alert_names() -> set[str]:
    rules = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())
    return {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    cases = [c for t in yaml.safe_load((PROM_DIR / "alerts_test.yml").read_text())["tests"] for c in t["alert_rule_test"]]
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert alert_names(), "no alerts parsed"
    assert alert_names() - fires == set(), "alerts without a test where they fire"
    assert alert_names() - quiet == set(), "alerts without a test where they stay quiet"
    assert fires | quiet <= alert_names(), "tests for alerts that do not exist"


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    result = subprocess.run(["promtool", "check", "rules", "alerts.yml"], cwd=PROM_DIR, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in result.stdout


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    result = subprocess.run(["promtool", "test", "rules", "alerts_test.yml"], cwd=PROM_DIR, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def dashboard_expressions() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    out = []
    for panel in panels:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            out.append((panel["title"], expr))
    return out


class Prometheus:
    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=30)

    def query(self, expr: str) -> list[dict]:
        body = self.client.get("/api/v1/query", params={"query": expr}).json()
        assert body["status"] == "success", f"{expr}: {body}"
        return body["data"]["result"]

    def has_data(self, expr: str) -> bool:
        """A panel shows data when the query returns at least one number (NaN is no data)."""
        return any(math.isfinite(float(r["value"][1])) for r in self.query(expr))

    def wait_for(self, expr: str, timeout_s: float = 90.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.has_data(expr):
                return True
            time.sleep(1)
        return False


@pytest.fixture(scope="module")
def observed_stack(service_env, tmp_path_factory):
    """Every service with its own metrics port and a file_sd targets file (what `make run`
    does), and Prometheus scraping them every second (what `make observe` does)."""
    work = tmp_path_factory.mktemp("prometheus")
    services = available_services()
    workers = [name for name in services if name != "gateway"]
    # One batch of distinct ports: Prometheus binds its port before the workers start, and a
    # worker whose metrics port it took fails while Prometheus answers that target itself.
    gateway_port, prom_port, *worker_ports = free_ports(2 + len(workers))
    ports = dict(zip(workers, worker_ports))
    targets = scrape_targets(f"127.0.0.1:{gateway_port}", ports)
    targets_file = write_targets(targets, work / "targets.json")
    env = {**service_env, "TB_GATEWAY_PORT": str(gateway_port), "TB_CREATE_DEMO_USER": "true",
           "TB_METRICS_POLL_INTERVAL_S": "1", "TB_RISK_SEMANTIC": "false", "TB_JOIN_DIARIZATION_DEADLINE_S": "120"}
    log_dir = ARTIFACTS / "prometheus"
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(env=env, log_dir=log_dir, echo=False)
    prometheus = start_prometheus(local_config(targets_file, scrape_interval="1s"), work, prom_port,
                                  log_path=log_dir / "prometheus.log")
    try:
        for name in services:
            stack.start_service(name, extra_env=metrics_env(ports, name))
        wait_until_ready(f"http://127.0.0.1:{prom_port}", prometheus)
        wait_for_port("127.0.0.1", gateway_port, timeout_s=90)
        client = Prometheus(f"http://127.0.0.1:{prom_port}")
        # Scraped before the session, so every counter has a value from before it: rates
        # and increases over the session are then real numbers.
        all_up = client.wait_for(f"count(up == 1) == {len(targets)}", timeout_s=300)  # workers load models first
        status = process_sample(f"http://127.0.0.1:{gateway_port}") if all_up else "not started: targets down"
        yield client, targets, status
    finally:
        stack.stop_all()
        prometheus.terminate()
        prometheus.wait(timeout=15)


def process_sample(base_url: str) -> str:
    with httpx.Client(base_url=base_url, timeout=60) as client:
        for _ in range(120):
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.5)
        token = client.post("/api/auth/token", data={"username": DEMO[0], "password": DEMO[1]})
        token.raise_for_status()
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        with open(SAMPLE, "rb") as fh:
            upload = client.post("/api/sessions/upload", headers=headers, files={"file": (SAMPLE.name, fh, "audio/wav")})
        upload.raise_for_status()
        session_id = upload.json()["id"]
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            detail = client.get(f"/api/sessions/{session_id}", headers=headers).json()
            if detail["status"] in ("processed", "failed"):
                return detail["status"]
            time.sleep(1)
        return detail["status"]


@needs_prometheus
def test_dashboard_panels_return_data_after_one_session(observed_stack) -> None:
    prometheus, targets, status = observed_stack
    assert prometheus.wait_for(f"count(up == 1) == {len(targets)}"), \
        f"not every target answers: {[(r['metric'], r['value'][1]) for r in prometheus.query('up')]}"
    assert status == "processed"
    assert prometheus.wait_for('sum(tb_sessions_total{status="processed"}) >= 1')
    assert prometheus.wait_for('max(tb_sessions_by_status{status="processed"}) >= 1')

    expressions = dashboard_expressions()
    assert len(expressions) >= 25
    no_data = [(title, expr) for title, expr in expressions if not prometheus.wait_for(expr, timeout_s=20)]
    assert not no_data, f"dashboard panels without data: {no_data}"

    missing = [name for name in FAMILIES if not prometheus.query(f"count({name})")]
    assert not missing, f"metric families without samples: {missing}"
    services = {r["metric"]["service"] for r in prometheus.query("up == 1")}
    assert services == set(available_services())


@needs_prometheus
def test_publishes_count_for_the_service_whose_event_it_is(observed_stack) -> None:
    prometheus, _, status = observed_stack
    assert status == "processed"
    assert prometheus.wait_for('sum(tb_events_published_total{topic="notes.ready"}) >= 1')
    published = prometheus.query("sum by (source, topic) (tb_events_published_total)")
    sources = {(r["metric"]["topic"], r["metric"]["source"]) for r in published if float(r["value"][1]) > 0}
    for topic, producer in PRODUCERS.items():
        assert (topic, producer) in sources, f"{topic} not counted for {producer}: {sorted(sources)}"
    wrong = {(t, s) for t, s in sources if t in PRODUCERS and s != PRODUCERS[t]}
    assert not wrong, f"events counted for a service that did not produce them: {wrong}"


@needs_prometheus
def test_http_metrics_use_route_templates(observed_stack) -> None:
    prometheus, _, status = observed_stack
    assert status == "processed"
    assert prometheus.wait_for('sum(tb_http_requests_total{route="/api/sessions/upload"}) >= 1')
    routes = {r["metric"]["route"] for r in prometheus.query("sum by (route) (tb_http_requests_total)")}
    assert "/api/sessions/{session_id}" in routes and "/api/sessions/upload" in routes
    uuid = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-")
    assert not [r for r in routes if uuid.search(r)], f"raw paths in route labels: {routes}"
