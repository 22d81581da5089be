"""The client half of deploy/smoke.sh: waits for the containerised stack, uploads the bundled
sample, follows it to `processed` and checks what came out. Standard library only, so it
runs with any python3 on the host. Prints one line per check and writes a JSON summary.

  python3 deploy/podman/smoke_client.py --gateway http://127.0.0.1:18000 \
      --metrics 19101,19102 --sample samples/two_speakers.wav --summary out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

checks: list[dict] = []


def check(name: str, ok: bool, detail: str = "") -> bool:
    checks.append({"check": name, "ok": bool(ok), "detail": detail})
    print(f"  [{'PASS' if ok else 'FAIL'}] {name}" + (f": {detail}" if detail else ""), flush=True)
    return ok


def request(method: str, url: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = 30) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def wait_until_answers(url: str, deadline: float) -> int | None:
    """Status of the first answer before the deadline (None: nothing ever answered)."""
    last = None
    while time.monotonic() < deadline:
        try:
            last, _ = request("GET", url, timeout=3)
            if last == 200:
                return last
        except OSError:
            pass
        time.sleep(0.5)
    return last


def multipart(field: str, path: Path, content_type: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{path.name}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode()
    return head + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gateway", required=True)
    ap.add_argument("--metrics", default="", help="comma-separated worker /metrics ports on 127.0.0.1")
    ap.add_argument("--sample", required=True, type=Path)
    ap.add_argument("--summary", required=True, type=Path)
    ap.add_argument("--started-at", type=float, default=None,
                    help="epoch seconds the services were started (start-up times count from it)")
    ap.add_argument("--ready-timeout", type=float, default=300)
    ap.add_argument("--process-timeout", type=float, default=900)
    ap.add_argument("--email", default="demo@therapybridge.local")
    ap.add_argument("--password", default="demo-password")
    args = ap.parse_args()
    gw = args.gateway.rstrip("/")
    summary: dict = {}
    started = time.monotonic()
    # Start-up counts from when the services were started, not from when this client began.
    offset = time.time() - args.started_at if args.started_at else 0.0

    status = wait_until_answers(f"{gw}/readyz", started + args.ready_timeout)
    summary["gateway_ready_s"] = round(time.monotonic() - started + offset, 1)
    check("gateway /readyz answers 200 (database and broker reachable)", status == 200,
          f"after {summary['gateway_ready_s']} s" if status == 200 else f"last status {status}")
    ports = [int(p) for p in args.metrics.split(",") if p]
    for port in ports:
        status = wait_until_answers(f"http://127.0.0.1:{port}/metrics", started + args.ready_timeout)
        check(f"worker /metrics on :{port} answers", status == 200)
    summary["all_ready_s"] = round(time.monotonic() - started + offset, 1)
    if not all(c["ok"] for c in checks):
        return finish(args, summary)

    body = urllib.parse.urlencode({"username": args.email, "password": args.password}).encode()
    status, raw = request("POST", f"{gw}/api/auth/token", body, {"Content-Type": "application/x-www-form-urlencoded"})
    if not check("demo therapist signs in", status == 200, f"HTTP {status}"):
        return finish(args, summary)
    auth = {"Authorization": f"Bearer {json.loads(raw)['access_token']}"}

    data, ctype = multipart("file", args.sample, "audio/wav")
    upload_started = time.monotonic()
    status, raw = request("POST", f"{gw}/api/sessions/upload", data, {**auth, "Content-Type": ctype}, timeout=120)
    if not check(f"upload of {args.sample.name} accepted", status == 202, f"HTTP {status}"):
        return finish(args, summary)
    session_id = json.loads(raw)["id"]
    summary["session_id"] = session_id

    detail: dict = {}
    seen: list[str] = []
    deadline = upload_started + args.process_timeout
    while time.monotonic() < deadline:
        status, raw = request("GET", f"{gw}/api/sessions/{session_id}", headers=auth)
        if status == 200:
            detail = json.loads(raw)
            if not seen or seen[-1] != detail["status"]:
                seen.append(detail["status"])
            if detail["status"] in ("processed", "failed"):
                break
        time.sleep(1)
    summary["processing_s"] = round(time.monotonic() - upload_started, 1)
    summary["statuses_seen"] = seen
    check("session reaches processed", detail.get("status") == "processed",
          f"{' -> '.join(seen)} in {summary['processing_s']} s" + (f"; error: {detail.get('error')}" if detail.get("error") else ""))
    words = len((detail.get("transcript_text") or "").split())
    speakers = {s.get("speaker") for s in detail.get("transcript_segments") or [] if s.get("speaker")}
    summary["transcript_words"], summary["speakers"] = words, len(speakers)
    check("transcript present", words > 0, f"{words} words")
    check("transcript segments carry speaker labels", len(speakers) >= 1, f"{len(speakers)} speakers")
    notes = detail.get("extracted_notes") or {}
    check("clinical notes present", bool(notes) and bool(notes.get("patient_summary") or notes.get("key_topics")),
          f"keys: {', '.join(sorted(notes)) or '-'}")
    status, raw = request("GET", f"{gw}/api/sessions/{session_id}/export/txt", headers=auth)
    check("transcript export (txt) downloads", status == 200 and len(raw) > 0, f"HTTP {status}, {len(raw)} bytes")
    return finish(args, summary)


def finish(args: argparse.Namespace, summary: dict) -> int:
    summary["checks"] = checks
    summary["passed"] = bool(checks) and all(c["ok"] for c in checks)
    args.summary.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
