"""Hostile inputs against the gateway under uvicorn on a real port (with_broker=False), on a
real PostgreSQL (issue 11, item 3):

- the eight inputs that answered 500 now answer 422 (dates at year 1 / 9999 with extreme
  offsets in upload, since, until and the cursor; NUL in names and the status filter; a
  Last-Event-ID that is not a sequence number) and a non-numeric WebSocket last_seq gets an
  error message and a clean close;
- authentication comes before the body: an unauthenticated upload, declared 600 MB or
  chunked, gets 401 after only its first megabyte was sent (the server does not wait for
  the rest); a chunked body is capped like a declared one (413, nothing stored);
- an unexpected error answers 500 with the security headers, and neither the response nor
  the process output carries its message or a traceback.

The body tests speak HTTP over a raw socket so that "the server answered before the body
was complete" is observable: the client sends part of a body and then only reads.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import func, select

from shared.db.tables import sessions
from services.gateway.webapp import SECURITY_HEADERS
from tests.integration.test_gateway_authz import (
    DATA,
    LiveGateway,
    add_session,
    add_status,
    add_therapist,
    status_payload,
)

LIMIT = 2_000_000  # upload_max_bytes of this module's gateway
EXTREME_DATES = ["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00", "9999-12-31T23:59:59"]
MARKER = "zanzibar-unexpected-failure"


@pytest.fixture(scope="module")
def gw(settings):
    with LiveGateway(settings, upload_max_bytes=LIMIT, upload_rate_per_minute=1000) as gateway:
        gateway.therapist = gateway.call(add_therapist(gateway))
        gateway.session = gateway.call(add_session(gateway, gateway.therapist, finished=False))
        gateway.call(add_status(gateway, gateway.session, status_payload(gateway.session, 1, "transcribing", 10),
                                owner_id=gateway.therapist))
        yield gateway


def _assert_422(response: httpx.Response, what: str) -> None:
    assert response.status_code == 422, (what, response.status_code, response.text[:300])
    assert response.json()["detail"], what


# --- the eight inputs ----------------------------------------------------------------------------
def test_upload_session_date_out_of_range_is_422(gw):
    wav = (DATA / "pyannote_sample.wav").read_bytes()
    with gw.client(gw.token(gw.therapist)) as client:
        for date in EXTREME_DATES:
            response = client.post("/api/sessions/upload", files={"file": ("a.wav", wav, "audio/wav")},
                                   data={"session_date": date})
            _assert_422(response, date)
            assert "session_date" in response.json()["detail"]


def test_a_malformed_multipart_body_is_422(gw):
    wav = (DATA / "pyannote_sample.wav").read_bytes()
    with gw.client(gw.token(gw.therapist)) as client:
        response = client.post("/api/sessions/upload", files=[("file", ("a.wav", wav, "audio/wav")),
                                                              ("file", ("b.wav", wav, "audio/wav"))])
    _assert_422(response, "two files")
    assert response.json()["code"] == "bad_form"


def test_list_since_until_and_cursor_out_of_range_are_422(gw):
    with gw.client(gw.token(gw.therapist)) as client:
        for date in EXTREME_DATES:
            for name in ("since", "until"):
                _assert_422(client.get("/api/sessions", params={name: date}), f"{name}={date}")
            cursor = base64.urlsafe_b64encode(f"{date}|{uuid.uuid4()}".encode()).decode()
            _assert_422(client.get("/api/sessions", params={"cursor": cursor}), f"cursor {date}")
        nul_cursor = base64.urlsafe_b64encode(f"2024-01-01T00:00:00\x00|{uuid.uuid4()}".encode()).decode()
        _assert_422(client.get("/api/sessions", params={"cursor": nul_cursor}), "cursor with NUL")
        # the ordinary values still work
        assert client.get("/api/sessions", params={"since": "2020-01-01T00:00:00+02:00"}).status_code == 200


def test_nul_in_names_and_status_filter_is_422(gw):
    with gw.client(gw.token(gw.therapist)) as client:
        _assert_422(client.post("/api/patients", json={"display_name": "Ann\x00Smith"}), "patient name")
        _assert_422(client.post("/api/patients", json={"display_name": "Ann", "external_ref": "r\x00"}),
                    "external_ref")
        _assert_422(client.get("/api/sessions", params={"status": "processed\x00"}), "status filter")
        _assert_422(client.patch(f"/api/sessions/{gw.session}/speakers",
                                 json={"names": {"SPEAKER_00": "Dr\x00 Who"}}), "speaker name")
        _assert_422(client.patch(f"/api/sessions/{gw.session}/speakers",
                                 json={"roles": {"SPEAKER\x00": "CLIENT"}}), "speaker label")


def stream_link(gw) -> str:
    """A signed stream link (access tokens are refused in URLs)."""
    response = httpx.post(f"{gw.url}/api/sessions/{gw.session}/links", json={"purpose": "stream"},
                          headers={"Authorization": f"Bearer {gw.token(gw.therapist)}"}, timeout=30)
    assert response.status_code in (200, 201), response.text
    return response.json()["token"]


def test_last_event_id_that_is_not_a_sequence_number_is_422(gw):
    token = stream_link(gw)
    url = f"/api/sessions/{gw.session}/status/stream"
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        for header in (b"\xb2", b"99999999999999999999999", b"-1", b"1e3"):  # \xb2 is '²': isdigit() but not int()
            response = client.get(url, params={"token": token}, headers={"Last-Event-ID": header})
            _assert_422(response, header)
        response = client.get(url, params={"token": token, "last_event_id": str(2**70)})
        _assert_422(response, "last_event_id query")
    # A NUL cannot be sent with a well-behaved client: a raw request does it
    status, _ = raw_request(gw, f"GET {url}?token={token} HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 1\x00\r\n"
                                "Connection: close\r\n\r\n", [])
    assert 400 <= status < 500, status


def test_websocket_non_numeric_last_seq_gets_an_error_and_a_clean_close(gw):
    import websockets

    async def connect(query: str, expect_close: bool = True):
        url = gw.url.replace("http://", "ws://") + f"/api/sessions/ws/{gw.session}?token={stream_link(gw)}{query}"
        async with websockets.connect(url, open_timeout=10) as ws:
            message = json.loads(await asyncio.wait_for(ws.recv(), 15))
            if expect_close:  # the server closes right after the error frame
                try:
                    await asyncio.wait_for(ws.recv(), 15)
                except websockets.exceptions.ConnectionClosed:
                    pass
            return message, ws.close_code

    for bad in ("abc", "1\x00", "99999999999999999999999", "-3"):
        message, code = asyncio.run(connect(f"&last_seq={quote(bad)}"))
        assert message["type"] == "error" and message["code"] == "invalid_last_seq", bad
        assert code == 1008, (bad, code)
    # a good one still streams; the session is in progress, so the stream stays open (its next
    # frame is a heartbeat 15 s later: waiting for it raced the 15 s read timeout on a busy CI)
    message, _ = asyncio.run(connect("&last_seq=0", expect_close=False))
    assert message["seq"] == 1


def test_nul_in_a_field_no_schema_checks_is_not_a_server_error(gw):
    """The safety net: a value PostgreSQL refuses (class 22) is the request's fault, 4xx."""
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        response = client.post("/api/auth/token", data={"username": "a\x00@b.c", "password": "whatever-pass"})
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:200])


