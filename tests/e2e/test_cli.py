"""The `therapybridge` command-line client against the running stack (pipeline fixture),
run as a subprocess with TB_CLI_CONFIG pointing at a temporary credentials file.

Asserted: login stores a 0600 token file; `upload FILE --wait` prints progress and exits 0
with the session id on stdout; a bad file exits 1 with the server's reason on stderr;
`get --format srt/json`, `list`; `delete` then `get` exits 4; no login -> 3; no server -> 6;
bad arguments -> 2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.localbroker import free_port
from tests.conftest import DATA
from tests.e2e.conftest import DEMO

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cli(pipeline, tmp_path_factory):
    api, _, _ = pipeline
    config = tmp_path_factory.mktemp("cli") / "credentials.json"

    def run(*args: str, config_path: Path = config, timeout: float = 300) -> subprocess.CompletedProcess:
        env = {**os.environ, "TB_CLI_CONFIG": str(config_path), "COLUMNS": "120"}
        env.pop("TB_SERVER", None)
        return subprocess.run([sys.executable, "-m", "services.gateway.cli", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=timeout)

    run.api, run.config = api, config
    return run


def test_login_upload_wait_get_delete(cli):
    login = cli("login", "--server", cli.api.base_url, "--email", DEMO[0], "--password", DEMO[1])
    assert login.returncode == 0, login.stderr
    assert cli.config.exists() and (cli.config.stat().st_mode & 0o777) == 0o600
    assert json.loads(cli.config.read_text())["access_token"]

    up = cli("upload", str(DATA / "jfk.flac"), "--wait")
    assert up.returncode == 0, up.stderr
    session_id = up.stdout.strip().splitlines()[0]
    assert re.fullmatch(r"[0-9a-f-]{36}", session_id)
    progress = [line for line in up.stderr.splitlines() if re.match(r"\[\s*\d+%\]", line)]
    assert progress, up.stderr
    assert "[100%] processed" in up.stderr, up.stderr

    srt = cli("get", session_id, "--format", "srt")
    assert srt.returncode == 0, srt.stderr
    assert re.search(r"^1\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n", srt.stdout, re.M), srt.stdout[:300]
    assert "country" in srt.stdout.lower()

    detail = cli("get", session_id)
    assert detail.returncode == 0 and json.loads(detail.stdout)["id"] == session_id

    listed = cli("list")
    assert listed.returncode == 0 and session_id in listed.stdout

    watch = cli("watch", session_id)  # already finished: the final state at once
    assert watch.returncode == 0 and "processed" in watch.stderr

    deleted = cli("delete", session_id)
    assert deleted.returncode == 0, deleted.stderr
    gone = cli("get", session_id, "--format", "txt")
    assert gone.returncode == 4 and "not found" in gone.stderr


def test_bad_file_exits_nonzero_with_the_servers_reason(cli, tmp_path):
    login = cli("login", "--server", cli.api.base_url, "--email", DEMO[0], "--password", DEMO[1])
    assert login.returncode == 0
    fake = tmp_path / "session.wav"
    fake.write_text("this is not audio at all\n" * 10)
    result = cli("upload", str(fake), "--wait")
    assert result.returncode == 1
    assert "not a recognised audio format" in result.stderr, result.stderr
    assert result.stdout == ""
    exe = tmp_path / "tool.exe"
    exe.write_bytes(b"MZ" + b"\0" * 64)
    result = cli("upload", str(exe))
    assert result.returncode == 1 and ".exe" in result.stderr


def test_exit_codes_for_scripts(cli, tmp_path):
    fresh = tmp_path / "none.json"
    no_login = cli("list", "--server", cli.api.base_url, config_path=fresh)
    assert no_login.returncode == 3 and "login" in no_login.stderr

    wrong = cli("login", "--server", cli.api.base_url, "--email", DEMO[0], "--password", "wrong-password",
                config_path=fresh)
    assert wrong.returncode == 3 and "wrong email or password" in wrong.stderr

    no_server = cli("login", "--server", f"http://127.0.0.1:{free_port()}", "--email", "a@b.c", "--password", "x",
                    config_path=fresh)
    assert no_server.returncode == 6 and "cannot connect" in no_server.stderr

    assert cli("get", "not-a-uuid").returncode == 2
    assert cli("frobnicate").returncode == 2
    assert cli("upload", str(tmp_path / "missing.wav")).returncode == 2

    login = cli("login", "--server", cli.api.base_url, "--email", DEMO[0], "--password", DEMO[1])
    assert login.returncode == 0
    unknown = cli("get", "00000000-0000-0000-0000-000000000000")
    assert unknown.returncode == 4
    help_text = cli("--help")
    assert help_text.returncode == 0 and "exit codes" in help_text.stdout and "6  cannot connect" in help_text.stdout
