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

    def run(*args: str, config_path: Path = config, timeout: float = 300, input: str | None = None,
            tz: str = "UTC", cwd: Path = ROOT) -> subprocess.CompletedProcess:
        """The CLI as a script runs it: no terminal (stdin is /dev/null unless ``input``)."""
        env = {**os.environ, "TB_CLI_CONFIG": str(config_path), "COLUMNS": "120", "TZ": tz, "PYTHONPATH": str(ROOT)}
        for name in ("TB_SERVER", "TB_EMAIL", "TB_PASSWORD"):
            env.pop(name, None)
        result = subprocess.run([sys.executable, "-m", "services.gateway.cli", *args], cwd=cwd, env=env,
                                capture_output=True, text=True, timeout=timeout, input=input,
                                stdin=subprocess.DEVNULL if input is None else None)
        assert "Traceback" not in result.stderr, result.stderr
        return result

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

    srt = cli("get", session_id, "--format", "srt", "-o", "-")
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
    gone = cli("get", session_id, "--format", "txt", "-o", "-")
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


# --- issue 15: the CLI a therapist and a clinic's IT person use ----------------------------------
RISKY = [
    ("therapist", "How have things been since we last met?"),
    ("client", "It has been a hard week. Some nights I feel completely hopeless about everything."),
    ("therapist", "Thank you for telling me. Have you had any thoughts of hurting yourself?"),
    ("client", "Sometimes I think everyone would be better off without me."),
    ("therapist", "I am glad you told me. Let us make a safety plan together this week."),
]


# Under load the join may give up waiting for the speakers (diarization skipped): still in order.
DONE_PIPELINE = r"transcription done ‖ diarization (done|skipped) → merge done → notes done"


@pytest.fixture(scope="module")
def risky(cli, tmp_path_factory):
    """A processed session of a generated dialogue with risk content, for a named patient,
    uploaded through the CLI with --wait (no terminal: progress as lines on stderr)."""
    from tests.audio_gen import generate_dialogue

    login = cli("login", "--server", cli.api.base_url, "--email", DEMO[0], "--password-stdin", input=DEMO[1] + "\n")
    assert login.returncode == 0, login.stderr
    name = f"Alex Example {os.getpid()}"
    created = cli.api.client.post("/api/patients", json={"display_name": name}, headers=cli.api.login())
    assert created.status_code == 201, created.text
    audio = generate_dialogue(RISKY, out_dir=tmp_path_factory.mktemp("risky"))
    up = cli("upload", str(audio.wav), "--patient", name, "--session-date", "2026-11-02", "--wait", timeout=1200)
    assert up.returncode == 0, up.stderr
    session_id = up.stdout.strip()
    detail = cli.api.get(session_id)
    assert detail["status"] == "processed" and detail["risk_flags"], detail["status"]
    return {"id": session_id, "patient": name, "upload": up, "detail": detail}


def test_login_without_a_terminal_never_crashes(cli, tmp_path):
    fresh = tmp_path / "creds.json"
    bare = cli("login", "--server", cli.api.base_url, config_path=fresh)
    assert bare.returncode == 2 and "--password-stdin" in bare.stderr and "TB_PASSWORD" in bare.stderr
    piped = cli("login", "--server", cli.api.base_url, "--email", DEMO[0], "--password-stdin", "--json",
                config_path=fresh, input=DEMO[1] + "\n")
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout) == {"server": cli.api.base_url, "email": DEMO[0], "logged_in": True}
    wrong = cli("login", "--email", DEMO[0], "--password-stdin", "--json", config_path=fresh, input="nope\n")
    assert wrong.returncode == 3 and json.loads(wrong.stderr)["error"]["kind"] == "auth"


def test_a_bad_or_expired_token_says_log_in_again(cli, tmp_path):
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps({"server": cli.api.base_url, "access_token": "not-a-token", "refresh_token": "nope"}))
    listed = cli("list", config_path=stale)
    assert listed.returncode == 3 and "therapybridge login" in listed.stderr, listed.stderr
    as_json = cli("status", "00000000-0000-0000-0000-000000000000", "--json", config_path=stale)
    assert as_json.returncode == 3 and json.loads(as_json.stderr)["error"]["http_status"] == 401


