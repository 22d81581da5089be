"""Seed 001 scenario 2 end to end: when diarization fails (a configured backend that
cannot load) or never arrives (no diarizer running), the session still ends processed,
with speaker "Unknown", a warning, and notes."""

from __future__ import annotations

import time

import httpx
import pytest

from devtools.localbroker import free_port, wait_for_port
from tests.conftest import DATA
from tests.helpers import start_stack

DEMO = {"username": "demo@therapybridge.local", "password": "demo-password"}


def run_session(port: int, path) -> dict:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        token = client.post("/api/auth/token", data=DEMO).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        with open(path, "rb") as fh:
            response = client.post("/api/sessions/upload", headers=headers, files={"file": (path.name, fh)})
        assert response.status_code == 202, response.text
        sid = response.json()["id"]
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            detail = client.get(f"/api/sessions/{sid}", headers=headers).json()
            if detail["status"] in ("processed", "failed"):
                return detail
            time.sleep(0.5)
        return detail


@pytest.mark.parametrize(
    "case, services, extra, reason",
    [
        ("backend-unavailable", ["gateway", "transcriber", "diarizer", "joiner", "notes", "progress"],
         {"TB_DIARIZER_BACKEND": "pyannote", "TB_PYANNOTE_PIPELINE": "/nonexistent/pipeline"}, "pyannote"),
        ("diarizer-never-answers", ["gateway", "transcriber", "joiner", "notes", "progress"],
         {"TB_JOIN_DIARIZATION_DEADLINE_S": "5"}, "did not finish within 5 s"),
    ],
)
def test_session_degrades_and_ends_processed(service_env, case, services, extra, reason):
    port = free_port()
    env = {**service_env, **extra, "TB_GATEWAY_PORT": str(port), "TB_CREATE_DEMO_USER": "true"}
    stack = start_stack(env, services, f"degraded-{case}")
    try:
        wait_for_port("127.0.0.1", port, timeout_s=90)
        detail = run_session(port, DATA / "jfk.flac")
    finally:
        stack.stop_all()
    assert detail["status"] == "processed", (detail["status"], detail["error"])
    assert detail["diarized"] is False
    assert {seg["speaker"] for seg in detail["transcript_segments"]} == {"Unknown"}
    assert detail["warnings"] and reason in detail["warnings"][0]
    assert "Traceback" not in detail["warnings"][0]
    assert detail["extracted_notes"] is not None  # notes still run on the undiarized transcript
    assert detail["stages"]["diarization"]["state"] in ("failed", "skipped")
    assert "ask not what your country" in detail["transcript_text"].lower()
