"""What the gateway's app has besides the API routers: request context and security
headers on every response, one error body shape, and the pages that are not API
operations (the web page, its static files, /metrics, the AsyncAPI document)."""

from __future__ import annotations

import html
import importlib.util
import uuid
from pathlib import Path

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import DBAPIError

from shared.instrumentation import HttpMetricsMiddleware
from shared.logging import get_logger
from shared.settings import Settings
from shared.telemetry import current_trace_id
from services.gateway.state import GatewayState
from services.gateway.notes_review import FlagNotFound, ReviewConflict, ReviewInvalid
from services.gateway.uploads import UploadRejected

log = get_logger(__name__)
WEB_DIR = Path(__file__).parent / "web"
ASYNCAPI_DOC = Path(__file__).resolve().parents[2] / "docs" / "events" / "asyncapi.json"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; media-src 'self' blob:; img-src 'self' data:; style-src 'self' 'unsafe-inline'",
    "Cache-Control": "no-store",
}


UPLOAD_PATH = "/api/sessions/upload"
# Multipart framing (boundaries, part headers, the small form fields) on top of the file.
MULTIPART_OVERHEAD_BYTES = 1024 * 1024
# A voice-enrolment sample (at most a minute; 48 kHz stereo 24-bit WAV is 17 MB).
VOICE_PATH = "/api/therapists/me/voice"
VOICE_SAMPLE_MAX_BYTES = 32 * 1024 * 1024


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"detail": f"request larger than the {limit} byte limit", "code": "too_large"},
                        status_code=413)


class BodyLimit:
    """Pure ASGI middleware capping every request body, declared (Content-Length) or
    chunked alike. Nothing is decided before the app asks for the body, so a route's
    authentication (which runs before the upload route reads anything) answers first.
    Once the cap is crossed the app is told the client went away, whatever it was about
    to answer is dropped, and the client gets 413: nothing past the cap is read."""

    def __init__(self, app, settings: Settings) -> None:
        self.app = app
        self.upload_max = settings.upload_max_bytes
        self.upload_cap = settings.upload_max_bytes + MULTIPART_OVERHEAD_BYTES
        self.body_cap = settings.request_body_max_bytes
        self.voice_cap = max(self.body_cap, VOICE_SAMPLE_MAX_BYTES + MULTIPART_OVERHEAD_BYTES)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = {UPLOAD_PATH: self.upload_cap, VOICE_PATH: self.voice_cap}.get(scope["path"], self.body_cap)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        read, exceeded, started = 0, False, False

        async def capped_receive():
            nonlocal read, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            if declared.isdigit() and int(declared) > cap:
                exceeded = True
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > cap:
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal started
            if exceeded and not started:
                return  # the app's answer to a body it never got whole: replaced by the 413
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, capped_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            limit = {UPLOAD_PATH: self.upload_max, VOICE_PATH: VOICE_SAMPLE_MAX_BYTES}.get(scope["path"], self.body_cap)
            await _too_large(limit)(scope, receive, send)


def _where(exc: BaseException) -> str:
    """file:line of the innermost frame: enough to find the bug, without the message
    (exception text can carry request data, i.e. patient data)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}" if tb is not None else "?"


def _internal_error() -> JSONResponse:
    return JSONResponse({"detail": "internal error", "code": "internal_error"}, status_code=500)


def add_middleware(app: FastAPI, settings: Settings, metrics) -> None:
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_credentials=True,
                           allow_methods=["*"], allow_headers=["*"])
    app.add_middleware(BodyLimit, settings=settings)  # inside request_context: its 413 gets the headers

    @app.middleware("http")
    async def request_context(request: Request, call_next):
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=request_id, trace_id=current_trace_id())
        try:
            try:
                response: Response = await call_next(request)
            except Exception as exc:
                # Answered here, not by Starlette's ServerErrorMiddleware: that one re-raises
                # for the server to log the traceback (with its message), and skips these headers.
                log.error("unhandled_error", method=request.method, path=request.url.path,
                          error_type=type(exc).__name__, where=_where(exc))
                response = _internal_error()
            response.headers["X-Request-ID"] = request_id
            for key, value in SECURITY_HEADERS.items():
                response.headers.setdefault(key, value)
            log.info("http_request", method=request.method, path=request.url.path, status=response.status_code)
            return response
        finally:
            structlog.contextvars.unbind_contextvars("request_id", "trace_id")

    app.add_middleware(HttpMetricsMiddleware, metrics=metrics)  # added last, so outermost: sees every response


def _without_query(span, scope: dict) -> None:
    """A query string can carry a WebSocket's access token: request spans keep the path only."""
    if not (span and span.is_recording() and scope.get("query_string")):
        return
    attributes = getattr(span, "attributes", None) or {}
    span.set_attribute("http.target", scope.get("path", ""))
    for key in ("http.url", "url.full"):
        if key in attributes:
            span.set_attribute(key, str(attributes[key]).split("?", 1)[0])
    if "url.query" in attributes:
        span.set_attribute("url.query", "REDACTED")