# --- authentication before the body; chunked bodies capped -------------------------------------
def raw_request(gw: LiveGateway, head: str, parts: list[bytes], timeout: float = 30) -> tuple[int, bytes]:
    """Send ``head`` and ``parts`` (never more), then read the answer until the server
    closes: (status, raw response). If the server waits for the rest of the body instead
    of answering, this times out."""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=timeout) as sock:
        sock.sendall(head.encode("latin-1"))
        for part in parts:
            sock.sendall(part)
        data = b""
        while not _complete(data):
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
        return int(data.split(b" ", 2)[1]), data


def _complete(response: bytes) -> bool:
    """The response's head and its Content-Length body have arrived."""
    head, sep, body = response.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


BOUNDARY = "tbboundary1234"
PART_HEAD = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n"
             "Content-Type: audio/wav\r\n\r\n").encode()


def _upload_head(extra: str, token: str | None = None) -> str:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"POST /api/sessions/upload HTTP/1.1\r\nHost: x\r\n{auth}"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n{extra}\r\n")


def test_unauthenticated_upload_gets_401_before_its_body_is_read(gw):
    first_mb = PART_HEAD + b"\0" * (1024 * 1024)
    declared = 600 * 1024 * 1024
    status, raw = raw_request(gw, _upload_head(f"Content-Length: {declared}\r\n"), [first_mb])
    assert status == 401, raw[:300]
    status, raw = raw_request(gw, _upload_head("Transfer-Encoding: chunked\r\n"), [_chunk(first_mb)])
    assert status == 401, raw[:300]
    for key, value in SECURITY_HEADERS.items():
        assert f"{key}: {value}".lower().encode() in raw.lower(), key


