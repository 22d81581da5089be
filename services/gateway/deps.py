"""FastAPI dependencies shared by the route modules: the gateway state, the request's DB
session, the current therapist (bearer header or ?token=), ownership checks, and the
Annotated aliases the routes declare their parameters with."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated
from uuid import UUID

from fastapi import Depends, HTTPException, Request, WebSocket
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway import queries
from services.gateway.auth import AuthError
from services.gateway.schemas import ErrorBody
from services.gateway.state import GatewayState

oauth2 = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)

# The error responses every authenticated route documents (one ErrorBody shape for all 4xx).
ERRORS = {401: {"model": ErrorBody}, 404: {"model": ErrorBody}, 422: {"model": ErrorBody}}


def get_state(request: Request) -> GatewayState:
    return request.app.state.gateway


async def get_db(state: GatewayState = Depends(get_state)) -> AsyncIterator[AsyncSession]:
    async with state.session_factory() as db:
        yield db


def _unauthorized(detail: str = "not authenticated") -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


async def current_therapist(
    request: Request,
    bearer: str | None = Depends(oauth2),
    state: GatewayState = Depends(get_state),
    db: AsyncSession = Depends(get_db),
) -> UUID:
    token = bearer or request.query_params.get("token")
    if not token:
        raise _unauthorized()
    try:
        therapist_id = state.tokens.verify(token)
    except AuthError as exc:
        raise _unauthorized(str(exc)) from exc
    if not await queries.therapist_exists(db, therapist_id):
        raise _unauthorized("unknown account")
    request.state.therapist_id = therapist_id
    return therapist_id


Therapist = Annotated[UUID, Depends(current_therapist)]
DB = Annotated[AsyncSession, Depends(get_db)]
State = Annotated[GatewayState, Depends(get_state)]


async def owned_session(session_id: UUID, therapist_id: UUID, db: AsyncSession):
    """The session row if the caller owns it; otherwise 404 (never reveal existence)."""
    row = await queries.owned_session(db, session_id, therapist_id)
    if row is None:
        raise HTTPException(status_code=404, detail="session not found")
    return row


@asynccontextmanager
async def committing(db: AsyncSession):
    """Commit the request's session (already begun by reads such as the auth check)."""
    try:
        yield
        await db.commit()
    except BaseException:
        await db.rollback()
        raise


def websocket_token(websocket: WebSocket) -> str | None:
    token = websocket.query_params.get("token")
    if token:
        return token
    header = websocket.headers.get("authorization", "")
    return header[7:] if header.lower().startswith("bearer ") else None
