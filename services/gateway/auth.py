"""Therapist authentication: argon2 password hashes, short-lived JWT access tokens,
refresh tokens of a revocable sign-in (family), signed links for the places a browser
cannot send a header, the client address behind trusted proxies, and a small per-key
rate limiter for login and uploads."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
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
    family_id: uuid.UUID
    refresh_expires_at: int  # unix seconds


@dataclass(frozen=True)
class TokenClaims:
    subject: uuid.UUID
    family_id: uuid.UUID | None = None  # access and refresh tokens
    session_id: uuid.UUID | None = None  # link tokens
    purpose: str | None = None  # link tokens: audio, export or stream


LINK_PURPOSES = ("audio", "export", "stream")


def refresh_token_hash(token: str) -> str:
    """What the database keeps of a refresh token: enough to recognise it, not to use it."""
    return hashlib.sha256(token.encode()).hexdigest()


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

    def _encode(self, subject: str, kind: str, ttl: int, **extra) -> str:
        now = int(time.time())
        claims = {"sub": subject, "typ": kind, "iat": now, "exp": now + ttl, "jti": uuid.uuid4().hex, **extra}
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM, headers={"kid": self._kid})

    def issue(self, therapist_id: uuid.UUID, family_id: uuid.UUID) -> TokenPair:
        """A token pair of one sign-in: both carry its family id (checked on every request)."""
        fam = str(family_id)
        return TokenPair(
            access_token=self._encode(str(therapist_id), "access", self._access_ttl_s, fam=fam),
            refresh_token=self._encode(str(therapist_id), "refresh", self._refresh_ttl_s, fam=fam),
            expires_in=self._access_ttl_s,
            family_id=family_id,
            refresh_expires_at=int(time.time()) + self._refresh_ttl_s,
        )

    def link(self, therapist_id: uuid.UUID, family_id: uuid.UUID, session_id: uuid.UUID, purpose: str,
             ttl_s: int) -> str:
        """A short-lived token for one session and one purpose, to put in a URL; it dies
        with the sign-in that minted it."""
        if purpose not in LINK_PURPOSES:
            raise ValueError(f"unknown link purpose {purpose!r}")
        return self._encode(str(therapist_id), "link", ttl_s, fam=str(family_id), sid=str(session_id),
                            purpose=purpose)

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
        return self.claims(token, kind).subject

    def claims(self, token: str, kind: str = "access") -> TokenClaims:
        try:
            claims = jwt.decode(token, self._secret_for(token), algorithms=[ALGORITHM],
                                options={"require": ["exp", "sub"]})
        except jwt.PyJWTError as exc:
            raise AuthError("invalid or expired token") from exc
        if claims.get("typ") != kind:
            raise AuthError(f"not {'an' if kind[0] in 'aeiou' else 'a'} {kind} token")
        try:
            return TokenClaims(
                subject=uuid.UUID(claims["sub"]),
                family_id=uuid.UUID(claims["fam"]) if "fam" in claims else None,
                session_id=uuid.UUID(claims["sid"]) if "sid" in claims else None,
                purpose=claims.get("purpose"),
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise AuthError("invalid token claims") from exc


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(spec: str) -> tuple[Network, ...]:
    """TB_TRUSTED_PROXIES: comma-separated CIDRs (a bare address is a /32 or /128)."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip())


def _trusted(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The address a request came from. X-Forwarded-For is believed only when the direct
    peer is a trusted proxy, and then read from the right: each proxy appends the address
    it saw, so the first entry that is not itself a trusted proxy is the client (entries
    further left were written by the client and can be anything)."""
    peer = peer or "unknown"
    if not forwarded_for or not _trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


class RateLimiter:
    """Sliding-window limit per key, in process memory. Behind several replicas the
    effective limit multiplies by the replica count; a shared store would fix that."""

    SWEEP_EVERY = 1000  # calls between sweeps of idle keys, so sprayed keys do not pile up

    def __init__(self, per_minute: int, clock=time.monotonic) -> None:
        self._limit, self._clock = per_minute, clock
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._calls = 0

    def _sweep(self, now: float) -> None:
        for key in [k for k, hits in self._hits.items() if not hits or now - hits[-1] > 60]:
            del self._hits[key]

    def allow(self, key: str) -> tuple[bool, float]:
        now = self._clock()
        self._calls += 1
        if self._calls % self.SWEEP_EVERY == 0:
            self._sweep(now)
        hits = self._hits[key]
        while hits and now - hits[0] > 60:
            hits.popleft()
        if len(hits) >= self._limit:
            return False, 60 - (now - hits[0])
        hits.append(now)
        return True, 0.0
