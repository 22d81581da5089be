"""JWT signing keys (issue 11, item 1): a token forged with the old public default is
refused; tokens name their key by id (kid) without revealing it; a rotation keeps the
previous secret verifying until it is removed from the settings."""

from __future__ import annotations

import secrets
import time
import uuid

import jwt
import pytest
from pydantic import ValidationError

from services.gateway.auth import AuthError, TokenService, key_id
from shared.settings import Settings

THERAPIST = uuid.uuid4()


def _tokens(secret: str, previous: tuple[str, ...] = ()) -> TokenService:
    return TokenService(secret, 900, 3600, previous_secrets=previous)


@pytest.mark.filterwarnings("ignore:The HMAC key")  # the forger's short key is the point
def test_a_token_forged_with_the_old_default_is_refused():
    now = int(time.time())
    claims = {"sub": str(THERAPIST), "typ": "access", "iat": now, "exp": now + 900}
    service = _tokens(secrets.token_urlsafe(48))
    for headers in (None, {"kid": key_id("change-me-in-production")}):
        forged = jwt.encode(claims, "change-me-in-production", algorithm="HS256", headers=headers)
        with pytest.raises(AuthError):
            service.verify(forged)


def test_tokens_carry_a_key_id_that_does_not_reveal_the_secret():
    secret = secrets.token_urlsafe(48)
    token = _tokens(secret).issue(THERAPIST, uuid.uuid4()).access_token
    kid = jwt.get_unverified_header(token)["kid"]
    assert kid == key_id(secret) and secret not in kid and len(kid) == 16
    assert _tokens(secret).verify(token) == THERAPIST


def test_rotation_keeps_previous_tokens_until_the_old_secret_is_dropped():
    old, new = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    issued_before = _tokens(old).issue(THERAPIST, uuid.uuid4())
    during = _tokens(new, previous=(old,))
    assert during.verify(issued_before.access_token) == THERAPIST
    assert during.verify(issued_before.refresh_token, kind="refresh") == THERAPIST
    fresh = during.issue(THERAPIST, uuid.uuid4()).access_token
    assert jwt.get_unverified_header(fresh)["kid"] == key_id(new)  # new tokens use the new key
    after = _tokens(new)
    with pytest.raises(AuthError):
        after.verify(issued_before.access_token)
    assert after.verify(fresh) == THERAPIST


def test_previous_secrets_come_from_settings_and_are_checked_too():
    current, old = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    settings = Settings(jwt_secret=current, jwt_previous_secrets=f"{old}, ")
    assert settings.jwt_previous_secret_values() == [old]
    with pytest.raises(ValidationError, match="TB_JWT_PREVIOUS_SECRETS is a known placeholder"):
        Settings(jwt_secret=current, jwt_previous_secrets=f"{old},change-me-in-production")
