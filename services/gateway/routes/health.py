"""Liveness and readiness probes (public: no token)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from services.gateway import queries
from services.gateway.deps import State
from services.gateway.schemas import ReadyStatus

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: database and broker reachable",
            response_model=ReadyStatus, responses={503: {"model": ReadyStatus, "description": "Not ready"}})
async def readyz(state: State, response: Response) -> dict[str, str]:
    broker = "ok" if state.broker_ready else ("unavailable" if state.broker_enabled else "disabled")
    checks = {"database": "ok", "broker": broker}
    try:
        async with state.session_factory() as db:
            await queries.ping(db)
    except Exception:
        checks["database"] = "unavailable"
    if any(v not in ("ok", "disabled") for v in checks.values()):
        response.status_code = 503
    return checks
