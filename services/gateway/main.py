"""Gateway entry point: wires the FastAPI app onto the shared ServiceRuntime (the same
start-up, logging, tracing, metrics, database, broker and outbox relay as every service;
the app's lifespan starts the runtime and stops it, flushing the outbox) and serves it
with uvicorn."""

from __future__ import annotations

from contextlib import asynccontextmanager
from uuid import UUID

from fastapi import FastAPI
from faststream.kafka import KafkaMessage

from shared.blobstore import SealedBlobStore
from shared.broker import consumer_options
from shared.contracts.events import Topic
from shared.logging import get_logger
from shared.runtime import ServiceRuntime
from shared.settings import InsecureSettingsError, Settings, load_settings
from shared.topology import GATEWAY
from services.gateway import queries, webapp
from services.gateway.auth import PasswordService, RateLimiter, TokenService, parse_networks
from services.gateway.routes import api_router
from services.gateway.retention import schedule_retention
from services.gateway.state import GatewayState
from services.gateway.statushub import StatusHub

log = get_logger(__name__)


def build_state(runtime: ServiceRuntime) -> GatewayState:
    settings = runtime.settings
    return GatewayState(
        runtime=runtime,
        tokens=TokenService(settings.jwt_signing_secret(), settings.jwt_access_ttl_s, settings.jwt_refresh_ttl_s,
                            previous_secrets=settings.jwt_previous_secret_values()),
        passwords=PasswordService(),
        login_limiter=RateLimiter(settings.login_rate_per_minute),
        upload_limiter=RateLimiter(settings.upload_rate_per_minute),
        hub=StatusHub(settings.stream_max_per_therapist, settings.stream_max_total),
        account_limiter=RateLimiter(settings.login_account_rate_per_minute),
        trusted_proxies=parse_networks(settings.trusted_proxies),
    )


def wake_streams_on_status(runtime: ServiceRuntime, hub: StatusHub) -> None:
    """Every replica sees every status and deletion: no consumer group, no commits, start at
    the end; history comes from PostgreSQL, the bus only wakes streams up, which then read
    again (and end if the session is gone) (docs/adr/0003-streams-read-the-database.md)."""
    options = consumer_options(runtime.settings, GATEWAY.group)
    options.update(auto_offset_reset="latest")
    options.pop("ack_policy", None)

    @runtime.broker.subscriber(*GATEWAY.subscription([Topic.SESSION_STATUS, Topic.SESSION_DELETED]), **options)
    async def on_status(msg: KafkaMessage) -> None:
        # The record key is the session id (every event is keyed by it): no payload
        # parsing, so a wake-up does not depend on the payload's shape or encryption.
        try:
            session_id = UUID((msg.raw_message.key or b"").decode())
        except (ValueError, UnicodeDecodeError):
            return
        hub.notify(session_id)


async def ensure_demo_therapist(state: GatewayState) -> None:
    settings = state.settings
    async with state.session_factory() as db, db.begin():
        if await queries.therapist_by_email(db, settings.demo_email) is None:
            await queries.insert_therapist(db, settings.demo_email, await state.passwords.hash_async(settings.demo_password),
                                           "Demo Therapist")


def create_app(settings: Settings, with_broker: bool = True) -> FastAPI:
    """The gateway app. with_broker=False serves the API without the bus (tests): no
    relay, no status wake-ups, /readyz reports the broker as disabled."""
    settings.jwt_signing_secret()  # first: refuse an unusable secret before anything opens
    runtime = ServiceRuntime.create(settings, "gateway", with_broker=with_broker)
    state = build_state(runtime)
    if isinstance(runtime.blobs, SealedBlobStore):  # an upload's audio is sealed with its new session's key
        runtime.blobs.create_keys = True
    schedule_retention(state)
    if with_broker:
        wake_streams_on_status(runtime, state.hub)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with runtime.running():
            state.broker_ready = runtime.broker_enabled
            if settings.create_demo_user:
                await ensure_demo_therapist(state)
            log.info("gateway_started")
            yield

    app = FastAPI(
        title="TherapyBridge API",
        version="0.1.0",
        description="Upload therapy-session recordings; get speaker-labelled transcripts, clinical notes and live progress.",
        lifespan=lifespan,
        docs_url=None,  # served by webapp.add_docs_routes from local assets
        redoc_url=None,
    )
    app.state.gateway = state
    webapp.add_middleware(app, settings, runtime.metrics)
    webapp.add_tracing(app)
    webapp.add_error_handlers(app)
    app.include_router(api_router)
    webapp.add_site_routes(app, state)
    webapp.add_docs_routes(app)
    return app


def main() -> None:
    import uvicorn

    settings = load_settings("gateway")
    try:
        app = create_app(settings)
    except InsecureSettingsError as exc:
        raise SystemExit(f"gateway: refusing to start: {exc}") from None
    # proxy_headers=False: uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1 and
    # rewrite the client address; the app reads it itself, only from TB_TRUSTED_PROXIES.
    uvicorn.run(app, host=settings.gateway_host, port=settings.gateway_port, proxy_headers=False,
                log_level="warning", timeout_graceful_shutdown=3)


if __name__ == "__main__":
    main()
