"""The gateway's HTTP API, one APIRouter per resource; ``api_router`` includes them all.
Paths, function names (hence OpenAPI operation ids) and tags are the API's contract."""

from __future__ import annotations

from fastapi import APIRouter

from services.gateway.routes import (admin, auth, exports, health, patients, review, session_actions, sessions,
                                     streams, voice)

api_router = APIRouter()
for _resource in (health, auth, admin, patients, sessions, session_actions, exports, streams, review, voice):
    api_router.include_router(_resource.router)

__all__ = ["api_router"]
