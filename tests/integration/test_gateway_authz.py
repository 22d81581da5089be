"""Authorization matrix, generated from the gateway's route table.

Two therapists; therapist A owns a patient and a finished session (rows written straight
into PostgreSQL, audio blob on disk). The gateway runs under uvicorn on a real port with
create_app(settings, with_broker=False). For EVERY route of the app (HTTP and WebSocket,
iterated from app.routes so a new route cannot be missed) except an explicit public
allow-list:

- without a token            -> 401 (WebSocket: handshake refused; the app closes with 1008
                                before accept)
- as therapist B             -> 404 for anything naming A's session or patient, and the
                                body carries none of A's data; collection routes answer B
                                without any of A's rows
- as therapist A (the owner) -> 2xx, so the 404s above are ownership, not a bad URL.

The LiveGateway and seeding helpers here are reused by the other gateway tests.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.routing import APIRoute, APIWebSocketRoute
from sqlalchemy import select
from starlette.routing import Mount, Route

from shared.blobstore import session_prefix
from shared.db.tables import (
    patients,
    session_results,
    session_status,
    sessions,
    status_history,
    therapists,
)
from devtools.localbroker import free_port
from services.gateway.auth import PasswordService
from services.gateway.main import create_app

DATA = Path(__file__).resolve().parents[1] / "data"
PASSWORD = "correct-horse-battery"
NEW_PASSWORD = "another-long-password"
PUBLIC = {"/healthz", "/readyz", "/api/auth/token", "/api/auth/refresh", "/", "/static", "/docs",
          "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/metrics", "/asyncapi.json"}
EXPORT_FORMATS = ["txt", "json", "srt", "vtt", "rttm", "notes.json", "soap", "dap", "birp", "ehr", "docx", "pdf"]
SECRET_TEXT = "zanzibar-secret-marker"  # appears in A's transcript and notes only


# --- a gateway under uvicorn on a real port ------------------------------------------------------
class LiveGateway:
    """create_app(settings, with_broker=False) served by uvicorn in a thread, on its own loop.
    ``call(coro)`` runs a coroutine on the server's loop (the app's DB engine lives there)."""

    def __init__(self, settings, **overrides) -> None:
        self.settings = settings.model_copy(update=overrides) if overrides else settings
        self.app = create_app(self.settings, with_broker=False)
        self.state = self.app.state.gateway
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # proxy_headers=False as in main(): the app alone decides whom to believe (TB_TRUSTED_PROXIES)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    timeout_graceful_shutdown=1, lifespan="on", proxy_headers=False))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"uvicorn-{self.port}")
        self.therapists: list[uuid.UUID] = []

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.serve())
        finally:
            pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    def __enter__(self) -> "LiveGateway":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("gateway did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.call(self._forget_outbox())
        finally:
            self.server.should_exit = True
            self.thread.join(15)

    async def _forget_outbox(self) -> None:
        """This gateway has no relay (with_broker=False): drop the unpublished events its
        test therapists caused, so a pipeline started later in the run does not process them."""
        if not self.therapists:
            return
        from sqlalchemy import text

        async with self.state.session_factory() as db, db.begin():
            await db.execute(text(
                "DELETE FROM outbox WHERE published_at IS NULL AND "
                "(payload::jsonb->>'owner_id' = ANY(:ids) OR payload::jsonb->>'requested_by' = ANY(:ids))"),
                {"ids": [str(t) for t in self.therapists]})

    def call(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def notify(self, session_id) -> None:
        self.loop.call_soon_threadsafe(self.state.hub.notify, session_id)

    def sign_in(self, therapist_id):
        """A token pair of a new sign-in (token family and refresh token recorded), as a login makes."""
        from services.gateway.routes.auth import _issue

        async def issue():
            async with self.state.session_factory() as db, db.begin():
                return await _issue(self.state, db, therapist_id)

        return self.call(issue())

    def token(self, therapist_id) -> str:
        return self.sign_in(therapist_id).access_token

    def link(self, therapist_id, session_id, purpose: str) -> str:
        """A signed link token, minted without the ownership check (to prove the routes check it)."""
        family_id = self.sign_in(therapist_id).family_id
        return self.state.tokens.link(therapist_id, family_id, session_id, purpose, self.settings.link_token_ttl_s)

    def client(self, token: str | None = None, **kw) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kw)


# --- seeding the database --------------------------------------------------------------------------
_passwords = PasswordService()


async def add_therapist(gw: LiveGateway, email: str | None = None, role: str = "therapist") -> uuid.UUID:
    therapist_id = uuid.uuid4()
    async with gw.state.session_factory() as db, db.begin():
        await db.execute(therapists.insert().values(
            id=therapist_id, email=email or f"t-{therapist_id.hex[:10]}@example.test",
            password_hash=_passwords.hash(PASSWORD), display_name="Test Therapist", role=role))
    gw.therapists.append(therapist_id)
    return therapist_id


async def add_patient(gw: LiveGateway, therapist_id, name: str) -> uuid.UUID:
    patient_id = uuid.uuid4()
    async with gw.state.session_factory() as db, db.begin():
        await db.execute(patients.insert().values(id=patient_id, therapist_id=therapist_id, display_name=name))
    return patient_id


def status_payload(session_id, seq: int, status: str, percent: int, message: str = "", **extra) -> dict:
    stages = extra.pop("stages", {"transcription": {"state": "done" if percent >= 100 else "running",
                                                    "fraction": min(1.0, percent / 100), "message": "", "eta_s": None,
                                                    "error": None}})
    return {"schema_version": 1, "session_id": str(session_id), "seq": seq, "status": status, "percent": percent,
            "message": message or f"{status} {percent}%", "eta_s": extra.pop("eta_s", None),
            "error": extra.pop("error", None), "stages": stages, "warnings": extra.pop("warnings", []),
            "updated_at": "2024-01-01T00:00:00+00:00"}


async def add_status(gw: LiveGateway, session_id, payload: dict, owner_id=None) -> None:
    """What the progress service does: append to status_history and upsert session_status."""
    from sqlalchemy.dialects.postgresql import insert

    async with gw.state.session_factory() as db, db.begin():
        await db.execute(status_history.insert().values(session_id=session_id, seq=payload["seq"], payload=payload))
        values = dict(owner_id=owner_id, status=payload["status"], percent=payload["percent"], seq=payload["seq"],
                      message=payload["message"], eta_s=payload["eta_s"], error=payload["error"],
                      stages=payload["stages"], warnings=payload["warnings"])
        stmt = insert(session_status).values(session_id=session_id, **values)
        await db.execute(stmt.on_conflict_do_update(index_elements=["session_id"],
                                                    set_={k: v for k, v in values.items() if k != "owner_id"}))


def merged_segments() -> list[dict]:
    return [
        {"start": 0.0, "end": 2.5, "speaker": "SPEAKER_00", "role": "THERAPIST", "text": "How was your week?",
         "words": [{"start": 0.0, "end": 0.4, "word": "How", "p": 0.9}]},
        {"start": 2.6, "end": 6.0, "speaker": "SPEAKER_01", "role": "CLIENT",
         "text": f"It was hard, {SECRET_TEXT}, I felt hopeless.", "words": []},
        {"start": 6.2, "end": 9.0, "speaker": "SPEAKER_00", "role": "THERAPIST", "text": "Let's try breathing.",
         "words": []},
    ]


def notes_payload() -> dict:
    from shared.contracts.notes import ClinicalNotes

    return ClinicalNotes.model_validate({
        "key_topics": ["week", SECRET_TEXT], "topic_summary": f"Talked about {SECRET_TEXT}.",
        "significant_quotes": [{"quote": f"It was hard, {SECRET_TEXT}", "speaker": "SPEAKER_01", "role": "CLIENT",
                                "start": 2.6, "end": 6.0}],
        "risk_flags": [{"category": "hopelessness", "severity": "moderate", "evidence": "I felt hopeless",
                        "start": 2.6, "end": 6.0, "speaker": "SPEAKER_01", "role": "CLIENT", "source": "lexicon"}],
        "therapist_notes": "Client reports a hard week.", "patient_summary": "You had a hard week.",
    }).model_dump(mode="json")


async def add_session(gw: LiveGateway, therapist_id, patient_id=None, *, finished: bool = True,
                      filename: str = "secret-a.wav", audio: bytes | None = None) -> uuid.UUID:
    """A session row with its audio blob; finished=True adds the read model and results."""
    session_id = uuid.uuid4()
    key = f"{session_prefix(session_id)}audio.wav"
    await gw.state.runtime.keys.create(session_id)  # as an upload does: its blobs are sealed with it
    uri = await asyncio.to_thread(gw.state.blobs.put_bytes, key,
                                  audio if audio is not None else (DATA / "pyannote_sample.wav").read_bytes())
    async with gw.state.session_factory() as db, db.begin():
        await db.execute(sessions.insert().values(
            id=session_id, therapist_id=therapist_id, patient_id=patient_id, audio_uri=uri, audio_filename=filename,
            audio_bytes=1000, audio_sha256="0" * 64, content_type="audio/wav", duration_s=9.0, options={}))
        if finished:
            segs = merged_segments()
            await db.execute(session_results.insert().values(
                session_id=session_id,
                transcript={"language": "en", "segments": [{k: v for k, v in s.items() if k not in ("speaker", "role")}
                                                           for s in segs], "timing": {"rtf": 0.1}},
                diarization={"turns": [{"start": s["start"], "end": s["end"], "speaker": s["speaker"]} for s in segs],
                             "speaker_count": 2, "engine": {"backend": "test"}},
                merged={"segments": segs, "diarized": True, "language": "en",
                        "speakers": [{"label": "SPEAKER_00", "role": "THERAPIST", "talk_time_s": 5.3},
                                     {"label": "SPEAKER_01", "role": "CLIENT", "talk_time_s": 3.4}]},
                merged_version=1, notes=notes_payload(), notes_engine={"backend": "offline"}))
    if finished:
        for seq, (status, pct) in enumerate([("transcribing", 30), ("extracting_notes", 80), ("processed", 100)], 1):
            await add_status(gw, session_id, status_payload(session_id, seq, status, pct), owner_id=therapist_id)
    return session_id


# --- the matrix -------------------------------------------------------------------------------------
async def set_active(gw: LiveGateway, therapist_id, active: bool) -> None:
    from sqlalchemy import update

    async with gw.state.session_factory() as db, db.begin():
        await db.execute(update(therapists).where(therapists.c.id == therapist_id).values(active=active))


@pytest.fixture(scope="module")
def world(settings):
    with LiveGateway(settings, login_rate_per_minute=100000, login_account_rate_per_minute=100000) as gw:
        a = gw.call(add_therapist(gw))
        b = gw.call(add_therapist(gw))
        admin = gw.call(add_therapist(gw, role="admin"))
        target = gw.call(add_therapist(gw))  # what the admin routes act on
        deactivated = gw.call(add_therapist(gw))
        patient = gw.call(add_patient(gw, a, "Patient Alpha Secretname"))
        session = gw.call(add_session(gw, a, patient))
        # signed in before an admin deactivated the account: its tokens must stop working
        deactivated_token = gw.token(deactivated)
        gw.call(set_active(gw, deactivated, False))
        yield {"gw": gw, "a": a, "b": b, "admin": admin, "target": target, "deactivated": deactivated,
               "deactivated_token": deactivated_token, "patient": patient, "session": session,
               "markers": [str(session), str(patient), "Secretname", SECRET_TEXT, "secret-a.wav", str(a)]}


def _is_public(path: str) -> bool:
    return path in PUBLIC or path.startswith(("/static", "/docs-assets"))


def all_routes(routes, prefix: str = "") -> list[tuple[str, object]]:
    """(full path, route) for every route, descending into included routers (FastAPI
    keeps `include_router` children behind an _IncludedRouter node) and mounts."""
    out: list[tuple[str, object]] = []
    for route in routes:
        original = getattr(route, "original_router", None)
        if original is not None:
            context = getattr(route, "include_context", None)
            out += all_routes(original.routes, prefix + (getattr(context, "prefix", "") or ""))
        elif hasattr(route, "path"):
            out.append((prefix + route.path, route))
        else:
            raise AssertionError(f"route of unknown kind {type(route)}: teach all_routes() about it")
    return out


def _body(method: str, path: str, patient_id, wav: bytes) -> dict:
    """Request kwargs that make a valid request of each route that needs a body."""
    if path == "/api/sessions/upload":
        return {"files": {"file": ("x.wav", wav, "audio/wav")}, "data": {"patient_id": str(patient_id)}}
    if method == "PUT" and path == "/api/therapists/me/voice":  # a 30 s recording: a valid enrolment sample
        return {"files": {"file": ("voice.wav", wav, "audio/wav")}}
    if method == "PATCH" and path.endswith("/speakers"):
        return {"json": {"names": {"SPEAKER_00": "Dr Who"}}}
    if method == "POST" and path == "/api/patients":
        return {"json": {"display_name": "Another patient"}}
    if method == "POST" and path == "/api/admin/therapists":
        return {"json": {"email": f"made-{uuid.uuid4().hex[:8]}@example.test", "password": NEW_PASSWORD}}
    if method == "POST" and path == "/api/admin/therapists/{therapist_id}/password":
        return {"json": {"new_password": NEW_PASSWORD}}
    if method == "POST" and path == "/api/auth/password":  # to the same password: the matrix changes nothing
        return {"json": {"current_password": PASSWORD, "new_password": PASSWORD}}
    if method == "POST" and path.endswith("/links"):
        return {"json": {"purpose": "audio"}}
    if method == "POST" and "regenerate" in path:
        return {"json": {}}
    if method == "PATCH" and path == "/api/patients/{patient_id}":
        return {"json": {"display_name": "Patient Alpha Secretname"}}
    if method == "PATCH" and path.endswith("/segments/{index}"):
        return {"json": {"text": "How was your week?"}}  # the recognised text: changes nothing
    # notes review: edits name the version they were made on (CURRENT: read just before the call)
    if method == "PATCH" and path.endswith("/notes"):
        return {"json": {"base_version": CURRENT, "notes": {"triggers": ["matrix edit"]}}}
    if method == "POST" and path.endswith("/review"):
        return {"json": {"base_version": CURRENT, "decision": "confirmed"}}
    if method == "POST" and path.endswith("notes:sign"):
        return {"json": {"base_version": CURRENT}}
    if method == "POST" and path.endswith("/addenda"):
        return {"json": {"text": "matrix addendum"}}
    return {}


def _calls(app, session_id, patient_id, account_id=None) -> list[dict]:
    """Every (method, concrete url, kind, scope, request kwargs) of every non-public route.
    scope: "owned" (names a session or patient: only its therapist), "admin" (administrators
    only), "caller" (acts on the caller's own account or list)."""
    calls: list[dict] = []
    wav = (DATA / "pyannote_sample.wav").read_bytes()
    account_id = account_id or uuid.uuid4()
    for path, route in all_routes(app.routes):
        if isinstance(route, Mount):
            assert _is_public(path), f"unexpected mount {path}"
            continue
        if _is_public(path):
            continue
        params = set(route.param_convertors) if hasattr(route, "param_convertors") else set()
        unknown = params - {"session_id", "patient_id", "fmt", "therapist_id", "index", "version", "flag_id"}
        assert not unknown, f"new route {path} has parameters {unknown}: teach the authorization matrix about it"
        urls = [path.replace("{fmt}", fmt) for fmt in EXPORT_FORMATS] if "fmt" in params else [path]
        urls = [u.replace("{session_id}", str(session_id)).replace("{patient_id}", str(patient_id))
                .replace("{therapist_id}", str(account_id)).replace("{index}", "0").replace("{version}", "1")
                .replace("{flag_id}", "f1") for u in urls]
        if path.startswith("/api/admin/"):
            scope = "admin"
        elif params & {"session_id", "patient_id"} or path == "/api/sessions/upload":  # upload: by its patient
            scope = "owned"
        else:
            scope = "caller"
        if isinstance(route, APIWebSocketRoute):
            calls += [{"kind": "ws", "method": "WS", "url": u, "scope": "owned", "kw": {}} for u in urls]
            continue
        assert isinstance(route, (APIRoute, Route)), f"unknown route type {type(route)} at {path}"
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            kind = "sse" if path.endswith("/status/stream") else "http"
            calls += [{"kind": kind, "method": method, "url": u, "scope": scope, "kw": _body(method, path, patient_id, wav)}
                      for u in urls]
    return calls


CURRENT = object()  # stands for the notes' current version in a generated body


def _with_current_version(client: httpx.Client, call: dict) -> dict:
    """The call's kwargs with CURRENT replaced by the notes' current version as the caller
    sees it (1 when the caller cannot read it: the call must then fail on ownership)."""
    body = call["kw"].get("json")
    if not isinstance(body, dict) or body.get("base_version") is not CURRENT:
        return call["kw"]
    session_url = call["url"].split("/notes")[0]
    review = client.get(f"{session_url}/notes/review")
    version = review.json()["current_version"] if review.status_code == 200 else 1
    return {**call["kw"], "json": {**body, "base_version": version}}


def _http(gw: LiveGateway, token: str | None, call: dict) -> httpx.Response:
    with gw.client(token) as client:
        if call["kind"] == "sse":
            with client.stream(call["method"], call["url"], timeout=10) as response:
                if response.status_code == 200:
                    # read just the first event (the owner's stream of a finished session ends by itself)
                    body = b""
                    for chunk in response.iter_bytes():
                        body += chunk
                        if b"\n\n" in body:
                            break
                    response._content = body
                else:
                    response.read()
                return response
        return client.request(call["method"], call["url"], **_with_current_version(client, call))


async def _ws_connect(url: str):
    import websockets

    async with websockets.connect(url, open_timeout=10) as ws:
        return await asyncio.wait_for(ws.recv(), 10)


def _ws_rejected(gw: LiveGateway, url: str) -> int:
    """The handshake status when the server refuses the socket (close before accept)."""
    import websockets

    ws_url = gw.url.replace("http://", "ws://") + url
    try:
        asyncio.run(_ws_connect(ws_url))
    except websockets.exceptions.InvalidStatus as exc:
        return exc.response.status_code
    return 101


def test_route_table_is_covered(world):
    calls = _calls(world["gw"].app, world["session"], world["patient"])
    paths = {c["url"] for c in calls}
    # The matrix must reach the sensitive families (guards against the generator silently skipping).
    for needle in ("/status/stream", "/ws/", "/export/soap", "/audio", "/speakers", "notes:regenerate",
                   "transcript:remerge", "/api/patients/", "/api/admin/therapists", "/deactivate", "/reactivate",
                   "/api/auth/logout", "/api/auth/password", "/links", "/notes/review", "/notes/versions/1",
                   "notes:sign", "/notes/flags/f1/review", "/notes/addenda", "/export/pdf", "/export/ehr",
                   "/api/therapists/me/voice", ":retry", ":cancel", "/segments/0"):
        assert any(needle in p for p in paths), needle
    assert any(c["method"] == "DELETE" and "/api/patients/" in c["url"] for c in calls)
    assert any(c["method"] == "DELETE" and "/api/sessions/" in c["url"] for c in calls)


def test_without_token_every_route_is_401(world):
    gw = world["gw"]
    for call in _calls(gw.app, world["session"], world["patient"], world["target"]):
        if call["kind"] == "ws":
            assert _ws_rejected(gw, call["url"]) == 403, call["url"]
            bad = _ws_rejected(gw, call["url"] + "?token=not-a-jwt")
            assert bad == 403, call["url"]
            continue
        response = _http(gw, None, call)
        assert response.status_code == 401, (call["method"], call["url"], response.status_code, response.text[:200])
        assert response.headers.get("www-authenticate", "").lower().startswith("bearer")
        assert response.json()["detail"]


def _as_stranger(world, who: str) -> None:
    """``who`` (another therapist, or an admin) is signed in and is not A: A's sessions and
    patients are 404 with none of A's data; admin routes answer by role."""
    gw = world["gw"]
    for call in _calls(gw.app, world["session"], world["patient"], world["target"]):
        if call["kind"] == "ws":
            link = gw.link(world[who], world["session"], "stream")
            assert _ws_rejected(gw, f"{call['url']}?token={link}") == 403, call["url"]
            continue
        response = _http(gw, gw.token(world[who]), call)  # a fresh sign-in each: logout ends one
        where = (who, call["method"], call["url"], response.status_code, response.text[:300])
        if call["scope"] == "owned":
            assert response.status_code == 404, where
            assert response.json()["detail"].endswith("not found"), where
        elif call["scope"] == "admin" and who != "admin":
            assert response.status_code == 403, where
        else:
            assert response.status_code < 300, where
        # An admin sees accounts (A's id and email), never A's patients, sessions or words.
        markers = world["markers"][:-1] if call["scope"] == "admin" else world["markers"]
        for marker in markers:
            assert marker not in response.text, (marker, where)


def test_other_therapist_gets_404_and_no_data(world):
    _as_stranger(world, "b")
    # Nothing B did changed A's data: the session still exists with its original labels.
    token_a = world["gw"].token(world["a"])
    with world["gw"].client(token_a) as client:
        detail = client.get(f"/api/sessions/{world['session']}").json()
    assert not any(s.get("display_name") == "Dr Who" for s in detail["speakers"])
    assert detail["status"] == "processed"


def test_admin_manages_accounts_but_reads_no_patient_data(world):
    _as_stranger(world, "admin")
    gw = world["gw"]
    with gw.client(gw.token(world["admin"])) as client:
        accounts = {row["id"]: row for row in client.get("/api/admin/therapists").json()}
    # the matrix ended with the target reactivated and its password reset
    assert accounts[str(world["target"])]["active"] is True
    assert accounts[str(world["deactivated"])]["active"] is False


def test_deactivated_account_is_401_everywhere(world):
    """Signed in before the deactivation: every route refuses its still-unexpired tokens."""
    gw = world["gw"]
    token = world["deactivated_token"]
    for call in _calls(gw.app, world["session"], world["patient"], world["target"]):
        if call["kind"] == "ws":
            link = gw.link(world["deactivated"], world["session"], "stream")
            assert _ws_rejected(gw, f"{call['url']}?token={link}") == 403, call["url"]
            continue
        response = _http(gw, token, call)
        assert response.status_code == 401, (call["method"], call["url"], response.status_code, response.text[:200])

    async def email_of(tid):
        async with gw.state.session_factory() as db:
            return (await db.execute(select(therapists.c.email).where(therapists.c.id == tid))).scalar_one()

    with gw.client() as client:
        login = client.post("/api/auth/token", data={"username": gw.call(email_of(world["deactivated"])),
                                                     "password": PASSWORD})
        assert login.status_code == 401
        pair = gw.sign_in(world["deactivated"])
        assert client.post("/api/auth/refresh", json={"refresh_token": pair.refresh_token}).status_code == 401


def test_websocket_closes_1008_before_accept(world, settings):
    """Seen from inside the ASGI app (TestClient), the refusal is a close with 1008."""
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

    gw = world["gw"]
    app = create_app(settings, with_broker=False)
    link_b = gw.link(world["b"], world["session"], "stream")
    access_a = gw.token(world["a"])  # an access token is not a link
    audio_link_a = gw.link(world["a"], world["session"], "audio")  # a link for another purpose
    with TestClient(app) as client:
        for query in ("", "?token=garbage", f"?token={link_b}", f"?token={access_a}", f"?token={audio_link_a}"):
            with pytest.raises(WebSocketDisconnect) as info:
                with client.websocket_connect(f"/api/sessions/ws/{world['session']}{query}") as ws:
                    ws.receive_json()
            assert info.value.code == 1008, query


def test_owner_gets_every_route(world, settings):
    """The same generated calls succeed for the owner (except DELETE/upload, run on a spare session)."""
    gw = world["gw"]
    spare = gw.call(add_session(gw, world["a"], world["patient"]))
    for call in _calls(gw.app, spare, world["patient"], world["target"]):
        if call["kind"] == "ws":
            link = gw.link(world["a"], spare, "stream")
            message = asyncio.run(_ws_connect(gw.url.replace("http://", "ws://") + f"{call['url']}?token={link}"))
            assert json.loads(message)["seq"] == 1
            continue
        if call["method"] == "DELETE":
            continue
        response = _http(gw, gw.token(world["a"]), call)
        where = (call["method"], call["url"], response.status_code, response.text[:300])
        if call["url"].endswith((":retry", ":cancel")):  # a processed session: reached, and refused for its state
            assert response.status_code == 409 and "processed" in response.json()["detail"], where
            continue
        assert response.status_code == 403 if call["scope"] == "admin" else response.status_code < 300, where
    with gw.client(gw.token(world["a"])) as client:
        response = client.delete(f"/api/sessions/{spare}")
        assert response.status_code == 204
        assert client.get(f"/api/sessions/{spare}").status_code == 404

    async def leftovers():
        async with gw.state.session_factory() as db:
            return (await db.execute(select(sessions.c.id).where(sessions.c.id == spare))).all()

    assert gw.call(leftovers()) == []
    assert not (Path(gw.settings.blob_dir) / session_prefix(spare)).exists()


def test_login_and_refresh_issue_working_tokens(world):
    gw = world["gw"]

    async def email_of(tid):
        async with gw.state.session_factory() as db:
            return (await db.execute(select(therapists.c.email).where(therapists.c.id == tid))).scalar_one()

    email = gw.call(email_of(world["a"]))
    with gw.client() as client:
        bad = client.post("/api/auth/token", data={"username": email, "password": "wrong-password"})
        assert bad.status_code == 401 and bad.json()["detail"]
        good = client.post("/api/auth/token", data={"username": email, "password": PASSWORD})
        assert good.status_code == 200
        tokens = good.json()
        assert client.get("/api/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}).status_code == 200
        # a refresh token is not an access token
        assert client.get("/api/auth/me", headers={"Authorization": f"Bearer {tokens['refresh_token']}"}).status_code == 401
        again = client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert again.status_code == 200
        assert client.post("/api/auth/refresh", json={"refresh_token": tokens["access_token"]}).status_code == 401
