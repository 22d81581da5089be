"""Pure parts of sign-in: whom X-Forwarded-For is believed from, what tokens carry, and
that the rate limiter forgets idle keys (so spraying cannot grow it without bound)."""

from __future__ import annotations

import secrets
import uuid

import pytest

from services.gateway.auth import AuthError, RateLimiter, TokenService, client_address, parse_networks

TRUSTED = parse_networks("10.0.0.0/8, 192.168.1.1")


@pytest.mark.parametrize(("peer", "xff", "expected"), [
    ("203.0.113.5", None, "203.0.113.5"),
    ("203.0.113.5", "198.51.100.1", "203.0.113.5"),  # untrusted peer: the header is ignored
    ("10.1.2.3", "198.51.100.1", "198.51.100.1"),  # trusted proxy: its client
    ("10.1.2.3", "1.1.1.1, 198.51.100.1", "198.51.100.1"),  # left-most entries are the client's own claims
    ("10.1.2.3", "198.51.100.1, 10.9.9.9", "198.51.100.1"),  # two trusted hops
    ("192.168.1.1", "10.0.0.1, 10.0.0.2", "10.0.0.1"),  # only proxies: the left-most
    ("10.1.2.3", "", "10.1.2.3"),
    (None, "198.51.100.1", "unknown"),
])
def test_client_address(peer, xff, expected):
    assert client_address(peer, xff, TRUSTED) == expected


def test_bad_trusted_proxy_setting_is_refused():
    from pydantic import ValidationError

    from shared.settings import Settings

    with pytest.raises(ValidationError):
        Settings(env="development", trusted_proxies="10.0.0.0/8, not-a-network")


def test_tokens_carry_their_sign_in_and_links_their_scope():
    tokens = TokenService(secrets.token_urlsafe(48), 60, 600)
    who, family, session = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    pair = tokens.issue(who, family)
    assert tokens.claims(pair.access_token).family_id == family
    assert tokens.claims(pair.refresh_token, "refresh").family_id == family
    link = tokens.link(who, family, session, "audio", 30)
    claims = tokens.claims(link, "link")
    assert (claims.subject, claims.family_id, claims.session_id, claims.purpose) == (who, family, session, "audio")
    with pytest.raises(AuthError):
        tokens.claims(link)  # a link is not an access token
    with pytest.raises(AuthError):
        tokens.claims(pair.access_token, "link")
    with pytest.raises(ValueError):
        tokens.link(who, family, session, "everything", 30)


def test_rate_limiter_limits_and_forgets_idle_keys():
    now = [0.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    assert [limiter.allow("a")[0] for _ in range(3)] == [True, True, False]
    allowed, retry = limiter.allow("a")
    assert not allowed and 0 < retry <= 60
    for i in range(RateLimiter.SWEEP_EVERY):
        limiter.allow(f"spray-{i}")
    now[0] = 120.0
    for i in range(RateLimiter.SWEEP_EVERY):
        limiter.allow("b")
    assert set(limiter._hits) == {"b"}
