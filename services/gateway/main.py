"""Gateway entry point: builds the FastAPI app (create_app) and serves it with uvicorn."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from faststream.kafka import KafkaMessage
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.blobstore import create_blob_store
from shared.broker import consumer_options, create_broker
from shared.contracts.events import SessionStatus, Topic
from shared.db.engine import create_engine, create_session_factory
from shared.instrumentation import HttpMetricsMiddleware
from shared.logging import configure_logging, get_logger
from shared.outbox import OutboxRelay, broker_publisher
from shared.settings import Settings
from shared.telemetry import ServiceMetrics, configure_tracing
from services.gateway.api import router, websocket_status
from services.gateway.auth import PasswordService, RateLimiter, TokenService
from services.gateway.state import GatewayState
from services.gateway.statushub import StatusHub
from services.gateway.uploads import UploadRejected

log = get_logger(__name__)
WEB_DIR = Path(__file__).parent / "web"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; media-src 'self' blob:; img-src 'self' data:; style-src 'self' 'unsafe-inline'",
    "Cache-Control": "no-store",
}


def build_state(settings: Settings) -> GatewayState:
    engine = create_engine(settings)
    return GatewayState(
        settings=settings,
        engine=engine,
        session_factory=create_session_factory(engine),
        blobs=create_blob_store(settings),
        tokens=TokenService(settings.jwt_secret, settings.jwt_access_ttl_s, settings.jwt_refresh_ttl_s),
        passwords=PasswordService(),
        login_limiter=RateLimiter(settings.login_rate_per_minute),
        upload_limiter=RateLimiter(settings.upload_rate_per_minute),
        hub=StatusHub(),
        metrics=ServiceMetrics("gateway"),
    )


async def ensure_demo_therapist(state: GatewayState) -> None:
    from sqlalchemy import select

    from shared.db.tables import therapists
    from services.gateway.api import create_therapist
    from services.gateway.schemas import TherapistCreate

    async with state.session_factory() as db, db.begin():
        email = state.settings.demo_email.lower()
        if (await db.execute(select(therapists.c.id).where(therapists.c.email == email))).first() is None:
            await create_therapist(db, state, TherapistCreate(email=email, password=state.settings.demo_password,
                                                              display_name="Demo Therapist"))


def create_app(settings: Settings, with_broker: bool = True) -> FastAPI:
    state = build_state(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        tasks: list[asyncio.Task] = []
        if with_broker:
            broker = create_broker(settings, "gateway", metrics=state.metrics)
            # Every replica sees every status: no consumer group, no commits, start at
            # the end; history comes from PostgreSQL, the bus only wakes streams up.
            options = consumer_options(settings, None)
            options.update(auto_offset_reset="latest")
            options.pop("ack_policy", None)

            @broker.subscriber(Topic.SESSION_STATUS.value, **options)
            async def on_status(msg: KafkaMessage) -> None:
                try:
                    status = SessionStatus.model_validate_json(msg.body)
                except ValueError:
                    return
                state.hub.notify(status.session_id)

            state.broker = broker
            state.relay = OutboxRelay(state.session_factory, broker_publisher(broker), settings.outbox_poll_interval_s)
            await broker.start()
            state.broker_ready = True
            tasks.append(asyncio.create_task(state.relay.run()))
        app.state.gateway = state
        if settings.create_demo_user:
            await ensure_demo_therapist(state)
        log.info("gateway_started")
        try:
            yield
        finally:
            if state.relay:
                state.relay.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if state.broker is not None:
                await state.broker.stop()
            await state.engine.dispose()

    app = FastAPI(
        title="TherapyBridge API",
        version="0.1.0",
        description="Upload therapy-session recordings; get speaker-labelled transcripts, clinical notes and live progress.",
        lifespan=lifespan,
    )
    app.state.gateway = state
    if not with_broker:
        state.extra["broker_disabled"] = True
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_credentials=True,
                           allow_methods=["*"], allow_headers=["*"])

    @app.middleware("http")
    async def request_context(request: Request, call_next):
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            length = request.headers.get("content-length")
            if length and length.isdigit() and int(length) > settings.upload_max_bytes + 1024 * 1024:
                response: Response = JSONResponse(
                    {"detail": f"request larger than the {settings.upload_max_bytes} byte limit", "code": "too_large"},
                    status_code=413)
            else:
                response = await call_next(request)
            response.headers["X-Request-ID"] = request_id
            for key, value in SECURITY_HEADERS.items():
                response.headers.setdefault(key, value)
            log.info("http_request", method=request.method, path=request.url.path, status=response.status_code)
            return response
        finally:
            structlog.contextvars.unbind_contextvars("request_id")

    app.add_middleware(HttpMetricsMiddleware, metrics=state.metrics)  # outermost: sees every response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # One error shape for every 4xx (ErrorBody): a readable `detail` string, plus the
        # field errors without the submitted values (they may carry PHI).
        errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(e['loc'][1:]) or '.'.join(e['loc'])}: {e['msg']}" for e in errors)
        return JSONResponse({"detail": detail or "invalid request", "code": "invalid_request", "errors": errors},
                            status_code=422)

    @app.exception_handler(UploadRejected)
    async def upload_rejected(_: Request, exc: UploadRejected) -> JSONResponse:
        return JSONResponse({"detail": exc.reason, "code": exc.code}, status_code=exc.status_code)

    app.include_router(router)
    app.add_api_websocket_route("/api/sessions/ws/{session_id}", websocket_status)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/asyncapi.json", include_in_schema=False)
    async def asyncapi() -> Response:
        doc = Path(__file__).resolve().parents[2] / "docs" / "events" / "asyncapi.json"
        if not doc.exists():
            return JSONResponse({"detail": "asyncapi document not generated"}, status_code=404)
        return FileResponse(doc, media_type="application/json")

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        page = WEB_DIR / "index.html"
        if not page.exists():
            return JSONResponse({"detail": "web page not built"}, status_code=404)
        return FileResponse(page, media_type="text/html")

    if WEB_DIR.exists():
        from fastapi.staticfiles import StaticFiles

        app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app


def main() -> None:
    import uvicorn

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format, service="gateway")
    configure_tracing(settings, "gateway")
    uvicorn.run(create_app(settings), host=settings.gateway_host, port=settings.gateway_port,
                log_level="warning", timeout_graceful_shutdown=3)


if __name__ == "__main__":
    main()
