"""therapybridge: command-line client for the TherapyBridge gateway.

Commands::

    therapybridge login [--server URL] [--email E] [--password P]
    therapybridge upload FILE [--patient P] [--wait] [--num-speakers N] [--language L] [--session-date D]
    therapybridge list [--patient P] [--status S] [--limit N] [--json]
    therapybridge get ID [--format json|txt|srt|vtt|rttm|notes.json|soap|dap]
    therapybridge watch ID
    therapybridge delete ID
    therapybridge logout
    therapybridge dlq list [--topic T] [--json]         (operator: talks to the broker directly)
    therapybridge dlq show REF [--payload]              (REF: <topic>.dlq:PARTITION:OFFSET)
    therapybridge dlq replay REF... | --all [--topic T]

The token from ``login`` is kept in ``~/.config/therapybridge/credentials.json`` (mode 0600),
or in the file named by ``$TB_CLI_CONFIG``. ``--server`` (or ``$TB_SERVER``) overrides the
stored server; the default is http://localhost:8000.

Output: results (session ids, exports, JSON) go to stdout; progress and error messages go
to stderr, so ``therapybridge get ID --format srt > out.srt`` works.

Exit codes (stable, for scripts):

    0  ok (for upload --wait and watch: the session was processed)
    1  the server rejected the request (its ``detail`` is printed on stderr)
    2  usage error (bad arguments, unreadable file)
    3  not authenticated (run ``therapybridge login``)
    4  not found (no such session or patient, or not yours)
    5  processing failed (upload --wait / watch ended in status failed)
    6  cannot connect to the server
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator
from uuid import UUID

import httpx

EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_AUTH, EXIT_NOT_FOUND, EXIT_FAILED, EXIT_CONNECT = 0, 1, 2, 3, 4, 5, 6
DEFAULT_SERVER = "http://localhost:8000"
FORMATS = ("json", "txt", "srt", "vtt", "rttm", "notes.json", "soap", "dap")
EXIT_CODES_HELP = """exit codes:
  0  ok (upload --wait / watch: the session was processed)
  1  the server rejected the request (its reason is printed on stderr)
  2  usage error
  3  not authenticated (run `therapybridge login`)
  4  not found (no such session or patient, or not yours)
  5  processing failed
  6  cannot connect to the server

