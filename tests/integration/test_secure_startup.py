"""Services refuse to start on an unsafe secret, with a clear message and a non-zero exit
(issue 11, item 1), and the local stack's service logs are 0600 in a 0700 folder (item 7).
Real service processes, started the way `make run` starts them (devtools.stack.Stack)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.stack import Stack

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TB_JWT_SECRET", "JWT_SECRET", "TB_ENV", "ENV")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


@pytest.mark.parametrize(("secret", "reason"), [
    (None, "TB_JWT_SECRET is not set"),
    ("change-me-in-production", "known placeholder"),
    ("too-short-secret", "shorter than 32 bytes"),
])
def test_gateway_refuses_to_start(tmp_path, secret, reason):
    env = _env(**({"TB_JWT_SECRET": secret} if secret else {}))
    # cwd outside the repository: no .env file may supply a secret.
    out = subprocess.run([sys.executable, "-m", "services.gateway.main"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "gateway: refusing to start" in out.stderr and reason in out.stderr
    assert "Traceback" not in out.stderr
    if secret:
        assert secret not in out.stderr


def test_worker_refuses_a_placeholder_and_its_log_is_private(tmp_path):
    log_dir = tmp_path / "logs"
    stack = Stack(env={"TB_JWT_SECRET": "REPLACE_ME-jwt-secret"}, log_dir=log_dir, echo=False)
    proc = stack.start_service("joiner")
    assert proc.wait(timeout=120) != 0
    for thread in stack._threads:
        thread.join(timeout=10)
    log_file = log_dir / "joiner.log"
    text = log_file.read_text()
    assert "refusing to start" in text and "TB_JWT_SECRET is a known placeholder" in text
    assert stat.S_IMODE(os.stat(log_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(log_dir).st_mode) == 0o700