def _blobs(gw: LiveGateway) -> list[Path]:
    root = Path(gw.settings.blob_dir) / "sessions"
    return sorted(root.rglob("*")) if root.exists() else []


def _session_count(gw: LiveGateway) -> int:
    async def count():
        async with gw.state.session_factory() as db:
            return (await db.execute(select(func.count()).select_from(sessions)
                                     .where(sessions.c.therapist_id == gw.therapist))).scalar_one()
    return gw.call(count())


def test_chunked_upload_is_capped_like_a_declared_one(gw):
    """Exactly one byte past the cap is sent (so the server has read all of it when it
    answers) and the body is never terminated: before, the server waited for the rest."""
    from services.gateway.webapp import MULTIPART_OVERHEAD_BYTES

    cap = LIMIT + MULTIPART_OVERHEAD_BYTES
    wav_head = (DATA / "pyannote_sample.wav").read_bytes()[:44]
    body = PART_HEAD + wav_head
    filler = cap + 1 - len(body)
    parts = [_chunk(body)] + [_chunk(b"\0" * min(256 * 1024, filler - i)) for i in range(0, filler, 256 * 1024)]
    before_blobs, before_rows = _blobs(gw), _session_count(gw)
    status, raw = raw_request(gw, _upload_head("Transfer-Encoding: chunked\r\n", gw.token(gw.therapist)), parts)
    assert status == 413, raw[:300]
    assert b"limit" in raw
    assert _blobs(gw) == before_blobs
    assert _session_count(gw) == before_rows


def test_other_bodies_are_capped_too(gw):
    token = gw.token(gw.therapist)
    cap = gw.settings.request_body_max_bytes
    head = (f"POST /api/patients HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    body = b'{"display_name": "' + b"a" * (cap + 1)
    status, raw = raw_request(gw, head, [_chunk(body)])
    assert status == 413, raw[:300]


# --- an unexpected error -----------------------------------------------------------------------------
def test_unexpected_error_is_a_bare_500_with_the_security_headers(settings, capfd):
    gateway = LiveGateway(settings)

    async def fail() -> None:
        raise RuntimeError(f"SELECT * FROM patients WHERE name = '{MARKER}'")

    gateway.app.add_api_route("/api/test-failure", fail, include_in_schema=False)
    with gateway:
        with httpx.Client(base_url=gateway.url, timeout=30) as client:
            response = client.get("/api/test-failure")
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert MARKER not in response.text
    for key, value in SECURITY_HEADERS.items():
        assert response.headers.get(key) == value, key
    assert response.headers.get("X-Request-ID")
    out, err = capfd.readouterr()
    assert "unhandled_error" in out + err  # it was logged...
    assert MARKER not in out + err  # ...without its message
    assert "Traceback" not in out + err
