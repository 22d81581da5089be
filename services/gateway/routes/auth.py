"""Sign-in: the OAuth2 password flow (email as username), refresh-token rotation with
reuse detection, logout, changing one's own password, who am I, and the signed links the
web page puts in URLs (audio element, download links, EventSource, WebSocket).

Each login starts a token family (one sign-in). A refresh exchanges the presented refresh
token for a new pair of the same family and marks it used; presenting a used one again
means it was copied, so the whole family is revoked. Access tokens carry the family id and
every request checks it (deps.principal_of), so logout and revocation end them at once."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway import queries
from services.gateway.auth import AuthError, TokenPair, client_address, refresh_token_hash
from services.gateway.deps import DB, ERRORS, CurrentPrincipal, State, Therapist, committing, owned_session, principal_of
from services.gateway.schemas import (
    ErrorBody,
    LinkRequest,
    LinkToken,
    PasswordChange,
    RefreshRequest,
    TherapistOut,
    TokenResponse,
)
from services.gateway.state import GatewayState

router = APIRouter(tags=["auth"])
LOGIN_ERRORS = {401: {"model": ErrorBody}, 422: {"model": ErrorBody}, 429: {"model": ErrorBody}}


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


async def _issue(state: GatewayState, db: AsyncSession, therapist_id: UUID, family_id: UUID | None = None) -> TokenPair:
    """A token pair, its refresh token recorded; a new family (sign-in) unless given one."""
    if family_id is None:
        family_id = await queries.insert_family(db, therapist_id)
    pair = state.tokens.issue(therapist_id, family_id)
    await queries.insert_refresh_token(db, family_id, refresh_token_hash(pair.refresh_token), pair.refresh_expires_at)
    return pair


def _token_response(pair: TokenPair) -> TokenResponse:
    return TokenResponse(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in)


def _check_login_limits(request: Request, state: GatewayState, email: str) -> None:
    """Per client address (spraying many emails) and per account (one email from many
    addresses); the address behind a proxy only when the proxy is trusted."""
    peer = request.client.host if request.client else None
    address = client_address(peer, request.headers.get("x-forwarded-for"), state.trusted_proxies)
    for limiter, key in ((state.login_limiter, f"addr:{address}"), (state.account_limiter, f"acct:{email.lower()}")):
        if limiter is None:
            continue
        allowed, retry = limiter.allow(key)
        if not allowed:
            raise HTTPException(429, "too many login attempts; try again later",
                                headers={"Retry-After": str(int(retry) + 1)})


@router.post("/api/auth/token", response_model=TokenResponse, responses=LOGIN_ERRORS,
             summary="OAuth2 password flow: email as username")
async def login(request: Request, state: State, db: DB, form: OAuth2PasswordRequestForm = Depends()) -> TokenResponse:
    _check_login_limits(request, state, form.username)
    row = await queries.therapist_by_email(db, form.username)
    if not await state.passwords.verify_async(row.password_hash if row else None, form.password):
        raise _unauthorized("wrong email or password")
    if not row.active:  # after the hash check: the answer does not tell which accounts exist
        raise _unauthorized("this account is deactivated")
    async with committing(db):
        await queries.prune_refresh_tokens(db, row.id)
        pair = await _issue(state, db, row.id)
    return _token_response(pair)


async def _exchange_refresh_token(state: GatewayState, db: AsyncSession, token: str) -> TokenPair:
    """Rotate: mark the presented token used and issue the next pair of its family. A
    token already used is a replay: the family is revoked (committed) and 401 follows."""
    try:
        claims = state.tokens.claims(token, kind="refresh")
    except AuthError as exc:
        raise _unauthorized(str(exc)) from exc
    token_hash = refresh_token_hash(token)
    async with committing(db):
        first_use = await queries.use_refresh_token(db, token_hash)
        family_id = await queries.family_of_refresh_token(db, token_hash)
        if family_id is not None and not first_use:
            await queries.revoke_family(db, family_id, "refresh token reuse")
    if family_id is None or family_id != claims.family_id:
        raise _unauthorized("unknown refresh token")
    if not first_use:
        raise _unauthorized("refresh token already used; this sign-in is revoked, sign in again")
    principal = await principal_of(claims, db)  # revoked family or deactivated account: 401
    async with committing(db):
        return await _issue(state, db, principal.id, family_id)


@router.post("/api/auth/refresh", response_model=TokenResponse, responses={**LOGIN_ERRORS},
             summary="Exchange a refresh token for a new pair; each refresh token works once")
async def refresh(body: RefreshRequest, state: State, db: DB) -> TokenResponse:
    return _token_response(await _exchange_refresh_token(state, db, body.refresh_token))


@router.post("/api/auth/logout", status_code=204, responses=ERRORS,
             summary="End this sign-in: its refresh and access tokens stop working")
async def logout(principal: CurrentPrincipal, db: DB) -> Response:
    async with committing(db):
        await queries.revoke_family(db, principal.family_id, "logout")
    return Response(status_code=204)


@router.post("/api/auth/password", status_code=204, responses={**ERRORS, 403: {"model": ErrorBody}},
             summary="Change your own password (the current one is required); other sign-ins end")
async def change_password(body: PasswordChange, principal: CurrentPrincipal, state: State, db: DB) -> Response:
    row = await queries.therapist_by_id(db, principal.id)
    if not await state.passwords.verify_async(row.password_hash, body.current_password):
        raise HTTPException(403, "the current password is wrong")
    new_hash = await state.passwords.hash_async(body.new_password)
    async with committing(db):
        await queries.set_password_hash(db, principal.id, new_hash)
        await queries.revoke_families_of(db, principal.id, "password changed", keep=principal.family_id)
        await queries.audit(db, principal.id, None, "password.change", target_id=principal.id)
    return Response(status_code=204)


@router.get("/api/auth/me", response_model=TherapistOut, responses=ERRORS)
async def me(therapist_id: Therapist, db: DB) -> TherapistOut:
    row = await queries.therapist_by_id(db, therapist_id)
    return TherapistOut(id=row.id, email=row.email, display_name=row.display_name, role=row.role)


@router.post("/api/sessions/{session_id}/links", response_model=LinkToken, responses=ERRORS,
             summary="A short-lived signed link token for one session and purpose (for URLs: audio, exports, streams)")
async def mint_link(session_id: UUID, body: LinkRequest, principal: CurrentPrincipal, state: State, db: DB) -> LinkToken:
    await owned_session(session_id, principal.id, db)
    ttl = state.settings.link_token_ttl_s
    token = state.tokens.link(principal.id, principal.family_id, session_id, body.purpose, ttl)
    return LinkToken(token=token, purpose=body.purpose, expires_in=ttl)
