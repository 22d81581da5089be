"""Therapist authentication: argon2 password hashes, short-lived JWT access tokens,
refresh tokens, and a small per-key rate limiter for login and uploads."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

ALGORITHM = "HS256"


class AuthError(Exception):
    pass


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


class PasswordService:
    def __init__(self) -> None:
        self._hasher = PasswordHasher()

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


class TokenService:
    def __init__(self, secret: str, access_ttl_s: int, refresh_ttl_s: int) -> None:
        self._secret, self._access_ttl_s, self._refresh_ttl_s = secret, access_ttl_s, refresh_ttl_s

    def _encode(self, subject: str, kind: str, ttl: int) -> str:
        now = int(time.time())
        claims = {"sub": subject, "typ": kind, "iat": now, "exp": now + ttl, "jti": uuid.uuid4().hex}
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def issue(self, therapist_id: uuid.UUID) -> TokenPair:
        return TokenPair(
            access_token=self._encode(str(therapist_id), "access", self._access_ttl_s),
            refresh_token=self._encode(str(therapist_id), "refresh", self._refresh_ttl_s),
            expires_in=self._access_ttl_s,
        )

    def verify(self, token: str, kind: str = "access") -> uuid.UUID:
        try:
            claims = jwt.decode(token, self._secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]})
        except jwt.PyJWTError as exc:
            raise AuthError("invalid or expired token") from exc
        if claims.get("typ") != kind:
            raise AuthError(f"not an {kind} token")
        try:
            return uuid.UUID(claims["sub"])
        except ValueError as exc:
            raise AuthError("invalid token subject") from exc


class RateLimiter:
    """Sliding-window limit per key, in process memory. Behind several replicas the
    effective limit multiplies by the replica count; a shared store would fix that."""

    def __init__(self, per_minute: int, clock=time.monotonic) -> None:
        self._limit, self._clock = per_minute, clock
        self._hits: dict[str, deque[float]] = defaultdict(deque)

    def allow(self, key: str) -> tuple[bool, float]:
        now = self._clock()
        hits = self._hits[key]
        while hits and now - hits[0] > 60:
            hits.popleft()
        if len(hits) >= self._limit:
            return False, 60 - (now - hits[0])
        hits.append(now)
        return True, 0.0
