"""FastAPI dependencies: state, DB session, current therapist (header or ?token=)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID

from fastapi import Depends, HTTPException, Request, WebSocket
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.tables import sessions, therapists
from services.gateway.auth import AuthError
from services.gateway.state import GatewayState

oauth2 = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)


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
    exists = (await db.execute(select(therapists.c.id).where(therapists.c.id == therapist_id))).scalar_one_or_none()
    if exists is None:
        raise _unauthorized("unknown account")
    request.state.therapist_id = therapist_id
    return therapist_id


async def owned_session(session_id: UUID, therapist_id: UUID, db: AsyncSession):
    """The session row if the caller owns it; otherwise 404 (never reveal existence)."""
    row = (
        await db.execute(select(sessions).where(sessions.c.id == session_id, sessions.c.therapist_id == therapist_id))
    ).first()
    if row is None:
        raise HTTPException(status_code=404, detail="session not found")
    return row


def websocket_token(websocket: WebSocket) -> str | None:
    token = websocket.query_params.get("token")
    if token:
        return token
    header = websocket.headers.get("authorization", "")
    return header[7:] if header.lower().startswith("bearer ") else None