def test_network_down_on_every_kind_of_command(cli, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    stored = tmp_path / "dead.json"
    stored.write_text(json.dumps({"server": dead, "access_token": "x"}))
    for args in (["list"], ["status", "00000000-0000-0000-0000-000000000000"], ["watch", "00000000-0000-0000-0000-000000000000"],
                 ["get", "00000000-0000-0000-0000-000000000000", "-f", "srt"], ["delete", "00000000-0000-0000-0000-000000000000"]):
        result = cli(*args, config_path=stored)
        assert result.returncode == 6 and "connection refused" in result.stderr, (args, result.stderr)
    logout = cli("logout", "--json", config_path=stored)  # offline logout still forgets the tokens
    assert logout.returncode == 0 and json.loads(logout.stdout) == {"logged_out": True, "server_notified": False}
    assert not stored.exists()


def test_progress_stages_are_printed_in_pipeline_order(risky):
    lines = [line for line in risky["upload"].stderr.splitlines() if line.startswith("[") and " [" in line]
    assert lines, risky["upload"].stderr
    for line in lines:
        stages = line.rsplit(" [", 1)[1]
        names = [part.split()[0] for part in re.split(r" → | ‖ ", stages.rstrip("]"))]
        order = ["upload", "transcription", "diarization", "merge", "notes"]
        assert names == sorted(names, key=order.index), line
    assert re.search(DONE_PIPELINE, lines[-1]), lines[-1]


def test_list_has_a_header_local_times_durations_and_patient_names(cli, risky):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from services.gateway.cli_format import clock

    listed = cli("list", tz="Asia/Kolkata")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["ID", "SESSION", "DATE", "UPLOADED", "(IST)", "PATIENT", "DURATION", "STATUS", "FILE"]
    row = next(r for r in rows if r.startswith(risky["id"]))
    created = datetime.fromisoformat(risky["detail"]["created_at"]).astimezone(ZoneInfo("Asia/Kolkata"))
    assert created.strftime("%Y-%m-%d %H:%M") in row and "2026-11-02" in row
    assert risky["patient"] in row and clock(risky["detail"]["duration_seconds"]) in row and "processed" in row
    utc = cli("list", "--utc")
    assert "UPLOADED (UTC)" in utc.stdout.splitlines()[0]
    as_json = cli("list", "--json")
    item = next(i for i in json.loads(as_json.stdout) if i["id"] == risky["id"])
    assert item["patient_name"] == risky["patient"] and item["duration_seconds"] == risky["detail"]["duration_seconds"]


def test_flag_times_are_the_same_in_status_and_the_soap_note(cli, risky):
    from services.gateway.cli_format import clock

    status = cli("status", risky["id"])
    assert status.returncode == 0, status.stderr
    assert re.search(r"^stages    " + DONE_PIPELINE, status.stdout, re.M), status.stdout
    soap = cli("get", risky["id"], "-f", "soap", "-o", "-")
    dap = cli("get", risky["id"], "-f", "dap", "-o", "-")
    for flag in risky["detail"]["risk_flags"]:
        shown = clock(flag["start"])
        assert re.search(rf"^  {shown}  {flag['severity']}", status.stdout, re.M), (shown, status.stdout)
        assert f"at {shown}" in soap.stdout and f"at {shown}" in dap.stdout, (shown, soap.stdout)
    as_json = json.loads(cli("status", risky["id"], "--json").stdout)
    assert [s["name"] for s in as_json["stages"]] == ["transcription", "diarization", "join", "notes"]
    assert [f["time"] for f in as_json["risk_flags"]] == [clock(f["start"]) for f in risky["detail"]["risk_flags"]]
    assert as_json["patient_name"] == risky["patient"]


def _offered(cli) -> list[str]:
    paths = cli.api.client.get("/openapi.json").json()["paths"]
    prefix = "/api/sessions/{session_id}/export/"
    return sorted(p[len(prefix):] for p in paths if p.startswith(prefix) and "{" not in p[len(prefix):])


def _same_document(a: bytes, b: bytes) -> bool:
    """Byte-equal, or for a zip container (docx) the same members: each build stamps its time."""
    if a == b:
        return True
    if not (a[:2] == b[:2] == b"PK"):
        return len(a) == len(b) and a[:4] == b[:4]  # e.g. a PDF with its creation time inside
    import io
    import zipfile

    za, zb = zipfile.ZipFile(io.BytesIO(a)), zipfile.ZipFile(io.BytesIO(b))
    return za.namelist() == zb.namelist() and all(za.read(n) == zb.read(n) for n in za.namelist())


def test_every_export_the_server_offers_is_saved_under_its_name(cli, risky, tmp_path):
    offered, saved_as = _offered(cli), {}
    assert {"txt", "json", "srt", "vtt", "rttm", "soap", "dap", "docx"} <= set(offered)
    for fmt in offered:
        direct = cli.api.client.get(f"/api/sessions/{risky['id']}/export/{fmt}", headers=cli.api.headers)
        got = cli("get", risky["id"], "-f", fmt, "-o", str(tmp_path), "--json")
        assert got.returncode == 0, (fmt, got.stderr)
        saved = saved_as[fmt] = Path(json.loads(got.stdout)["path"])
        assert direct.status_code == 200 and saved.name in direct.headers["content-disposition"], fmt
        assert saved.stat().st_size > 0 and _same_document(saved.read_bytes(), direct.content), fmt
    assert saved_as["docx"].read_bytes()[:2] == b"PK" and len(set(saved_as.values())) == len(offered)
    (tmp_path / "cwd").mkdir()
    plain = cli("get", risky["id"], "-f", "txt", cwd=tmp_path / "cwd")  # no -o: the server's name, in the cwd
    assert plain.returncode == 0 and (tmp_path / "cwd" / saved_as["txt"].name).exists(), plain.stderr


def test_an_unknown_format_gets_the_servers_answer_and_the_list(cli, risky):
    unknown = cli("get", risky["id"], "-f", "xyz")
    assert unknown.returncode == 2 and "the server has no 'xyz' export" in unknown.stderr
    assert f"it offers: {', '.join(_offered(cli))}" in unknown.stderr
    help_text = cli("get", "--help")
    assert all(f in help_text.stdout for f in ("docx", "pdf", "birp", "ehr", "rttm"))


def test_json_on_watch_and_delete(cli, risky):
    watched = cli("watch", risky["id"], "--json")
    assert watched.returncode == 0 and json.loads(watched.stdout.splitlines()[-1])["status"] == "processed"
    session = json.loads(cli("get", risky["id"], "--json").stdout)
    assert session["id"] == risky["id"]
    deleted = cli("delete", risky["id"], "--json")
    assert deleted.returncode == 0 and json.loads(deleted.stdout) == {"id": risky["id"], "deleted": True}
    again = cli("status", risky["id"], "--json")
    assert again.returncode == 4 and json.loads(again.stderr)["error"]["kind"] == "not_found"
