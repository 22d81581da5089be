"""The gateway's dependencies, built once in the app lifespan and injected via FastAPI."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.blobstore import BlobStore
from shared.outbox import OutboxRelay
from shared.settings import Settings
from shared.telemetry import ServiceMetrics
from services.gateway.auth import PasswordService, RateLimiter, TokenService
from services.gateway.statushub import StatusHub


@dataclass
class GatewayState:
    settings: Settings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    blobs: BlobStore
    tokens: TokenService
    passwords: PasswordService
    login_limiter: RateLimiter
    upload_limiter: RateLimiter
    hub: StatusHub
    metrics: ServiceMetrics
    broker: object | None = None
    relay: OutboxRelay | None = None
    broker_ready: bool = False
    extra: dict = field(default_factory=dict)
