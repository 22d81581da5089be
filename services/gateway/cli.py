"""therapybridge: command-line client for the TherapyBridge gateway.

Commands::

    therapybridge login [--email E] [--password-stdin]      (or $TB_EMAIL / $TB_PASSWORD)
    therapybridge upload FILE [--patient P] [--wait] [--num-speakers N] [--language L] [--session-date D]
    therapybridge list [--patient P] [--status S] [--limit N] [--utc]
    therapybridge status ID [--utc]                          (one look: stages, duration, risk flags)
    therapybridge watch ID                                   (follow progress until processed or failed)
    therapybridge get ID [-f FORMAT] [-o PATH|-]             (no -f: the session as JSON on stdout)
    therapybridge delete ID
    therapybridge logout
    therapybridge dlq list [--topic T]                       (operator: talks to the broker directly)
    therapybridge dlq show REF [--payload]                   (REF: <topic>.dlq:PARTITION:OFFSET)
    therapybridge dlq replay REF... | --all [--topic T]

Every command takes ``--json`` (machine-readable output on stdout with stable keys; an error
is one JSON object on stderr: ``{"error": {"code", "kind", "message", "http_status"}}``),
``--server URL`` and ``--debug`` (show the traceback of an unexpected error).

The token from ``login`` is kept in ``~/.config/therapybridge/credentials.json`` (mode 0600),
or in the file named by ``$TB_CLI_CONFIG``. ``--server`` (or ``$TB_SERVER``) overrides the
stored server; the default is http://localhost:8000.

Output: results (session ids, JSON, ``-o -`` exports) go to stdout; progress and error
messages go to stderr. Times are shown in the user's time zone (``--utc`` for UTC), and
every time offset (durations, flag times) floors to the second, as on the web page and in
the SOAP/DAP notes.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
import time
import traceback
from email.message import Message
from pathlib import Path
from typing import Any, Iterator
from uuid import UUID

import httpx

from services.gateway import cli_format as fmt

EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_AUTH, EXIT_NOT_FOUND, EXIT_FAILED, EXIT_CONNECT, EXIT_SERVER = range(8)
EXIT_INTERRUPTED, EXIT_PIPE = 130, 141
DEFAULT_SERVER = "http://localhost:8000"
DEFAULT_TIMEOUT_S = 60.0
# What the gateway serves today, plus the ones being added (pdf, birp, ehr). `get -f` passes
# any format through: the server decides, and its reason is shown for one it does not know.
KNOWN_FORMATS = ("txt", "json", "srt", "vtt", "rttm", "notes.json", "soap", "dap", "docx", "pdf", "birp", "ehr")
FORMAT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
EXIT_CODES_HELP = """exit codes:
  0  ok (upload --wait / watch: the session was processed)
  1  the server rejected the request (its reason is printed), or another error
  2  usage error (bad arguments, missing or unreadable file, unknown export format)
  3  not authenticated, or the sign-in expired (run `therapybridge login`)
  4  not found (no such session or patient, or not yours)
  5  processing failed (upload --wait / watch)
  6  cannot connect to the server (refused, unknown host, timed out, connection dropped)
  7  the server failed (HTTP 5xx; try again later)
  130  interrupted (Ctrl-C)

--json: output on stdout as JSON; errors as {"error": {"code", "kind", "message",
"http_status"}} on stderr, with the exit code above.
credentials: $TB_CLI_CONFIG or ~/.config/therapybridge/credentials.json
"""
KINDS = {EXIT_REJECTED: "rejected", EXIT_USAGE: "usage", EXIT_AUTH: "auth", EXIT_NOT_FOUND: "not_found",
         EXIT_FAILED: "failed", EXIT_CONNECT: "network", EXIT_SERVER: "server", EXIT_INTERRUPTED: "interrupted"}


class CliError(Exception):
    def __init__(self, code: int, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.http_status = code, message, http_status

    def as_json(self) -> str:
        return json.dumps({"error": {"code": self.code, "kind": KINDS.get(self.code, "error"),
                                     "message": self.message, "http_status": self.http_status}})


def err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(data: Any) -> None:
    """One JSON document on stdout (--json)."""
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str), flush=True)


def info(args: argparse.Namespace, message: str) -> None:
    """A human message on stderr; silent with --json (scripts read stdout and the exit code)."""
    if not args.json:
        err(message)


# --- credentials --------------------------------------------------------------------------
def config_path() -> Path:
    override = os.environ.get("TB_CLI_CONFIG")
    if override:
        return Path(override).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "therapybridge" / "credentials.json"


def load_config() -> dict[str, Any]:
    """The stored sign-in; {} when there is none or it cannot be read (then: log in again)."""
    try:
        data = json.loads(config_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_config(data: dict[str, Any]) -> None:
    path = config_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
        os.replace(tmp, path)
    except OSError as exc:
        raise CliError(EXIT_USAGE, f"cannot store the sign-in in {path}: {exc.strerror or exc}") from exc


# --- HTTP ---------------------------------------------------------------------------------
def _detail(response: httpx.Response) -> str:
    """The server's reason: FastAPI's ``detail`` (validation errors joined), else the body's
    first line (a proxy's HTML page is reduced to its text)."""
    try:
        body = response.json()
    except ValueError:
        text = re.sub(r"<[^>]+>", " ", response.text)
        text = " ".join(text.split())[:300]
        return text or response.reason_phrase or f"HTTP {response.status_code}"
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):  # FastAPI validation errors
        return "; ".join(f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}"
                         if isinstance(d, dict) else str(d) for d in detail)
    return str(detail) if detail else (response.reason_phrase or f"HTTP {response.status_code}")


