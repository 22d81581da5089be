"""One running stack (every service as its own process) shared by the end-to-end tests."""

from __future__ import annotations

import time

import httpx
import pytest

from devtools.stack import available_services
from devtools.localbroker import free_port, wait_for_port
from tests.helpers import start_stack
from tests.otlp_receiver import OtlpReceiver

DEMO = ("demo@therapybridge.local", "demo-password")


class Api:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.client = httpx.Client(base_url=base_url, timeout=60)
        self.token = None

    def login(self, email: str = DEMO[0], password: str = DEMO[1]) -> dict:
        response = self.client.post("/api/auth/token", data={"username": email, "password": password})
        response.raise_for_status()
        self.token = response.json()["access_token"]
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def upload(self, path, **form) -> httpx.Response:
        with open(path, "rb") as fh:
            return self.client.post("/api/sessions/upload", headers=self.headers,
                                    files={"file": (path.name, fh, "application/octet-stream")}, data=form)

    def get(self, session_id: str) -> dict:
        response = self.client.get(f"/api/sessions/{session_id}", headers=self.headers)
        response.raise_for_status()
        return response.json()

    def wait(self, session_id: str, until, timeout_s: float = 240.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            detail = self.get(session_id)
            if until(detail) or time.monotonic() > deadline:
                return detail
            time.sleep(0.5)


@pytest.fixture(scope="package")
def otlp():
    """The OTLP/HTTP receiver every service of the e2e stack exports its spans to."""
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="package")
def pipeline(service_env, otlp):
    """The whole stack, shared by the e2e package and stopped after it, so the
    integration tests that start their own service processes do not share consumer
    groups with it. Every service exports its spans to ``otlp`` (batched every 200 ms)."""
    port = free_port()
    env = {**service_env, "TB_GATEWAY_PORT": str(port), "TB_CREATE_DEMO_USER": "true",
           "TB_JOIN_DIARIZATION_DEADLINE_S": "120", "TB_OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
           "OTEL_BSP_SCHEDULE_DELAY": "200",
           # The e2e suites sign the demo therapist in from 127.0.0.1 dozens of times a minute
           # (every page test, both sizes); the limiter itself is tested in tests/integration.
           "TB_LOGIN_RATE_PER_MINUTE": "600", "TB_LOGIN_ACCOUNT_RATE_PER_MINUTE": "600"}
    stack = start_stack(env, available_services(), "e2e")
    try:
        wait_for_port("127.0.0.1", port, timeout_s=90)
        api = Api(f"http://127.0.0.1:{port}")
        for _ in range(60):
            if api.client.get("/readyz").status_code == 200:
                break
            time.sleep(0.5)
        api.login()
        yield api, stack, env
    finally:
        stack.stop_all()