credentials: $TB_CLI_CONFIG or ~/.config/therapybridge/credentials.json
"""


class CliError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- credentials --------------------------------------------------------------------------
def config_path() -> Path:
    override = os.environ.get("TB_CLI_CONFIG")
    if override:
        return Path(override).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "therapybridge" / "credentials.json"


def load_config() -> dict[str, Any]:
    path = config_path()
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}


def save_config(data: dict[str, Any]) -> None:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, path)


# --- HTTP ---------------------------------------------------------------------------------
def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or f"HTTP {response.status_code}"
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):  # FastAPI validation errors
        return "; ".join(f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail)
    return str(detail) if detail else f"HTTP {response.status_code}"


class Client:
    def __init__(self, server: str | None, require_auth: bool = True) -> None:
        self.config = load_config()
        self.server = (server or os.environ.get("TB_SERVER") or self.config.get("server") or DEFAULT_SERVER).rstrip("/")
        if require_auth and not self.config.get("access_token"):
            raise CliError(EXIT_AUTH, "not logged in: run `therapybridge login` first")
        self.http = httpx.Client(base_url=self.server, timeout=httpx.Timeout(60.0, connect=10.0))

    def close(self) -> None:
        self.http.close()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.get('access_token', '')}"}

    def _refresh(self) -> bool:
        token = self.config.get("refresh_token")
        if not token:
            return False
        try:
            response = self.http.post("/api/auth/refresh", json={"refresh_token": token})
        except httpx.TransportError:
            return False
        if response.status_code != 200:
            return False
        body = response.json()
        self.config.update(access_token=body["access_token"], refresh_token=body.get("refresh_token", token))
        save_config(self.config)
        return True

    def request(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any) -> httpx.Response:
        for attempt in (0, 1):
            try:
                response = self.http.request(method, path, headers=self.headers, **kwargs)
            except httpx.TransportError as exc:
                raise CliError(EXIT_CONNECT, f"cannot connect to {self.server}: {exc}") from exc
            if response.status_code == 401 and attempt == 0 and self._refresh():
                continue
            return check(response, ok)
        raise AssertionError("unreachable")

    def stream_status(self, session_id: str) -> Iterator[tuple[str, dict]]:
        """Follow the SSE stream; reconnect with Last-Event-ID on a dropped connection.
        Yields (event, message) for progress/complete events; ends after `complete`."""
        last_id: str | None = None
        failures = 0
        while True:
            headers = {**self.headers, "Accept": "text/event-stream"}
            if last_id:
                headers["Last-Event-ID"] = last_id
            try:
                with self.http.stream("GET", f"/api/sessions/{session_id}/status/stream", headers=headers,
                                      timeout=httpx.Timeout(60.0, connect=10.0, read=90.0)) as response:
                    if response.status_code == 401 and self._refresh():
                        continue
                    if response.status_code != 200:
                        response.read()
                        check(response, (200,))
                    failures = 0
                    event, data, ident = "message", [], None
                    for line in response.iter_lines():
                        if line == "":
                            if data:
                                if ident:
                                    last_id = ident
                                if event in ("progress", "complete"):
                                    message = json.loads("\n".join(data))
                                    yield event, message
                                    if event == "complete":
                                        return
                            event, data, ident = "message", [], None
                        elif line.startswith(":"):
                            continue
                        else:
                            field, _, value = line.partition(":")
                            value = value[1:] if value.startswith(" ") else value
                            if field == "event":
                                event = value
                            elif field == "data":
                                data.append(value)
                            elif field == "id":
                                ident = value
            except httpx.ConnectError as exc:
                raise CliError(EXIT_CONNECT, f"cannot connect to {self.server}: {exc}") from exc
            except httpx.TransportError:
                pass
            # The stream ended without `complete` (server restart, proxy timeout): resume.
            failures += 1
            if failures > 5:
                raise CliError(EXIT_CONNECT, f"lost the progress stream from {self.server}")
            time.sleep(min(5.0, 0.5 * 2 ** failures))


def check(response: httpx.Response, ok: tuple[int, ...]) -> httpx.Response:
    if response.status_code in ok:
        return response
    detail = _detail(response)
    if response.status_code == 401:
        raise CliError(EXIT_AUTH, f"not authenticated: {detail} (run `therapybridge login`)")
    if response.status_code == 404:
        raise CliError(EXIT_NOT_FOUND, f"not found: {detail}")
    raise CliError(EXIT_REJECTED, f"rejected ({response.status_code}): {detail}")


# --- progress display ------------------------------------------------------------------------
def follow(client: Client, session_id: str, quiet: bool = False) -> dict:
    """Show progress until the session completes; returns the last status message."""
    last: dict = {}
    if sys.stderr.isatty() and not quiet:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("[bold]{task.description:<16}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                      TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                      console=Console(stderr=True), transient=False) as progress:
            overall = progress.add_task("overall", total=100, info="")
            stage_tasks: dict[str, Any] = {}
            for _, message in client.stream_status(session_id):
                last = message
                eta = message.get("estimated_time_remaining")
                info = message.get("status", "") + (f" · ~{eta:.0f}s left" if eta else "")
                progress.update(overall, completed=message.get("progress", 0), info=info)
                for name, stage in (message.get("stages") or {}).items():
                    if name not in stage_tasks:
                        stage_tasks[name] = progress.add_task(f"  {name}", total=100, info="")
                    done = stage.get("state") in ("done", "skipped")
                    progress.update(stage_tasks[name], completed=100 if done else 100 * (stage.get("fraction") or 0),
                                    info=stage.get("state", ""))
    else:
        for _, message in client.stream_status(session_id):
            last = message
            if quiet:
                continue
            eta = message.get("estimated_time_remaining")
            stages = ", ".join(f"{k}={v.get('state')}" for k, v in (message.get("stages") or {}).items())
            line = f"[{message.get('progress', 0):>3}%] {message.get('status')}"
            if message.get("message"):
                line += f" - {message['message']}"
            if eta and message.get("status") not in ("processed", "failed"):
                line += f" (about {eta:.0f}s left)"
            if stages:
                line += f" [{stages}]"
            err(line)
    for warning in last.get("warnings") or []:
        err(f"warning: {warning}")
    return last


def finish(last: dict, session_id: str) -> int:
    if last.get("status") == "failed":
        err(f"processing failed: {last.get('error') or last.get('message') or 'unknown error'}")
        return EXIT_FAILED
    err(f"session {session_id} {last.get('status', 'done')}")
    return EXIT_OK


# --- commands ---------------------------------------------------------------------------------
def cmd_login(args: argparse.Namespace) -> int:
    client = Client(args.server, require_auth=False)
    email = args.email or os.environ.get("TB_EMAIL") or input("Email: ").strip()
    password = args.password or os.environ.get("TB_PASSWORD") or getpass.getpass("Password: ")
    try:
        response = client.http.post("/api/auth/token", data={"username": email, "password": password})
    except httpx.TransportError as exc:
        raise CliError(EXIT_CONNECT, f"cannot connect to {client.server}: {exc}") from exc
    if response.status_code == 401:
        raise CliError(EXIT_AUTH, f"login failed: {_detail(response)}")
    check(response, (200,))
    body = response.json()
    save_config({"server": client.server, "email": email, "access_token": body["access_token"],
                 "refresh_token": body.get("refresh_token")})
    err(f"logged in to {client.server} as {email}")
    return EXIT_OK


def cmd_logout(args: argparse.Namespace) -> int:
    config = load_config()
    if config.get("access_token"):  # end the sign-in on the server too (best effort: offline still forgets)
        client = Client(args.server, require_auth=False)
        try:
            client.http.post("/api/auth/logout", headers=client.headers)
        except httpx.TransportError:
            err("could not reach the server; the stored tokens are forgotten but stay valid until they expire")
        finally:
            client.close()
    config_path().unlink(missing_ok=True)
    err("logged out")
    return EXIT_OK


def resolve_patient(client: Client, patient: str) -> str:
    try:
        return str(UUID(patient))
    except ValueError:
        pass
    patients = client.request("GET", "/api/patients").json()
    matches = [p for p in patients if p["display_name"].lower() == patient.lower() or p.get("external_ref") == patient]
    if not matches:
        raise CliError(EXIT_NOT_FOUND, f"not found: no patient named {patient!r}")
    if len(matches) > 1:
        raise CliError(EXIT_USAGE, f"several patients are named {patient!r}: pass the patient id")
    return matches[0]["id"]


def cmd_upload(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise CliError(EXIT_USAGE, f"no such file: {path}")
    client = Client(args.server)
    form: dict[str, str] = {}
    if args.patient:
        form["patient_id"] = resolve_patient(client, args.patient)
    if args.num_speakers:
        form["num_speakers"] = str(args.num_speakers)
    if args.language:
        form["language"] = args.language
    if args.session_date:
        form["session_date"] = args.session_date
    with path.open("rb") as fh:
        response = client.request("POST", "/api/sessions/upload", ok=(202,), data=form,
                                  files={"file": (path.name, fh, "application/octet-stream")},
                                  timeout=httpx.Timeout(600.0, connect=10.0))
    body = response.json()
    session_id = body["id"]
    err(f"uploaded {path.name} ({body.get('duration_s', 0):.1f} s of audio) as session {session_id}")
    print(session_id, flush=True)
    if not args.wait:
        return EXIT_OK
    return finish(follow(client, session_id, quiet=args.quiet), session_id)


def cmd_watch(args: argparse.Namespace) -> int:
    client = Client(args.server)
    return finish(follow(client, args.id, quiet=args.quiet), args.id)


def cmd_list(args: argparse.Namespace) -> int:
    client = Client(args.server)
    params: dict[str, Any] = {"limit": args.limit}
    if args.patient:
        params["patient_id"] = resolve_patient(client, args.patient)
    if args.status:
        params["status"] = args.status
    items = client.request("GET", "/api/sessions", params=params).json()["items"]
    if args.json:
        print(json.dumps(items, indent=2))
        return EXIT_OK
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table("id", "created", "status", "progress", "duration", "file")
        for s in items:
            table.add_row(s["id"], s["created_at"][:19].replace("T", " "), s["status"], f"{s['progress']}%",
                          f"{s['duration_seconds']:.0f}s", s.get("audio_filename") or "")
        Console().print(table)
    else:
        for s in items:
            print("\t".join([s["id"], s["created_at"], s["status"], str(s["progress"]),
                             f"{s['duration_seconds']:.1f}", s.get("audio_filename") or ""]))
    return EXIT_OK


def cmd_get(args: argparse.Namespace) -> int:
    client = Client(args.server)
    if args.format == "json":
        body = client.request("GET", f"/api/sessions/{args.id}").json()
        print(json.dumps(body, indent=2, ensure_ascii=False))
    else:
        response = client.request("GET", f"/api/sessions/{args.id}/export/{args.format}")
        sys.stdout.write(response.text)
        if not response.text.endswith("\n"):
            sys.stdout.write("\n")
        sys.stdout.flush()
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    client = Client(args.server)
    client.request("DELETE", f"/api/sessions/{args.id}", ok=(204,))
    err(f"deleted session {args.id}")
    return EXIT_OK


def _session_id(value: str) -> str:
    try:
        return str(UUID(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a session id: {value!r}") from exc


def _bootstrap(args: argparse.Namespace) -> str:
    bootstrap = args.bootstrap or os.environ.get("TB_KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        raise CliError(EXIT_USAGE, "no broker: pass --bootstrap HOST:PORT or set TB_KAFKA_BOOTSTRAP_SERVERS")
    return bootstrap


def _dlq_records(args: argparse.Namespace) -> list:
    from services.gateway import dlq

    bootstrap = _bootstrap(args)
    try:
        topics = [f"{args.topic.removesuffix('.dlq')}.dlq"] if getattr(args, "topic", None) else dlq.run(dlq.dlq_topics(bootstrap))
        return dlq.run(dlq.read_dlq(bootstrap, topics))
    except OSError as exc:
        raise CliError(EXIT_CONNECT, f"cannot reach the broker at {bootstrap}: {type(exc).__name__}") from exc


def cmd_dlq_list(args: argparse.Namespace) -> int:
    summaries = [r.summary() for r in _dlq_records(args)]
    if args.json:
        print(json.dumps(summaries, indent=2))
        return EXIT_OK
    for s in summaries:
        print(f"{s['ref']:<32} {s['service'] or '-':<12} {s['error_kind'] or '-':<10} {s['type'] or '-':<20} "
              f"{s['key']:<36} {s['error'] or ''}")
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

    args.topic = parse_ref(args.ref)[0]
    (record,) = _find(_dlq_records(args), [args.ref])
    shown = {**record.summary(), "headers": record.headers}
    if args.payload:  # may hold transcript text: only on request, never by default
        shown["payload"] = record.value.decode(errors="replace")
    print(json.dumps(shown, indent=2))
    return EXIT_OK


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    from services.gateway import dlq

    if bool(args.refs) == bool(args.all):
        raise CliError(EXIT_USAGE, "name the records to replay, or pass --all")
    records = _dlq_records(args)
    chosen = records if args.all else _find(records, args.refs)
    for ref in dlq.run(dlq.replay(_bootstrap(args), chosen)):
        print(ref)
    err(f"replayed {len(chosen)} record(s) to their original topics")
    return EXIT_OK


def _add_dlq(sub) -> None:
    dlq_parser = sub.add_parser("dlq", help="dead-letter topics: list, show, replay (talks to the broker)",
                                description="Operator tool over the <topic>.dlq records.")
    dlq_sub = dlq_parser.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")

    def add(name: str, func, help_text: str) -> argparse.ArgumentParser:
        p = dlq_sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--bootstrap", help="broker HOST:PORT (default: $TB_KAFKA_BOOTSTRAP_SERVERS)")
        p.set_defaults(func=func)
        return p

    p = add("list", cmd_dlq_list, "list dead-lettered records (no payloads)")
    p.add_argument("--topic", help="one original topic (e.g. audio.uploaded); default: every DLQ topic")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = add("show", cmd_dlq_show, "one record's headers and error (payload only with --payload)")
    p.add_argument("ref", help="<topic>.dlq:PARTITION:OFFSET, as listed")
    p.add_argument("--payload", action="store_true", help="also print the payload (may contain PHI)")
    p = add("replay", cmd_dlq_replay, "publish records again to their original topic")
    p.add_argument("refs", nargs="*", help="<topic>.dlq:PARTITION:OFFSET, as listed")
    p.add_argument("--all", action="store_true", help="every record (of --topic, if given)")
    p.add_argument("--topic", help="with --all: one original topic")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="therapybridge", description="Command-line client for the TherapyBridge gateway.",
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", help=f"gateway URL (default: the stored one, $TB_SERVER or {DEFAULT_SERVER})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EXIT_CODES_HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--server", default=argparse.SUPPRESS, help="gateway URL")
        p.set_defaults(func=func)
        return p

    p = add("login", cmd_login, "sign in and store the token")
    p.add_argument("--email", help="therapist email (default: $TB_EMAIL or prompt)")
    p.add_argument("--password", help="password (default: $TB_PASSWORD or prompt)")
    add("logout", cmd_logout, "end the sign-in on the server and forget the stored tokens")

    p = add("upload", cmd_upload, "upload a recording; prints the session id on stdout")
    p.add_argument("file", help="audio file (wav, mp3, m4a, flac, ogg, webm, mp4)")
    p.add_argument("--patient", help="patient id or display name")
    p.add_argument("--wait", action="store_true", help="follow progress until processed (exit 5 if it fails)")
    p.add_argument("--num-speakers", type=int, choices=range(1, 21), metavar="N", help="number of speakers, if known")
    p.add_argument("--language", help="language code, e.g. en")
    p.add_argument("--session-date", help="ISO date-time of the session")
    p.add_argument("--quiet", action="store_true", help="with --wait: no progress output")

    p = add("list", cmd_list, "list your sessions (newest first)")
    p.add_argument("--patient", help="patient id or display name")
    p.add_argument("--status", help="only sessions with this status")
    p.add_argument("--limit", type=int, default=20, choices=range(1, 101), metavar="N", help="at most N (1-100)")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = add("get", cmd_get, "print a session (json) or one of its exports")
    p.add_argument("id", type=_session_id)
    p.add_argument("--format", "-f", choices=FORMATS, default="json")

    p = add("watch", cmd_watch, "follow a session's progress until it completes")
    p.add_argument("id", type=_session_id)
    p.add_argument("--quiet", action="store_true", help="no progress output, just the exit code")

    p = add("delete", cmd_delete, "delete a session, its audio, transcript and notes")
    p.add_argument("id", type=_session_id)
    _add_dlq(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # usage errors exit 2
    if not hasattr(args, "server"):
        args.server = None
    try:
        code = args.func(args)
    except CliError as exc:
        err(f"therapybridge: {exc.message}")
        code = exc.code
    except KeyboardInterrupt:
        err("interrupted")
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
