"""The gateway's dependencies, built once by create_app and injected via FastAPI.

What every service has (settings, database, blob store, metrics, broker, outbox relay)
comes from the shared ServiceRuntime; the rest is the gateway's own (tokens, passwords,
rate limits, the status hub that wakes live streams)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.blobstore import BlobStore
from shared.outbox import OutboxRelay
from shared.runtime import ServiceRuntime
from shared.settings import Settings
from shared.telemetry import ServiceMetrics
from services.gateway.auth import Network, PasswordService, RateLimiter, TokenService
from services.gateway.statushub import StatusHub


@dataclass
class GatewayState:
    runtime: ServiceRuntime
    tokens: TokenService
    passwords: PasswordService
    login_limiter: RateLimiter  # per client address
    upload_limiter: RateLimiter
    hub: StatusHub
    account_limiter: RateLimiter | None = None  # logins per account email
    trusted_proxies: tuple[Network, ...] = ()
    broker_ready: bool = False
    extra: dict = field(default_factory=dict)  # test knobs, e.g. "heartbeat_s"

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def engine(self) -> AsyncEngine:
        return self.runtime.engine

    @property
    def session_factory(self) -> async_sessionmaker[AsyncSession]:
        return self.runtime.session_factory

    @property
    def blobs(self) -> BlobStore:
        return self.runtime.blobs

    @property
    def metrics(self) -> ServiceMetrics:
        return self.runtime.metrics

    @property
    def relay(self) -> OutboxRelay | None:
        return self.runtime.relay

    @property
    def broker_enabled(self) -> bool:
        return self.runtime.broker_enabled

    def publish_soon(self) -> None:
        """After committing outbox rows: publish them now rather than at the next poll."""
        if self.runtime.relay is not None:
            self.runtime.relay.wake()
