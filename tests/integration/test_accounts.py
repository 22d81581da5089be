"""Sign-in and accounts through the real API (uvicorn on a real port, real PostgreSQL),
issue 11 items 5 and 6:

- login limits per client address and per account; X-Forwarded-For believed only from
  TB_TRUSTED_PROXIES;
- refresh-token rotation: each refresh token works once, a replay revokes the sign-in;
  logout ends the sign-in's refresh and access tokens;
- ``?token=`` takes only a signed link minted for that session and purpose;
- administrators create, deactivate, reactivate and reset accounts; a therapist changes
  their own password; every admin action is audited;
- deleting a patient deletes their sessions the way DELETE /api/sessions/{id} does;
- the admin command line works straight against the database.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from shared.blobstore import session_prefix
from shared.db.tables import audit_log, outbox, sessions
from services.gateway.auth import RateLimiter, parse_networks
from tests.integration.test_gateway_authz import (
    PASSWORD,
    LiveGateway,
    add_patient,
    add_session,
    add_therapist,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gw(settings):
    with LiveGateway(settings) as gateway:
        yield gateway


def _email() -> str:
    return f"acct-{uuid.uuid4().hex[:10]}@example.test"


def _login(gw, email: str, password: str = PASSWORD, xff: str | None = None):
    headers = {"X-Forwarded-For": xff} if xff else {}
    with gw.client() as client:
        return client.post("/api/auth/token", data={"username": email, "password": password}, headers=headers)


def _limits(gw, per_address: int, per_account: int, trusted: str = "") -> None:
    gw.state.login_limiter = RateLimiter(per_address)
    gw.state.account_limiter = RateLimiter(per_account)
    gw.state.trusted_proxies = parse_networks(trusted)


def _audit(gw, action: str) -> list:
    async def rows():
        async with gw.state.session_factory() as db:
            return (await db.execute(select(audit_log).where(audit_log.c.action == action))).all()

    return gw.call(rows())


def _signed_in(gw) -> tuple[uuid.UUID, str, dict]:
    """A new therapist, signed in through the API: (id, email, token response)."""
    email = _email()
    therapist_id = gw.call(add_therapist(gw, email))
    response = _login(gw, email)
    assert response.status_code == 200, response.text
    return therapist_id, email, response.json()


def _me(gw, access_token: str) -> int:
    with gw.client(access_token) as client:
        return client.get("/api/auth/me").status_code


def _refresh(gw, refresh_token: str):
    with gw.client() as client:
        return client.post("/api/auth/refresh", json={"refresh_token": refresh_token})


# --- login limits ----------------------------------------------------------------------------------
def test_spraying_many_emails_from_one_address_is_limited(gw):
    _limits(gw, per_address=5, per_account=100)
    answers = [_login(gw, _email(), "wrong-password") for _ in range(6)]
    assert [r.status_code for r in answers] == [401] * 5 + [429]
    assert int(answers[-1].headers["Retry-After"]) >= 1


def test_one_email_from_rotating_forwarded_addresses_is_limited(gw):
    """No trusted proxy: X-Forwarded-For is ignored. Even when it is believed, the
    per-account limit holds across addresses."""
    email = _email()
    _limits(gw, per_address=5, per_account=100)
    rotating = [_login(gw, _email(), "wrong-password", xff=f"203.0.113.{i}") for i in range(6)]
    assert rotating[-1].status_code == 429  # the header did not make six clients of one

    _limits(gw, per_address=100, per_account=5, trusted="127.0.0.1/32")
    answers = [_login(gw, email, "wrong-password", xff=f"198.51.100.{i}") for i in range(6)]
    assert [r.status_code for r in answers] == [401] * 5 + [429]
    assert int(answers[-1].headers["Retry-After"]) >= 1


def test_a_trusted_proxy_passes_on_the_client_address(gw):
    _limits(gw, per_address=3, per_account=100, trusted="127.0.0.0/8")
    # Three clients behind the proxy, each at its own limit; a spoofed left-most entry does not count.
    for client in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        codes = [_login(gw, _email(), "wrong-password", xff=f"10.9.9.{i}, {client}").status_code for i in range(3)]
        assert codes == [401, 401, 401], client
    assert _login(gw, _email(), "wrong-password", xff="192.0.2.1").status_code == 429


# --- refresh-token rotation, reuse detection, logout ---------------------------------------------------
def test_refresh_rotates_and_a_replayed_refresh_token_revokes_the_sign_in(gw):
    _limits(gw, 1000, 1000)
    _, _, first = _signed_in(gw)
    second = _refresh(gw, first["refresh_token"])
    assert second.status_code == 200
    second = second.json()
    assert second["refresh_token"] != first["refresh_token"] and _me(gw, second["access_token"]) == 200

    replay = _refresh(gw, first["refresh_token"])  # the old one again: stolen or copied
    assert replay.status_code == 401
    # the whole sign-in is gone: the newest pair too, access token included
    assert _refresh(gw, second["refresh_token"]).status_code == 401
    assert _me(gw, second["access_token"]) == 401
    assert _me(gw, first["access_token"]) == 401


def test_logout_ends_this_sign_in_only(gw):
    _limits(gw, 1000, 1000)
    _, email, tokens = _signed_in(gw)
    other = _login(gw, email).json()  # another device
    with gw.client(tokens["access_token"]) as client:
        assert client.post("/api/auth/logout").status_code == 204
    assert _me(gw, tokens["access_token"]) == 401
    assert _refresh(gw, tokens["refresh_token"]).status_code == 401
    assert _me(gw, other["access_token"]) == 200
    assert _refresh(gw, other["refresh_token"]).status_code == 200


def test_login_forgets_expired_refresh_tokens(gw):
    from datetime import datetime, timedelta, timezone

    from shared.db.tables import refresh_tokens

    _limits(gw, 1000, 1000)
    therapist_id, email, _ = _signed_in(gw)
    family = gw.sign_in(therapist_id).family_id
    expired_hash = f"expired-{uuid.uuid4().hex}"

    async def add_expired():
        async with gw.state.session_factory() as db, db.begin():
            await db.execute(refresh_tokens.insert().values(
                token_hash=expired_hash, family_id=family, expires_at=datetime.now(timezone.utc) - timedelta(days=1)))

    async def left():
        async with gw.state.session_factory() as db:
            return (await db.execute(select(refresh_tokens.c.token_hash)
                                     .where(refresh_tokens.c.family_id == family))).scalars().all()

    gw.call(add_expired())
    assert expired_hash in gw.call(left())
    assert _login(gw, email).status_code == 200
    remaining = gw.call(left())
    assert expired_hash not in remaining and len(remaining) == 1  # the live one of that sign-in stays


# --- ?token= only as a signed link --------------------------------------------------------------------
def test_query_token_must_be_a_link_for_that_session_and_purpose(gw):
    _limits(gw, 1000, 1000)
    therapist_id, _, tokens = _signed_in(gw)
    session_id = gw.call(add_session(gw, therapist_id))
    other_session = gw.call(add_session(gw, therapist_id))
    audio = f"/api/sessions/{session_id}/audio"
    with gw.client() as anonymous:
        assert anonymous.get(audio, params={"token": tokens["access_token"]}).status_code == 401
    with gw.client(tokens["access_token"]) as client:
        minted = client.post(f"/api/sessions/{session_id}/links", json={"purpose": "audio"})
        assert minted.status_code == 200 and minted.json()["expires_in"] == gw.settings.link_token_ttl_s
        link = minted.json()["token"]
        export_link = client.post(f"/api/sessions/{session_id}/links", json={"purpose": "export"}).json()["token"]
        assert client.get(audio).status_code == 200  # the header still works
    with gw.client() as anonymous:
        assert anonymous.get(audio, params={"token": link}).status_code == 200
        assert anonymous.get(f"/api/sessions/{session_id}/export/txt", params={"token": link}).status_code == 401
        assert anonymous.get(f"/api/sessions/{session_id}/export/txt", params={"token": export_link}).status_code == 200
        assert anonymous.get(f"/api/sessions/{other_session}/audio", params={"token": link}).status_code == 401
        assert anonymous.get("/api/auth/me", params={"token": link}).status_code == 401
        family = gw.sign_in(therapist_id).family_id
        expired = gw.state.tokens.link(therapist_id, family, session_id, "audio", ttl_s=-1)
        assert anonymous.get(audio, params={"token": expired}).status_code == 401
    with gw.client(tokens["access_token"]) as client:
        assert client.post("/api/auth/logout").status_code == 204
    with gw.client() as anonymous:  # a link dies with the sign-in that minted it
        assert anonymous.get(audio, params={"token": link}).status_code == 401


# --- accounts ----------------------------------------------------------------------------------------
def test_admin_creates_deactivates_reactivates_and_resets_accounts(gw):
    _limits(gw, 1000, 1000)
    admin = gw.call(add_therapist(gw, role="admin"))
    email = _email()
    with gw.client(gw.token(admin)) as client:
        created = client.post("/api/admin/therapists", json={"email": email, "password": "first-long-password"})
        assert created.status_code == 201 and created.json()["role"] == "therapist"
        assert client.post("/api/admin/therapists", json={"email": email, "password": "x" * 12}).status_code == 409
    account = uuid.UUID(created.json()["id"])
    tokens = _login(gw, email, "first-long-password").json()
    assert _me(gw, tokens["access_token"]) == 200

    with gw.client(gw.token(admin)) as client:
        assert client.post(f"/api/admin/therapists/{account}/deactivate").json()["active"] is False
    assert _me(gw, tokens["access_token"]) == 401
    assert _refresh(gw, tokens["refresh_token"]).status_code == 401
    refused = _login(gw, email, "first-long-password")
    assert refused.status_code == 401 and "deactivated" in refused.json()["detail"]

    with gw.client(gw.token(admin)) as client:
        assert client.post(f"/api/admin/therapists/{account}/reactivate").json()["active"] is True
        tokens = _login(gw, email, "first-long-password").json()
        reset = client.post(f"/api/admin/therapists/{account}/password", json={"new_password": "second-long-password"})
        assert reset.status_code == 200
    assert _me(gw, tokens["access_token"]) == 401  # a reset ends every sign-in
    assert _login(gw, email, "first-long-password").status_code == 401
    assert _login(gw, email, "second-long-password").status_code == 200

    for action in ("admin.create_therapist", "admin.deactivate", "admin.reactivate", "admin.reset_password"):
        assert any(r.therapist_id == admin and r.target_id == account for r in _audit(gw, action)), action


def test_a_therapist_changes_their_own_password(gw):
    _limits(gw, 1000, 1000)
    therapist_id, email, tokens = _signed_in(gw)
    elsewhere = _login(gw, email).json()
    with gw.client(tokens["access_token"]) as client:
        wrong = client.post("/api/auth/password", json={"current_password": "not-it", "new_password": "a-new-long-password"})
        assert wrong.status_code == 403
        assert client.post("/api/auth/password", json={"current_password": PASSWORD,
                                                       "new_password": "a-new-long-password"}).status_code == 204
    assert _login(gw, email, PASSWORD).status_code == 401
    assert _login(gw, email, "a-new-long-password").status_code == 200
    assert _me(gw, tokens["access_token"]) == 200  # this sign-in stays
    assert _me(gw, elsewhere["access_token"]) == 401  # the others end
    assert any(r.target_id == therapist_id for r in _audit(gw, "password.change"))


def test_deleting_a_patient_deletes_their_sessions_like_session_delete(gw):
    _limits(gw, 1000, 1000)
    therapist_id, _, tokens = _signed_in(gw)
    patient = gw.call(add_patient(gw, therapist_id, "Patient To Delete"))
    kept_patient = gw.call(add_patient(gw, therapist_id, "Patient To Keep"))
    doomed = [gw.call(add_session(gw, therapist_id, patient)) for _ in range(2)]
    kept = gw.call(add_session(gw, therapist_id, kept_patient))
    with gw.client(tokens["access_token"]) as client:
        assert client.delete(f"/api/patients/{patient}").status_code == 204
        assert client.get(f"/api/patients/{patient}").status_code == 404
        assert client.get(f"/api/sessions/{kept}").status_code == 200
        for session_id in doomed:
            assert client.get(f"/api/sessions/{session_id}").status_code == 404

    async def rows():
        async with gw.state.session_factory() as db:
            left = (await db.execute(select(sessions.c.id).where(sessions.c.id.in_(doomed)))).all()
            events = (await db.execute(select(outbox.c.key).where(outbox.c.topic == "session.deleted",
                                                                  outbox.c.key.in_([str(s) for s in doomed])))).all()
            return left, sorted(r.key for r in events)

    left, deleted_events = gw.call(rows())
    assert left == [] and deleted_events == sorted(str(s) for s in doomed)
    for session_id in doomed:
        assert not (Path(gw.settings.blob_dir) / session_prefix(session_id)).exists()
    assert (Path(gw.settings.blob_dir) / session_prefix(kept)).exists()
    assert any(r.target_id == patient for r in _audit(gw, "patient.delete"))


# --- the admin command line ------------------------------------------------------------------------------
def _admin_cli(service_env: dict, *args: str, password: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.gateway.admin", *args], cwd=ROOT, env=service_env,
                          input=(password + "\n") if password is not None else None, capture_output=True, text=True,
                          timeout=120)


def test_admin_command_line_bootstraps_and_manages_accounts(gw, service_env):
    _limits(gw, 1000, 1000)
    email = _email()
    created = _admin_cli(service_env, "create-admin", email, "--password-stdin", password="bootstrap-password")
    assert created.returncode == 0, created.stderr
    admin_id = uuid.UUID(created.stdout.strip())
    tokens = _login(gw, email, "bootstrap-password").json()
    with gw.client(tokens["access_token"]) as client:
        me = client.get("/api/auth/me").json()
        assert me["role"] == "admin" and client.get("/api/admin/therapists").status_code == 200

    assert _admin_cli(service_env, "create-admin", email, "--password-stdin", password="another-password").returncode == 1
    assert _admin_cli(service_env, "reset-password", email, "--password-stdin", password="short").returncode == 2
    assert _admin_cli(service_env, "deactivate", email).returncode == 0
    assert _me(gw, tokens["access_token"]) == 401
    assert _login(gw, email, "bootstrap-password").status_code == 401
    assert _admin_cli(service_env, "reactivate", email).returncode == 0
    assert _admin_cli(service_env, "reset-password", email, "--password-stdin", password="reset-long-password").returncode == 0
    assert _login(gw, email, "reset-long-password").status_code == 200
    assert _admin_cli(service_env, "deactivate", "nobody@example.test").returncode == 1
    for action in ("cli.create_admin", "cli.deactivate", "cli.reactivate", "cli.reset_password"):
        assert any(r.target_id == admin_id and r.therapist_id is None for r in _audit(gw, action)), action
