"""Sign-in: the OAuth2 password flow (email as username), token refresh, who am I."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import OAuth2PasswordRequestForm

from services.gateway import queries
from services.gateway.auth import AuthError
from services.gateway.deps import DB, ERRORS, State, Therapist
from services.gateway.schemas import ErrorBody, RefreshRequest, TherapistOut, TokenResponse

router = APIRouter(tags=["auth"])


def _token_response(state, therapist_id) -> TokenResponse:
    pair = state.tokens.issue(therapist_id)
    return TokenResponse(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in)


@router.post("/api/auth/token", response_model=TokenResponse,
             responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody}, 429: {"model": ErrorBody}},
             summary="OAuth2 password flow: email as username")
async def login(request: Request, state: State, db: DB, form: OAuth2PasswordRequestForm = Depends()) -> TokenResponse:
    client = request.client.host if request.client else "unknown"
    allowed, retry = state.login_limiter.allow(f"{client}:{form.username.lower()}")
    if not allowed:
        raise HTTPException(429, "too many login attempts; try again later", headers={"Retry-After": str(int(retry) + 1)})
    row = await queries.therapist_by_email(db, form.username)
    if not await state.passwords.verify_async(row.password_hash if row else None, form.password):
        raise HTTPException(401, "wrong email or password", headers={"WWW-Authenticate": "Bearer"})
    return _token_response(state, row.id)


@router.post("/api/auth/refresh", response_model=TokenResponse,
             responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody}})
async def refresh(body: RefreshRequest, state: State, db: DB) -> TokenResponse:
    try:
        therapist_id = state.tokens.verify(body.refresh_token, kind="refresh")
    except AuthError as exc:
        raise HTTPException(401, str(exc)) from exc
    if not await queries.therapist_exists(db, therapist_id):
        raise HTTPException(401, "unknown account")
    return _token_response(state, therapist_id)


@router.get("/api/auth/me", response_model=TherapistOut, responses=ERRORS)
async def me(therapist_id: Therapist, db: DB) -> TherapistOut:
    row = await queries.therapist_by_id(db, therapist_id)
    return TherapistOut(id=row.id, email=row.email, display_name=row.display_name)
