"""Every user error of the CLI ends in one line on stderr (or one JSON object with --json)
and a documented exit code, never a traceback. The server here is a small scripted HTTP
server on a real port (the behaviour of the real gateway is in tests/e2e/test_cli.py);
'network down' is a port nobody listens on, 'timeout' a socket that never answers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from devtools.localbroker import free_port
from services.gateway import cli

ROOT = Path(__file__).resolve().parents[2]
SID = "11111111-2222-3333-4444-555555555555"


class Scripted(BaseHTTPRequestHandler):
    routes: dict = {}
    seen: list = []

    def log_message(self, *args) -> None:
        pass

    def _answer(self) -> None:
        self.seen.append((self.command, self.path, dict(self.headers)))
        action = self.routes.get((self.command, self.path.split("?")[0]))
        if action is None:
            action = (404, {"Content-Type": "application/json"}, b'{"detail": "Not Found"}')
        if callable(action):
            return action(self)
        status, headers, body = action
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer


@pytest.fixture
def server():
    Scripted.routes, Scripted.seen = {}, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}", Scripted.routes
    httpd.shutdown()
    httpd.server_close()


def js(status: int, body) -> tuple:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


@pytest.fixture
def signed_in(tmp_path, monkeypatch, server):
    url, routes = server
    config = tmp_path / "credentials.json"
    config.write_text(json.dumps({"server": url, "access_token": "tok", "refresh_token": None}))
    monkeypatch.setenv("TB_CLI_CONFIG", str(config))
    monkeypatch.delenv("TB_SERVER", raising=False)
    monkeypatch.delenv("TB_PASSWORD", raising=False)
    monkeypatch.delenv("TB_EMAIL", raising=False)
    monkeypatch.setattr(cli.time, "sleep", lambda s: None)
    return url, routes


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    return exit_info.value.code, out, err


def test_usage_errors_exit_2_with_one_line(capsys, signed_in, tmp_path):
    for argv in (["frobnicate"], ["get", "not-a-uuid"], ["list", "--limit", "500"], ["list", "--timeout", "x"],
                 ["upload", str(tmp_path / "missing.wav")], ["upload", str(tmp_path)], []):
        code, out, err = run(capsys, *argv)
        assert code == 2, (argv, err)
        assert err.startswith("therapybridge: ") and len(err.strip().splitlines()) == 1, err
    code, _, err = run(capsys, "upload", str(tmp_path / "missing.wav"))
    assert "no such file" in err
    code, _, err = run(capsys, "get", SID, "-f", "../../etc")
    assert code == 2 and "not an export format" in err


def test_login_without_a_terminal_says_how(capsys, signed_in, monkeypatch):
    monkeypatch.setattr(sys, "stdin", open(os.devnull))
    code, _, err = run(capsys, "login", "--email", "a@b.c")
    assert code == 2 and "--password-stdin" in err and "TB_PASSWORD" in err
    code, _, err = run(capsys, "login", "--email", "a@b.c", "--password-stdin")
    assert code == 2 and "no password on stdin" in err
    code, _, err = run(capsys, "login", "--json")
    assert code == 2 and json.loads(err)["error"]["kind"] == "usage"


def test_login_reads_the_password_from_stdin(capsys, signed_in, monkeypatch, tmp_path):
    url, routes = signed_in
    sent = {}

    def token(handler):
        sent["body"] = handler.rfile.read(int(handler.headers["Content-Length"])).decode()
        js_body = json.dumps({"access_token": "new", "refresh_token": "r"}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(js_body)))
        handler.end_headers()
        handler.wfile.write(js_body)

    routes[("POST", "/api/auth/token")] = token
    stdin = tmp_path / "stdin"
    stdin.write_text("s3cret pass\n")
    monkeypatch.setattr(sys, "stdin", stdin.open())
    code, out, err = run(capsys, "login", "--server", url, "--email", "a@b.c", "--password-stdin", "--json")
    assert code == 0 and json.loads(out) == {"server": url, "email": "a@b.c", "logged_in": True}
    assert "password=s3cret+pass" in sent["body"]
    assert json.loads(Path(os.environ["TB_CLI_CONFIG"]).read_text())["access_token"] == "new"


def test_expired_token_exits_3_and_suggests_login(capsys, signed_in):
    _, routes = signed_in
    routes[("GET", "/api/sessions")] = js(401, {"detail": "token expired"})
    code, _, err = run(capsys, "list")
    assert code == 3 and "token expired" in err and "therapybridge login" in err
    code, _, err = run(capsys, "list", "--json")
    assert code == 3 and json.loads(err)["error"] == {
        "code": 3, "kind": "auth", "http_status": 401,
        "message": "not signed in, or the sign-in expired (token expired): run `therapybridge login`"}


def test_not_logged_in_and_unreadable_credentials_exit_3(capsys, signed_in):
    Path(os.environ["TB_CLI_CONFIG"]).write_text("{not json")
    code, _, err = run(capsys, "status", SID)
    assert code == 3 and "login" in err


def test_server_errors_show_the_servers_reason(capsys, signed_in):
    _, routes = signed_in
    routes[("GET", "/api/sessions")] = js(503, {"detail": "database unavailable"})
    code, _, err = run(capsys, "list")
    assert code == 7 and "database unavailable" in err and "503" in err
    routes[("GET", "/api/sessions")] = (502, {"Content-Type": "text/html"},
                                        b"<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>")
    code, _, err = run(capsys, "list")
    assert code == 7 and "502 Bad Gateway nginx" in err and "<h1>" not in err
    routes[("GET", f"/api/sessions/{SID}/export/soap")] = js(409, {"detail": "no notes for this session yet"})
    code, _, err = run(capsys, "get", SID, "-f", "soap")
    assert code == 1 and "rejected (409): no notes for this session yet" in err
    routes[("GET", "/api/sessions")] = js(422, {"detail": [{"loc": ["query", "limit"], "msg": "too big"}]})
    code, _, err = run(capsys, "list", "--json")
    assert code == 1 and json.loads(err)["error"]["message"] == "rejected (422): limit: too big"
    routes[("GET", "/api/sessions")] = (200, {"Content-Type": "text/plain"}, b"hello")
    code, _, err = run(capsys, "list")
    assert code == 7 and "not JSON" in err


def test_not_found_exits_4(capsys, signed_in):
    _, routes = signed_in
    routes[("GET", f"/api/sessions/{SID}")] = js(404, {"detail": "session not found"})
    code, _, err = run(capsys, "status", SID)
    assert code == 4 and "session not found" in err


def test_unknown_export_format_lists_what_the_server_offers(capsys, signed_in):
    _, routes = signed_in
    routes[("GET", "/openapi.json")] = js(200, {"paths": {f"/api/sessions/{{session_id}}/export/{f}": {}
                                                          for f in ("srt", "pdf", "txt")}})
    code, _, err = run(capsys, "get", SID, "-f", "xyz")
    assert code == 2 and "the server has no 'xyz' export (404 Not Found); it offers: pdf, srt, txt" in err


def test_exports_are_saved_under_the_servers_file_name(capsys, signed_in, tmp_path, monkeypatch):
    _, routes = signed_in
    routes[("GET", f"/api/sessions/{SID}/export/pdf")] = (
        200, {"Content-Type": "application/pdf", "Content-Disposition": 'attachment; filename="alex-2026-11-30-pdf.pdf"'},
        b"%PDF-1.7 fake")
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "get", SID, "-f", "pdf")
    saved = tmp_path / "alex-2026-11-30-pdf.pdf"
    assert code == 0 and saved.read_bytes() == b"%PDF-1.7 fake" and (saved.stat().st_mode & 0o777) == 0o600
    assert "saved pdf export to alex-2026-11-30-pdf.pdf (13 bytes)" in err and out == ""
    code, out, _ = run(capsys, "get", SID, "-f", "pdf", "-o", str(tmp_path / "mine.pdf"), "--json")
    assert code == 0 and json.loads(out)["path"] == str(tmp_path / "mine.pdf") and json.loads(out)["bytes"] == 13
    sub = tmp_path / "out"
    sub.mkdir()
    assert run(capsys, "get", SID, "-f", "pdf", "-o", str(sub))[0] == 0 and (sub / "alex-2026-11-30-pdf.pdf").exists()
    code, _, err = run(capsys, "get", SID, "-f", "pdf", "-o", str(tmp_path / "nodir" / "x.pdf"))
    assert code == 2 and "cannot write" in err


def test_network_down_refused_and_timeout_exit_6(capsys, signed_in):
    dead = f"http://127.0.0.1:{free_port()}"
    code, _, err = run(capsys, "list", "--server", dead)
    assert code == 6 and "connection refused" in err
    code, _, err = run(capsys, "watch", SID, "--server", dead, "--json")
    assert code == 6 and json.loads(err)["error"]["kind"] == "network"
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)  # accepts, never answers
    try:
        code, _, err = run(capsys, "list", "--server", f"http://127.0.0.1:{silent.getsockname()[1]}", "--timeout", "0.5")
    finally:
        silent.close()
    assert code == 6 and "no answer" in err
    code, _, err = run(capsys, "list", "--server", "localhost:8000")
    assert code == 2 and "bad server URL" in err


def test_dns_failure_message():
    error = cli.network_error(httpx.ConnectError("[Errno -2] Name or service not known"), "http://gateway.invalid:8000")
    assert error.code == 6 and error.message.endswith("unknown host 'gateway.invalid' (DNS lookup failed)")


def _sse(events: list[str], close: bool = True):
    def answer(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        for event in events:
            handler.wfile.write(event.encode())
            handler.wfile.flush()
        handler.close_connection = True
    return answer


def test_watch_resumes_a_dropped_stream_and_fails_cleanly_when_it_stays_down(capsys, signed_in):
    _, routes = signed_in
    path = ("GET", f"/api/sessions/{SID}/status/stream")
    first = 'id: 3\nevent: progress\ndata: {"status": "transcribing", "progress": 40, "stages": {"notes": {"state": "pending"}, "transcription": {"state": "running"}}}\n\n'
    routes[path] = _sse([first])  # drops after one event
    code, _, err = run(capsys, "watch", SID)
    assert code == 6 and "lost the progress stream" in err and f"watch {SID}" in err
    assert "[ 40%] transcribing [transcription running → notes pending]" in err
    resumed = []

    def answer(handler):
        resumed.append(handler.headers.get("Last-Event-ID"))
        body = first if len(resumed) == 1 else 'id: 9\nevent: complete\ndata: {"status": "processed", "progress": 100}\n\n'
        _sse([body])(handler)

    routes[path] = answer
    code, _, err = run(capsys, "watch", SID)
    assert code == 0 and "[100%] processed" in err and resumed == [None, "3"]
    resumed.clear()
    code, out, _ = run(capsys, "watch", SID, "--json")
    assert code == 0 and [json.loads(line)["status"] for line in out.splitlines()] == ["transcribing", "processed"]
    routes[path] = _sse(['event: complete\ndata: {"status": "failed", "progress": 100, "error": "bad audio"}\n\n'])
    code, _, err = run(capsys, "watch", SID)
    assert code == 5 and "processing failed: bad audio" in err


def test_unexpected_errors_are_one_line_unless_debug(capsys, signed_in, monkeypatch):
    def boom(args):
        raise RuntimeError("something odd")

    monkeypatch.setattr(cli, "cmd_list", boom)
    code, _, err = run(capsys, "list")
    assert code == 1 and err.strip() == ("therapybridge: unexpected error: RuntimeError: something odd "
                                         "(run with --debug for details)")
    with pytest.raises(SystemExit):
        cli.main(["list", "--debug"])
    assert "Traceback" in capsys.readouterr().err

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_list", interrupted)
    code, _, err = run(capsys, "list")
    assert code == 130 and "interrupted" in err


def test_ctrl_c_while_watching_exits_130_without_a_traceback(signed_in):
    _, routes = signed_in

    def endless(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        try:
            for _ in range(600):
                handler.wfile.write(b": ping\n\n")
                handler.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass

    routes[("GET", f"/api/sessions/{SID}/status/stream")] = endless
    # The CLI as a terminal starts it: SIGINT at its default. A runner started in the
    # background (`cmd &`, nohup) ignores SIGINT, and children inherit an ignored signal.
    proc = subprocess.Popen([sys.executable, "-m", "services.gateway.cli", "watch", SID], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not any(h[1].endswith("/status/stream") for h in Scripted.seen) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err and "interrupted" in err, (proc.returncode, err)


def test_ctrl_c_that_breaks_the_stream_on_its_way_out_is_still_an_interruption():
    """Ctrl-C mid-read makes closing the response fail (httpx.ReadError whose context is
    the KeyboardInterrupt); watching must end as interrupted (130), not as a network fault (6)."""
    client = cli.Client.__new__(cli.Client)
    client.server = "http://127.0.0.1:9"

    def broken_on_exit(session_id, state):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise httpx.ReadError("connection closed while reading")
        yield  # a generator, like the real one

    client._stream_once = broken_on_exit
    with pytest.raises(KeyboardInterrupt):
        list(client.stream_status("s1"))
    plain = cli.Client.__new__(cli.Client)
    plain.server = "http://127.0.0.1:9"

    def refused(session_id, state):
        raise httpx.ConnectError("connection refused")
        yield

    plain._stream_once = refused
    with pytest.raises(cli.CliError) as err:
        list(plain.stream_status("s1"))
    assert err.value.code == cli.EXIT_CONNECT
