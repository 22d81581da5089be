"""Password hashing never runs on the gateway's event loop, and an unknown email costs
the same argon2 work as a known one (issue 11, item 5). Proven by what the gateway's
hasher is asked to do and on which thread, not by timing."""

from __future__ import annotations

import threading
import uuid

import pytest

from services.gateway.routes.admin import create_account
from services.gateway.auth import PasswordService
from services.gateway.schemas import AccountCreate
from tests.integration.test_gateway_authz import PASSWORD, LiveGateway, add_therapist


class SpyHasher:
    """Wraps the real argon2 hasher; records each call's thread and hash parameters."""

    def __init__(self, real) -> None:
        self.real, self.calls = real, []

    def _record(self, kind: str, encoded: str | None = None) -> None:
        params = encoded.rsplit("$", 2)[0] if encoded else None  # $argon2id$v=19$m=...,t=...,p=...
        self.calls.append((kind, threading.get_ident(), params))

    def verify(self, encoded: str, password: str) -> bool:
        self._record("verify", encoded)
        return self.real.verify(encoded, password)

    def hash(self, password: str) -> str:
        encoded = self.real.hash(password)
        self._record("hash", encoded)
        return encoded


@pytest.fixture(scope="module")
def gw(settings):
    with LiveGateway(settings, login_rate_per_minute=100000) as gateway:
        gateway.email = f"hash-{uuid.uuid4().hex[:8]}@example.test"
        gateway.call(add_therapist(gateway, gateway.email))
        yield gateway


@pytest.fixture
def spy(gw):
    real = gw.state.passwords._hasher
    gw.state.passwords._hasher = SpyHasher(real)
    yield gw.state.passwords._hasher
    gw.state.passwords._hasher = real


def _login(gw, email: str, password: str):
    with gw.client() as client:
        return client.post("/api/auth/token", data={"username": email, "password": password})


def test_logins_hash_off_the_loop_and_unknown_emails_cost_the_same(gw, spy):
    wrong = _login(gw, gw.email, "not-the-password")
    unknown = _login(gw, f"nobody-{uuid.uuid4().hex[:8]}@example.test", "not-the-password")
    right = _login(gw, gw.email, PASSWORD)
    assert (wrong.status_code, unknown.status_code, right.status_code) == (401, 401, 200)
    assert wrong.json() == unknown.json()
    assert [kind for kind, _, _ in spy.calls] == ["verify", "verify", "verify"]
    known_params, unknown_params = spy.calls[0][2], spy.calls[1][2]
    assert unknown_params == known_params and known_params.startswith("$argon2id$")
    assert all(thread != gw.thread.ident for _, thread, _ in spy.calls)


def test_creating_a_therapist_hashes_off_the_loop(gw, spy):
    async def create() -> None:
        async with gw.state.session_factory() as db, db.begin():
            body = AccountCreate(email=f"new-{uuid.uuid4().hex[:8]}@example.test", password="a-long-password-1",
                                 display_name="New Therapist")
            await create_account(db, gw.state, body, actor=None)

    gw.call(create())
    assert [kind for kind, _, _ in spy.calls] == ["hash"]
    assert spy.calls[0][1] != gw.thread.ident


def test_no_account_never_verifies_even_with_the_dummy_password():
    passwords = PasswordService()
    assert passwords.verify(None, "anything") is False
    known = passwords.hash("secret-password")
    assert passwords.verify(known, "secret-password") is True
    assert passwords.verify(known, "other") is False
