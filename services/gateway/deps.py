"""FastAPI dependencies shared by the route modules: the gateway state, the request's DB
session, the signed-in account (bearer header; ``?token=`` only as a signed link on the
routes a browser opens without headers), the admin check, ownership checks, and the
Annotated aliases the routes declare their parameters with."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

from fastapi import Depends, HTTPException, Request, WebSocket
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway import queries
from services.gateway.auth import AuthError, TokenClaims
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


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the account, its role and the sign-in (token family)."""

    id: UUID
    role: str
    family_id: UUID


async def principal_of(claims: TokenClaims, db: AsyncSession) -> Principal:
    """The account behind verified claims, if it is still active and its sign-in is not
    revoked (logout, refresh-token reuse, deactivation, password change)."""
    if claims.family_id is None:
        raise _unauthorized("token from before revocable sign-ins; sign in again")
    row = await queries.principal_row(db, claims.subject, claims.family_id)
    if row is None or not row.active:
        raise _unauthorized("unknown or deactivated account")
    if row.revoked_at is not None:
        raise _unauthorized("signed out; sign in again")
    return Principal(id=claims.subject, role=row.role, family_id=claims.family_id)


async def _from_token(request: Request, state: GatewayState, db: AsyncSession, token: str, kind: str,
                      link_for: tuple[UUID, str] | None = None) -> Principal:
    """``link_for``: the (session id, purpose) a link token must have been minted for."""
    try:
        claims = state.tokens.claims(token, kind)
    except AuthError as exc:
        raise _unauthorized(str(exc)) from exc
    if link_for is not None and (claims.session_id, claims.purpose) != link_for:
        raise _unauthorized("this link is for another session or purpose")
    principal = await principal_of(claims, db)
    request.state.therapist_id = principal.id
    return principal


async def current_principal(
    request: Request,
    bearer: str | None = Depends(oauth2),
    state: GatewayState = Depends(get_state),
    db: AsyncSession = Depends(get_db),
) -> Principal:
    """Only the Authorization header: a token in a URL ends up in logs and history."""
    if not bearer:
        raise _unauthorized()
    return await _from_token(request, state, db, bearer, "access")


async def current_therapist(principal: Principal = Depends(current_principal)) -> UUID:
    return principal.id


async def current_admin(principal: Principal = Depends(current_principal)) -> Principal:
    if principal.role != "admin":
        raise HTTPException(status_code=403, detail="administrators only")
    return principal


def link_or_bearer(purpose: str):
    """For the routes a browser opens by URL (audio element, download link, EventSource):
    the bearer header, or ``?token=`` holding a signed link minted for this session and
    this purpose (POST /api/sessions/{id}/links). An access token in the URL is refused."""

    async def therapist_by_link_or_bearer(
        request: Request, session_id: UUID,
        bearer: str | None = Depends(oauth2),
        state: GatewayState = Depends(get_state),
        db: AsyncSession = Depends(get_db),
    ) -> UUID:
        if bearer:
            return (await _from_token(request, state, db, bearer, "access")).id
        link = request.query_params.get("token")
        if not link:
            raise _unauthorized()
        return (await _from_token(request, state, db, link, "link", link_for=(session_id, purpose))).id

    return therapist_by_link_or_bearer


async def websocket_therapist(websocket: WebSocket, state: GatewayState, session_id: UUID) -> UUID | None:
    """A WebSocket's account: a ``stream`` link for this session in ``?token=``, or an
    access token in the Authorization header (non-browser clients). None: refuse it."""
    header = websocket.headers.get("authorization", "")
    link = websocket.query_params.get("token")
    token, kind = (header[7:], "access") if header.lower().startswith("bearer ") else (link or "", "link")
    try:
        claims = state.tokens.claims(token, kind)
        if kind == "link" and (claims.session_id != session_id or claims.purpose != "stream"):
            return None
        async with state.session_factory() as db:
            return (await principal_of(claims, db)).id
    except (AuthError, HTTPException):
        return None


Therapist = Annotated[UUID, Depends(current_therapist)]
CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
Admin = Annotated[Principal, Depends(current_admin)]
# therapist_id of the URL-opened routes, per link purpose
AudioReader = Annotated[UUID, Depends(link_or_bearer("audio"))]
ExportReader = Annotated[UUID, Depends(link_or_bearer("export"))]
StreamReader = Annotated[UUID, Depends(link_or_bearer("stream"))]
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
