"""Therapist authentication: argon2 password hashes, short-lived JWT access tokens,
refresh tokens, and a small per-key rate limiter for login and uploads."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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
    """argon2id hashing. Each hash costs tens of milliseconds of CPU and 64 MiB, so the
    async methods run it on a small pool of its own: never on the event loop, and a
    flood of logins queues there instead of taking every thread or all memory.

    An unknown email is verified against a dummy hash with the same parameters, so it
    costs what a known one does and the answer time does not tell which emails exist."""

    def __init__(self, max_concurrent: int = 2) -> None:
        self._hasher = PasswordHasher()
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))
        self._pool = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="argon2")

    def hash(self, password: str) -> str:
        """Blocking: for scripts and tests; request handlers await ``hash_async``."""
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """Blocking: for scripts and tests; request handlers await ``verify_async``.
        ``password_hash`` None (no such account) still costs one full verification."""
        try:
            return self._hasher.verify(password_hash or self._dummy_hash, password) and password_hash is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def hash_async(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._hasher.hash, password)

    async def verify_async(self, password_hash: str | None, password: str) -> bool:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.verify, password_hash, password)


def key_id(secret: str) -> str:
    """A token's ``kid``: names the secret that signed it without revealing it (a hash of
    a 32-byte random secret cannot be reversed)."""
    return hashlib.sha256(b"therapybridge-jwt-kid:" + secret.encode()).hexdigest()[:16]


class TokenService:
    """HS256 tokens (docs/adr/0005-jwt-signing.md). Each carries the ``kid`` of its secret;
    ``previous_secrets`` still verify during a rotation, then are dropped from settings."""

    def __init__(self, secret: str, access_ttl_s: int, refresh_ttl_s: int, previous_secrets: Sequence[str] = ()) -> None:
        self._secret, self._access_ttl_s, self._refresh_ttl_s = secret, access_ttl_s, refresh_ttl_s
        self._kid = key_id(secret)
        self._verifying = {key_id(s): s for s in previous_secrets} | {self._kid: secret}

    def _encode(self, subject: str, kind: str, ttl: int) -> str:
        now = int(time.time())
        claims = {"sub": subject, "typ": kind, "iat": now, "exp": now + ttl, "jti": uuid.uuid4().hex}
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM, headers={"kid": self._kid})

    def issue(self, therapist_id: uuid.UUID) -> TokenPair:
        return TokenPair(
            access_token=self._encode(str(therapist_id), "access", self._access_ttl_s),
            refresh_token=self._encode(str(therapist_id), "refresh", self._refresh_ttl_s),
            expires_in=self._access_ttl_s,
        )

    def _secret_for(self, token: str) -> str:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise AuthError("invalid or expired token") from exc
        if kid is None:  # issued before tokens carried a kid: only the current secret
            return self._secret
        if not isinstance(kid, str) or kid not in self._verifying:
            raise AuthError("invalid or expired token")
        return self._verifying[kid]

    def verify(self, token: str, kind: str = "access") -> uuid.UUID:
        try:
            claims = jwt.decode(token, self._secret_for(token), algorithms=[ALGORITHM],
                                options={"require": ["exp", "sub"]})
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