def _reraise_interrupt(exc: Exception) -> None:
    """Ctrl-C in the middle of reading a stream makes closing the response fail too, and
    that error replaces the KeyboardInterrupt: it is still an interruption, not a network
    fault."""
    if isinstance(exc.__context__, KeyboardInterrupt):
        raise KeyboardInterrupt from None


def network_error(exc: Exception, server: str) -> CliError:
    """One line that says what went wrong with the connection, never a traceback."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return CliError(EXIT_USAGE, f"bad server URL {server!r}: use http://HOST:PORT or https://HOST")
    if isinstance(exc, httpx.TimeoutException):
        return CliError(EXIT_CONNECT, f"no answer from {server} in time ({type(exc).__name__}); "
                                      "the server may be overloaded: try again, or raise --timeout")
    lowered = text.lower()
    if any(s in lowered for s in ("name or service not known", "nodename nor servname", "temporary failure in name",
                                  "no address associated", "getaddrinfo failed", "name does not resolve")):
        host = httpx.URL(server).host if server.startswith(("http://", "https://")) else server
        return CliError(EXIT_CONNECT, f"cannot connect to {server}: unknown host {host!r} (DNS lookup failed)")
    if "refused" in lowered:
        return CliError(EXIT_CONNECT, f"cannot connect to {server}: connection refused (is the gateway running?)")
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return CliError(EXIT_CONNECT, f"the connection to {server} dropped: {text}")
    return CliError(EXIT_CONNECT, f"cannot connect to {server}: {text}")


def check(response: httpx.Response, ok: tuple[int, ...]) -> httpx.Response:
    if response.status_code in ok:
        return response
    status, detail = response.status_code, _detail(response)
    if status == 401:
        raise CliError(EXIT_AUTH, f"not signed in, or the sign-in expired ({detail}): run `therapybridge login`",
                       status)
    if status == 404:
        raise CliError(EXIT_NOT_FOUND, f"not found: {detail}", status)
    if status >= 500:
        raise CliError(EXIT_SERVER, f"the server failed ({status}): {detail}; try again later", status)
    if status == 429 and response.headers.get("Retry-After"):
        detail += f" (retry after {response.headers['Retry-After']} s)"
    raise CliError(EXIT_REJECTED, f"rejected ({status}): {detail}", status)


class Client:
    def __init__(self, args: argparse.Namespace, require_auth: bool = True) -> None:
        self.config = load_config()
        self.server = (args.server or os.environ.get("TB_SERVER") or self.config.get("server")
                       or DEFAULT_SERVER).rstrip("/")
        if require_auth and not self.config.get("access_token"):
            raise CliError(EXIT_AUTH, "not logged in: run `therapybridge login` first")
        self.timeout = args.timeout
        try:
            self.http = httpx.Client(base_url=self.server, timeout=httpx.Timeout(self.timeout, connect=min(10.0, self.timeout)))
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError, TypeError) as exc:
            raise network_error(httpx.InvalidURL(str(exc)), self.server) from exc

    def close(self) -> None:
        self.http.close()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.get('access_token', '')}"}

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; connection problems become CliError (network)."""
        try:
            return self.http.request(method, path, **kwargs)
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            raise network_error(exc, self.server) from exc

    def _refresh(self) -> bool:
        token = self.config.get("refresh_token")
        if not token:
            return False
        try:
            response = self.http.post("/api/auth/refresh", json={"refresh_token": token})
            body = response.json() if response.status_code == 200 else None
        except (httpx.TransportError, ValueError):
            return False
        if not isinstance(body, dict) or "access_token" not in body:
            return False
        self.config.update(access_token=body["access_token"], refresh_token=body.get("refresh_token", token))
        save_config(self.config)
        return True

    def request(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any) -> httpx.Response:
        """An authenticated request; a 401 refreshes the token once and retries."""
        response = self.send(method, path, headers=self.headers, **kwargs)
        if response.status_code == 401 and self._refresh():
            response = self.send(method, path, headers=self.headers, **kwargs)
        return check(response, ok)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise CliError(EXIT_SERVER, f"the server answered {path} with something that is not JSON") from exc

    def stream_status(self, session_id: str) -> Iterator[dict]:
        """Follow the SSE stream, resuming with Last-Event-ID when it drops. Yields each
        progress/complete message; ends after `complete`."""
        state: dict[str, Any] = {"last_id": None, "done": False}
        failures = 0
        while not state["done"]:
            try:
                before = state["last_id"]
                for message in self._stream_once(session_id, state):
                    yield message
                if state["last_id"] != before:  # the stream moved on before it dropped
                    failures = 0
            except (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                _reraise_interrupt(exc)
                if failures >= 5:
                    raise network_error(exc, self.server) from exc
            except httpx.TransportError as exc:
                _reraise_interrupt(exc)
                if state["last_id"] is None or failures >= 5:  # refused at once: say so; mid-stream: retry
                    raise network_error(exc, self.server) from exc
            if state["done"]:
                return
            failures += 1  # the stream ended without `complete` (restart, proxy timeout): resume
            if failures > 5:
                raise CliError(EXIT_CONNECT, f"lost the progress stream from {self.server} "
                                             f"(run `therapybridge watch {session_id}` again)")
            time.sleep(min(5.0, 0.5 * 2 ** failures))

    def _stream_once(self, session_id: str, state: dict) -> Iterator[dict]:
        headers = {**self.headers, "Accept": "text/event-stream"}
        if state["last_id"]:
            headers["Last-Event-ID"] = state["last_id"]
        with self.http.stream("GET", f"/api/sessions/{session_id}/status/stream", headers=headers,
                              timeout=httpx.Timeout(self.timeout, connect=min(10.0, self.timeout),
                                                    read=max(90.0, self.timeout))) as response:
            if response.status_code == 401 and self._refresh():
                return
            if response.status_code != 200:
                response.read()
                check(response, (200,))
            for event, message, ident in sse_events(response.iter_lines()):
                if ident:
                    state["last_id"] = ident
                if event in ("progress", "complete") and isinstance(message, dict):
                    state["done"] = event == "complete" or message.get("status") in fmt.TERMINAL
                    yield message
                    if state["done"]:
                        return


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, Any, str | None]]:
    """(event, parsed data or None, id) for each server-sent event; comments skipped."""
    event, data, ident = "message", [], None
    for line in lines:
        if line == "":
            if data:
                try:
                    parsed = json.loads("\n".join(data))
                except ValueError:
                    parsed = None
                yield event, parsed, ident
            event, data, ident = "message", [], None
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
            elif field == "id":
                ident = value