def add_tracing(app: FastAPI) -> None:
    """A server span for every HTTP request (OpenTelemetry's FastAPI instrumentation, on the
    process's tracer provider), continuing an incoming ``traceparent``: the upload's span is
    the root of its session's trace. The per-message ASGI send/receive spans are left out
    (an SSE stream would make thousands); OTEL_PYTHON_FASTAPI_EXCLUDED_URLS excludes paths."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, server_request_hook=_without_query, exclude_spans=["receive", "send"])


async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    # One error shape for every 4xx (ErrorBody): a readable `detail` string, plus the
    # field errors without the submitted values (they may carry PHI).
    errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
              for e in exc.errors()]
    detail = "; ".join(f"{'.'.join(e['loc'][1:]) or '.'.join(e['loc'])}: {e['msg']}" for e in errors)
    return JSONResponse({"detail": detail or "invalid request", "code": "invalid_request", "errors": errors},
                        status_code=422)


async def invalid_data(_: Request, exc: DBAPIError) -> JSONResponse:
    # Class 22 (data exception): a value PostgreSQL cannot store or compare (a NUL in text
    # or JSON, a number or date out of range) that slipped past the schemas: the request
    # is wrong, not the server. Anything else stays a 500.
    sqlstate = str(getattr(exc.orig, "sqlstate", "") or "")
    if not sqlstate.startswith("22"):
        raise exc
    log.warning("invalid_data_refused", sqlstate=sqlstate)
    return JSONResponse({"detail": "a value in the request cannot be stored (e.g. a NUL character or a number "
                                   "out of range)", "code": "invalid_value"}, status_code=422)


async def upload_rejected(_: Request, exc: UploadRejected) -> JSONResponse:
    return JSONResponse({"detail": exc.reason, "code": exc.code}, status_code=exc.status_code)


async def review_refused(_: Request, exc: Exception) -> JSONResponse:
    """The notes review's refusals (services/gateway/notes_review.py): 409 with a code, 422, 404."""
    if isinstance(exc, ReviewConflict):
        return JSONResponse({"detail": exc.detail, "code": exc.code}, status_code=409)
    if isinstance(exc, FlagNotFound):
        return JSONResponse({"detail": "risk flag not found", "code": "flag_not_found"}, status_code=404)
    return JSONResponse({"detail": str(exc), "code": "invalid_review"}, status_code=422)


def add_error_handlers(app: FastAPI) -> None:
    for refusal in (ReviewConflict, ReviewInvalid, FlagNotFound):
        app.add_exception_handler(refusal, review_refused)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(UploadRejected, upload_rejected)
    app.add_exception_handler(DBAPIError, invalid_data)


def docs_assets_dir() -> Path | None:
    """Swagger UI and ReDoc as the fastapi-offline package ships them (no CDN: the page's
    CSP allows scripts from this origin only, and a clinic may have no internet)."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    static = Path(list(spec.submodule_search_locations)[0]) / "static"
    return static if (static / "swagger-ui-bundle.js").exists() else None


SWAGGER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - API docs</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/docs-assets/swagger-ui.css"></head>
<body><div id="swagger-ui" data-openapi-url="{openapi}"></div>
<script src="/docs-assets/swagger-ui-bundle.js"></script><script src="/static/docs-init.js"></script></body></html>"""
REDOC_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - API reference</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><redoc spec-url="{openapi}" disable-search="true"></redoc>
<script src="/docs-assets/redoc.standalone.js"></script></body></html>"""


def add_docs_routes(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc from local assets, initialised by a script file (the
    CSP refuses inline scripts); FastAPI's own pages load theirs from a CDN."""
    assets = docs_assets_dir()
    if assets is None:
        log.warning("api_docs_unavailable", reason="fastapi-offline is not installed")
        return
    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(SWAGGER_PAGE.format(title=html.escape(app.title), openapi=app.openapi_url))

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return HTMLResponse(REDOC_PAGE.format(title=html.escape(app.title), openapi=app.openapi_url))


def add_site_routes(app: FastAPI, state: GatewayState) -> None:
    """Routes outside the OpenAPI document: metrics, the AsyncAPI file, the web page."""

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/asyncapi.json", include_in_schema=False)
    async def asyncapi() -> Response:
        if not ASYNCAPI_DOC.exists():
            return JSONResponse({"detail": "asyncapi document not generated"}, status_code=404)
        return FileResponse(ASYNCAPI_DOC, media_type="application/json")

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        page = WEB_DIR / "index.html"
        if not page.exists():
            return JSONResponse({"detail": "web page not built"}, status_code=404)
        return FileResponse(page, media_type="text/html")

    if WEB_DIR.exists():
        app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