# --- progress display ------------------------------------------------------------------------
def progress_line(message: dict) -> str:
    """``[ 45%] transcribing - Transcribing (about 30 s left) [upload done → ...]``."""
    status = message.get("status")
    line = f"[{message.get('progress', 0):>3}%] {status}"
    if message.get("message"):
        line += f" - {message['message']}"
    left = fmt.eta(message.get("estimated_time_remaining")) if status not in fmt.TERMINAL else ""
    if left:
        line += f" ({left})"
    stages = fmt.pipeline_line(message.get("stages"))
    return line + (f" [{stages}]" if stages else "")


def _follow_rich(client: Client, session_id: str) -> dict:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn

    last: dict = {}
    with Progress(TextColumn("[bold]{task.description:<16}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TextColumn("{task.fields[info]}"), console=Console(stderr=True), transient=False) as progress:
        overall = progress.add_task("overall", total=100, info="")
        tasks: dict[str, Any] = {}
        for message in client.stream_status(session_id):
            last = message
            left = fmt.eta(message.get("estimated_time_remaining")) if message.get("status") not in fmt.TERMINAL else ""
            progress.update(overall, completed=message.get("progress", 0),
                            info=" · ".join(x for x in (message.get("status", ""), left) if x))
            for name, stage in fmt.ordered_stages(message.get("stages")):
                if name not in tasks:
                    tasks[name] = progress.add_task(f"  {fmt.stage_label(name)}", total=100, info="")
                done = stage.get("state") in ("done", "skipped")
                progress.update(tasks[name], completed=100 if done else 100 * (stage.get("fraction") or 0),
                                info=stage.get("state", ""))
    return last


def follow(client: Client, session_id: str, args: argparse.Namespace, quiet: bool = False) -> dict:
    """Show progress until the session completes; returns the last status message. With
    --json each message is one JSON line on stdout."""
    last: dict = {}
    if args.json:
        for message in client.stream_status(session_id):
            last = message
            print(json.dumps(message, ensure_ascii=False), flush=True)
    elif sys.stderr.isatty() and not quiet:
        last = _follow_rich(client, session_id)
    else:
        shown = None
        for message in client.stream_status(session_id):
            last = message
            line = progress_line(message)
            if not quiet and line != shown:
                err(line)
                shown = line
    for warning in last.get("warnings") or []:
        info(args, f"warning: {warning}")
    return last


def finish(last: dict, session_id: str, args: argparse.Namespace) -> int:
    if last.get("status") == "failed":
        reason = last.get("error") or last.get("message") or "unknown error"
        if args.json:
            raise CliError(EXIT_FAILED, f"processing failed: {reason}")
        err(f"processing failed: {reason}")
        return EXIT_FAILED
    info(args, f"session {session_id} {last.get('status', 'done')}")
    return EXIT_OK


# --- commands ---------------------------------------------------------------------------------
def _interactive() -> bool:
    return bool(sys.stdin) and sys.stdin.isatty()


def read_credentials(args: argparse.Namespace) -> tuple[str, str]:
    """Email and password from the flags, stdin or the environment; prompts only on a
    terminal, and otherwise says how to pass them."""
    password = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n") if sys.stdin else ""
        if not password:
            raise CliError(EXIT_USAGE, "--password-stdin: no password on stdin")
    password = password or args.password or os.environ.get("TB_PASSWORD")
    email = args.email or os.environ.get("TB_EMAIL")
    if not email or not password:
        if not _interactive() or args.password_stdin:
            missing = " and ".join(x for x, v in (("--email (or $TB_EMAIL)", email),
                                                  ("--password-stdin (or $TB_PASSWORD)", password)) if not v)
            raise CliError(EXIT_USAGE, f"no terminal to ask for the sign-in: pass {missing}, e.g. "
                                       "`printf '%s\\n' \"$PW\" | therapybridge login --email E --password-stdin`")
        try:
            email = email or input("Email: ").strip()
            password = password or getpass.getpass("Password: ")
        except EOFError as exc:
            raise CliError(EXIT_USAGE, "no sign-in given (end of input)") from exc
    return email, password


def cmd_login(args: argparse.Namespace) -> int:
    email, password = read_credentials(args)
    client = Client(args, require_auth=False)
    response = client.send("POST", "/api/auth/token", data={"username": email, "password": password})
    if response.status_code in (400, 401):
        raise CliError(EXIT_AUTH, f"login failed: {_detail(response)}", response.status_code)
    check(response, (200,))
    try:
        body = response.json()
        token = body["access_token"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CliError(EXIT_SERVER, f"{client.server} did not answer like a TherapyBridge gateway") from exc
    save_config({"server": client.server, "email": email, "access_token": token,
                 "refresh_token": body.get("refresh_token")})
    if args.json:
        emit({"server": client.server, "email": email, "logged_in": True})
    else:
        err(f"logged in to {client.server} as {email}")
    return EXIT_OK


def cmd_logout(args: argparse.Namespace) -> int:
    config, notified = load_config(), False
    if config.get("access_token"):  # end the sign-in on the server too (best effort: offline still forgets)
        client = Client(args, require_auth=False)
        try:
            notified = client.http.post("/api/auth/logout", headers=client.headers).status_code < 400
        except (httpx.TransportError, httpx.InvalidURL):
            info(args, "could not reach the server; the stored tokens are forgotten but stay valid until they expire")
        finally:
            client.close()
    try:
        config_path().unlink(missing_ok=True)
    except OSError as exc:
        raise CliError(EXIT_USAGE, f"cannot remove {config_path()}: {exc.strerror or exc}") from exc
    if args.json:
        emit({"logged_out": True, "server_notified": notified})
    else:
        err("logged out")
    return EXIT_OK


def resolve_patient(client: Client, patient: str) -> str:
    try:
        return str(UUID(patient))
    except ValueError:
        pass
    patients = client.json("GET", "/api/patients")
    matches = [p for p in patients if str(p.get("display_name", "")).lower() == patient.lower()
               or p.get("external_ref") == patient]
    if not matches:
        raise CliError(EXIT_NOT_FOUND, f"not found: no patient named {patient!r}")
    if len(matches) > 1:
        raise CliError(EXIT_USAGE, f"several patients are named {patient!r}: pass the patient id")
    return matches[0]["id"]


def patient_names(client: Client) -> dict[str, str]:
    """patient id -> display name (best effort: the list still shows without names)."""
    try:
        return {str(p["id"]): str(p.get("display_name") or "") for p in client.json("GET", "/api/patients")}
    except (CliError, KeyError, TypeError):
        return {}


def _upload_form(client: Client, args: argparse.Namespace) -> dict[str, str]:
    form: dict[str, str] = {}
    if args.patient:
        form["patient_id"] = resolve_patient(client, args.patient)
    if args.num_speakers:
        form["num_speakers"] = str(args.num_speakers)
    if args.language:
        form["language"] = args.language
    if args.session_date:
        form["session_date"] = args.session_date
    return form


def cmd_upload(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise CliError(EXIT_USAGE, f"no such file: {path}" if not path.exists() else f"not a file: {path}")
    client = Client(args)
    form = _upload_form(client, args)
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise CliError(EXIT_USAGE, f"cannot read {path}: {exc.strerror or exc}") from exc
    with fh:
        response = client.request("POST", "/api/sessions/upload", ok=(202,), data=form,
                                  files={"file": (path.name, fh, "application/octet-stream")},
                                  timeout=httpx.Timeout(max(600.0, args.timeout), connect=10.0))
    body = response.json()
    session_id = body["id"]
    if args.json:
        print(json.dumps(body, ensure_ascii=False), flush=True)
    else:
        err(f"uploaded {path.name} ({fmt.clock(body.get('duration_s'))} of audio) as session {session_id}")
        print(session_id, flush=True)
    if not args.wait:
        return EXIT_OK
    return finish(follow(client, session_id, args, quiet=args.quiet), session_id, args)


def cmd_watch(args: argparse.Namespace) -> int:
    client = Client(args)
    return finish(follow(client, args.id, args, quiet=args.quiet), args.id, args)


def cmd_list(args: argparse.Namespace) -> int:
    client = Client(args)
    params: dict[str, Any] = {"limit": args.limit}
    if args.patient:
        params["patient_id"] = resolve_patient(client, args.patient)
    if args.status:
        params["status"] = args.status
    items = client.json("GET", "/api/sessions", params=params).get("items", [])
    names = patient_names(client) if any(s.get("patient_id") and not s.get("patient_name") for s in items) else {}
    for s in items:
        s["patient_name"] = s.get("patient_name") or names.get(str(s.get("patient_id"))) or None
    if args.json:
        emit(items)
        return EXIT_OK
    headers = list(fmt.LIST_HEADERS)
    headers[2] = f"UPLOADED ({fmt.zone_name(args.utc)})"
    print(fmt.table(headers, fmt.session_rows(items, names, utc=args.utc)), flush=True)
    if not items:
        err("no sessions" + (" match" if args.patient or args.status else " yet"))
    return EXIT_OK


def status_view(d: dict, patient: str | None, utc: bool) -> list[str]:
    """The human view of one session: what it is, where it stands, its risk flags."""
    lines = [f"session   {d.get('id')}", f"file      {d.get('audio_filename') or '-'}",
             f"patient   {patient or '-'}", f"date      {fmt.session_day(d.get('session_date'), utc)}",
             f"uploaded  {fmt.local_time(d.get('created_at'), utc)} ({fmt.zone_name(utc)})",
             f"duration  {fmt.clock(d.get('duration_seconds'))}",
             f"status    {fmt.status_text(d.get('status'), d.get('progress'))}"
             + (f" - {d['message']}" if d.get("message") else "")]
    if d.get("error"):
        lines.append(f"error     {d['error']}")
    if d.get("stages"):
        lines.append(f"stages    {fmt.pipeline_line(d['stages'])}")
    speakers = [f"{s.get('display_name') or s.get('label')} ({s.get('role') or 'role unknown'}, "
                f"{fmt.clock(s.get('talk_time_s'))})" for s in d.get("speakers") or []]
    if speakers:
        lines.append(f"speakers  {', '.join(speakers)}")
    lines += [f"warning   {w}" for w in d.get("warnings") or []]
    flags = d.get("risk_flags") or []
    lines.append(f"risk      {len(flags)} flag(s)" + (": review first" if flags else ""))
    lines += [f"  {fmt.flag_line(f)}" for f in flags]
    return lines


def cmd_status(args: argparse.Namespace) -> int:
    client = Client(args)
    detail = client.json("GET", f"/api/sessions/{args.id}")
    names = patient_names(client) if detail.get("patient_id") else {}
    if args.json:
        emit({"id": detail.get("id"), "status": detail.get("status"), "progress": detail.get("progress"),
              "message": detail.get("message"), "error": detail.get("error"),
              "stages": [{"name": n, **s} for n, s in fmt.ordered_stages(detail.get("stages"))],
              "duration_seconds": detail.get("duration_seconds"), "patient_id": detail.get("patient_id"),
              "patient_name": names.get(str(detail.get("patient_id"))), "warnings": detail.get("warnings", []),
              "risk_flags": [{**f, "time": fmt.clock(f.get("start"))} for f in detail.get("risk_flags") or []]})
        return EXIT_OK
    print("\n".join(status_view(detail, names.get(str(detail.get("patient_id"))), args.utc)), flush=True)
    return EXIT_OK


def attachment_filename(header: str | None) -> str | None:
    """The file name from a Content-Disposition header, reduced to a safe base name."""
    if not header:
        return None
    message = Message()
    message["content-disposition"] = header
    name = message.get_filename()
    if not name:
        return None
    name = re.sub(r"[\x00-\x1f\x7f]", "", name.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    return None if name in ("", ".", "..") else name


def _unknown_format(client: Client, args: argparse.Namespace, error: CliError) -> CliError:
    """A 404 from the export URL with FastAPI's generic 'Not Found' is a format the server
    does not serve; list the ones it does (from its OpenAPI description)."""
    offered: list[str] = []
    try:
        paths = client.send("GET", "/openapi.json").json().get("paths", {})
        offered = sorted(p.rsplit("/", 1)[-1] for p in paths if p.startswith("/api/sessions/{session_id}/export/")
                         and "{" not in p.rsplit("/", 1)[-1])
    except (CliError, ValueError, AttributeError):
        pass
    tail = f"; it offers: {', '.join(offered)}" if offered else f" (known formats: {', '.join(KNOWN_FORMATS)})"
    return CliError(EXIT_USAGE, f"the server has no {args.format!r} export ({error.http_status} Not Found){tail}",
                    error.http_status)


def _export(client: Client, args: argparse.Namespace) -> httpx.Response:
    try:
        return client.request("GET", f"/api/sessions/{args.id}/export/{args.format}")
    except CliError as exc:
        if exc.code == EXIT_NOT_FOUND and exc.message == "not found: Not Found":
            raise _unknown_format(client, args, exc) from exc
        raise


def write_output(body: bytes, target: Path) -> None:
    """Write an export next to its final name, then move it there (0600: exports hold PHI)."""
    tmp = target.with_name(f".{target.name}.part")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(body)
        os.replace(tmp, target)
    except OSError as exc:
        if tmp.parent.is_dir():
            tmp.unlink(missing_ok=True)
        raise CliError(EXIT_USAGE, f"cannot write {target}: {exc.strerror or exc}") from exc


def cmd_get(args: argparse.Namespace) -> int:
    if args.format is None:  # the session itself
        emit(Client(args).json("GET", f"/api/sessions/{args.id}"))
        return EXIT_OK
    if not FORMAT_RE.match(args.format):
        raise CliError(EXIT_USAGE, f"not an export format: {args.format!r} (known: {', '.join(KNOWN_FORMATS)})")
    response = _export(Client(args), args)
    if args.output == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(response.content)
        sys.stdout.buffer.flush()
        return EXIT_OK
    name = attachment_filename(response.headers.get("content-disposition")) or f"session-{args.id}.{args.format}"
    target = Path(args.output or name).expanduser()
    if target.is_dir():
        target = target / name
    write_output(response.content, target)
    if args.json:
        emit({"id": args.id, "format": args.format, "path": str(target), "bytes": len(response.content),
              "content_type": response.headers.get("content-type")})
    else:
        err(f"saved {args.format} export to {target} ({len(response.content)} bytes)")
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    Client(args).request("DELETE", f"/api/sessions/{args.id}", ok=(204,))
    if args.json:
        emit({"id": args.id, "deleted": True})
    else:
        err(f"deleted session {args.id}")
    return EXIT_OK


def _session_id(value: str) -> str:
    try:
        return str(UUID(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a session id: {value!r}") from exc


def _bounded(low: int, high: int):
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"{number} is not between {low} and {high}")
        return number
    return parse


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not 0 < number <= 3600:
        raise argparse.ArgumentTypeError("the timeout must be between 0 and 3600 seconds")
    return number


# --- dead-letter topics (operator) ---------------------------------------------------------------
def _bootstrap(args: argparse.Namespace) -> str:
    bootstrap = args.bootstrap or os.environ.get("TB_KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        raise CliError(EXIT_USAGE, "no broker: pass --bootstrap HOST:PORT or set TB_KAFKA_BOOTSTRAP_SERVERS")
    return bootstrap


def _dlq_records(args: argparse.Namespace) -> list:
    from aiokafka.errors import KafkaError

    from services.gateway import dlq

    bootstrap = _bootstrap(args)
    try:
        topics = [f"{args.topic.removesuffix('.dlq')}.dlq"] if getattr(args, "topic", None) else dlq.run(dlq.dlq_topics(bootstrap))
        return dlq.run(dlq.read_dlq(bootstrap, topics))
    except (OSError, KafkaError) as exc:
        raise CliError(EXIT_CONNECT, f"cannot reach the broker at {bootstrap}: {type(exc).__name__}") from exc


def cmd_dlq_list(args: argparse.Namespace) -> int:
    summaries = [r.summary() for r in _dlq_records(args)]
    if args.json:
        emit(summaries)
        return EXIT_OK
    print(fmt.table(("REF", "SERVICE", "KIND", "TYPE", "KEY", "ERROR"),
                    [[s["ref"], s["service"] or "-", s["error_kind"] or "-", s["type"] or "-", s["key"], s["error"] or ""]
                     for s in summaries]))
    err(f"{len(summaries)} dead-lettered record(s)")
    return EXIT_OK


def _find(records: list, refs: list[str]) -> list:
    by_ref = {r.ref: r for r in records}
    missing = [ref for ref in refs if ref not in by_ref]
    if missing:
        raise CliError(EXIT_NOT_FOUND, f"no such DLQ record: {', '.join(missing)}")
    return [by_ref[ref] for ref in refs]


def cmd_dlq_show(args: argparse.Namespace) -> int:
    from services.gateway.dlq import parse_ref

    try:
        args.topic = parse_ref(args.ref)[0]
    except ValueError as exc:
        raise CliError(EXIT_USAGE, f"not a DLQ record reference: {args.ref!r} (expected <topic>.dlq:PARTITION:OFFSET)") from exc
    (record,) = _find(_dlq_records(args), [args.ref])
    shown = {**record.summary(), "headers": record.headers}
    if args.payload:  # may hold transcript text: only on request, never by default
        shown["payload"] = record.value.decode(errors="replace")
    emit(shown)
    return EXIT_OK


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    from services.gateway import dlq

    if bool(args.refs) == bool(args.all):
        raise CliError(EXIT_USAGE, "name the records to replay, or pass --all")
    records = _dlq_records(args)
    chosen = records if args.all else _find(records, args.refs)
    replayed = list(dlq.run(dlq.replay(_bootstrap(args), chosen)))
    if args.json:
        emit({"replayed": replayed})
    else:
        for ref in replayed:
            print(ref)
        err(f"replayed {len(chosen)} record(s) to their original topics")
    return EXIT_OK


# --- arguments --------------------------------------------------------------------------------
class Parser(argparse.ArgumentParser):
    """Usage errors raise CliError(2), so they print like every other error (and as JSON
    with --json) instead of argparse's own exit."""

    def error(self, message: str):
        raise CliError(EXIT_USAGE, f"{message} (see `{self.prog} --help`)")


def _common(p: argparse.ArgumentParser, top: bool = False) -> None:
    default = None if top else argparse.SUPPRESS
    p.add_argument("--server", default=default, help=f"gateway URL (default: the stored one, $TB_SERVER or {DEFAULT_SERVER})")
    p.add_argument("--json", action="store_true", default=False if top else argparse.SUPPRESS,
                   help="machine-readable output on stdout; errors as JSON on stderr")
    p.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT_S if top else argparse.SUPPRESS,
                   metavar="S", help=f"seconds to wait for the server (default {DEFAULT_TIMEOUT_S:.0f})")
    p.add_argument("--debug", action="store_true", default=False if top else argparse.SUPPRESS,
                   help="print the traceback of an unexpected error")


def _add_dlq(sub) -> None:
    dlq_parser = sub.add_parser("dlq", help="dead-letter topics: list, show, replay (talks to the broker)",
                                description="Operator tool over the <topic>.dlq records.")
    dlq_sub = dlq_parser.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")

    def add(name: str, func, help_text: str) -> argparse.ArgumentParser:
        p = dlq_sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--bootstrap", help="broker HOST:PORT (default: $TB_KAFKA_BOOTSTRAP_SERVERS)")
        _common(p)
        p.set_defaults(func=func)
        return p

    p = add("list", cmd_dlq_list, "list dead-lettered records (no payloads)")
    p.add_argument("--topic", help="one original topic (e.g. audio.uploaded); default: every DLQ topic")
    p = add("show", cmd_dlq_show, "one record's headers and error as JSON (payload only with --payload)")
    p.add_argument("ref", help="<topic>.dlq:PARTITION:OFFSET, as listed")
    p.add_argument("--payload", action="store_true", help="also print the payload (may contain PHI)")
    p = add("replay", cmd_dlq_replay, "publish records again to their original topic")
    p.add_argument("refs", nargs="*", help="<topic>.dlq:PARTITION:OFFSET, as listed")
    p.add_argument("--all", action="store_true", help="every record (of --topic, if given)")
    p.add_argument("--topic", help="with --all: one original topic")


def _add_session_commands(add) -> None:
    p = add("upload", cmd_upload, "upload a recording; prints the session id on stdout")
    p.add_argument("file", help="audio file (wav, mp3, m4a, flac, ogg, webm, mp4)")
    p.add_argument("--patient", help="patient id or display name")
    p.add_argument("--wait", action="store_true", help="follow progress until processed (exit 5 if it fails)")
    p.add_argument("--num-speakers", type=_bounded(1, 20), metavar="N", help="number of speakers, if known (1-20)")
    p.add_argument("--language", help="language code, e.g. en")
    p.add_argument("--session-date", help="date (YYYY-MM-DD) or ISO date-time of the session")
    p.add_argument("--quiet", action="store_true", help="with --wait: no progress output")

    p = add("list", cmd_list, "list your sessions (newest first) with a header row")
    p.add_argument("--patient", help="patient id or display name")
    p.add_argument("--status", help="only sessions with this status (e.g. processed, failed)")
    p.add_argument("--limit", type=_bounded(1, 100), default=20, metavar="N", help="at most N (1-100, default 20)")
    p.add_argument("--utc", action="store_true", help="times in UTC instead of your time zone")

    p = add("status", cmd_status, "one session at a glance: status, stages in order, duration, risk flags")
    p.add_argument("id", type=_session_id)
    p.add_argument("--utc", action="store_true", help="times in UTC instead of your time zone")

    p = add("get", cmd_get, "download an export (saved under the server's file name), or print the session as JSON")
    p.add_argument("id", type=_session_id)
    p.add_argument("--format", "-f", metavar="FORMAT",
                   help=f"export format: {', '.join(KNOWN_FORMATS)} (pdf, birp and ehr when the server offers them); "
                        "without it: the session as JSON on stdout")
    p.add_argument("--output", "-o", metavar="PATH", help="file or directory to save to; - for stdout")

    p = add("watch", cmd_watch, "follow a session's progress until it completes")
    p.add_argument("id", type=_session_id)
    p.add_argument("--quiet", action="store_true", help="no progress output, just the exit code")

    p = add("delete", cmd_delete, "delete a session, its audio, transcript and notes")
    p.add_argument("id", type=_session_id)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="therapybridge", description="Command-line client for the TherapyBridge gateway.",
                    epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EXIT_CODES_HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        _common(p)
        p.set_defaults(func=func)
        return p

    p = add("login", cmd_login, "sign in and store the token")
    p.add_argument("--email", help="therapist email (default: $TB_EMAIL, or asked on a terminal)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from one line of stdin (scripts)")
    p.add_argument("--password", help=argparse.SUPPRESS)  # kept for old scripts; visible in `ps`, prefer stdin
    add("logout", cmd_logout, "end the sign-in on the server and forget the stored tokens")
    _add_session_commands(add)
    _add_dlq(sub)
    return parser


def run(argv: list[str] | None, debug: bool) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (Exception, KeyboardInterrupt):
        if debug or args.debug:
            traceback.print_exc()
        raise


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    as_json, debug = "--json" in argv, "--debug" in argv
    try:
        code = run(argv, debug)
    except CliError as exc:
        err(exc.as_json() if as_json else f"therapybridge: {exc.message}")
        code = exc.code
    except KeyboardInterrupt:
        error = CliError(EXIT_INTERRUPTED, "interrupted")
        err(error.as_json() if as_json else "\ntherapybridge: interrupted")
        code = EXIT_INTERRUPTED
    except BrokenPipeError:  # `therapybridge list | head -1`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_PIPE
    except Exception as exc:  # the catch-all: one line, no stack (unless --debug)
        message = f"unexpected error: {type(exc).__name__}: {exc}" + ("" if debug else " (run with --debug for details)")
        err(CliError(EXIT_REJECTED, message).as_json() if as_json else f"therapybridge: {message}")
        code = EXIT_REJECTED
    sys.exit(code)


if __name__ == "__main__":
    main()
