"""Accounts, for administrators only (403 for everyone else): create, list, deactivate,
reactivate and reset the password of therapist (and admin) accounts. Deactivating or
resetting ends every sign-in of the account at once. Every action is in the audit log
with who did it (therapist_id) and to whom (target_id)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, HTTPException
from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway import queries
from services.gateway.deps import DB, ERRORS, Admin, State, committing
from services.gateway.schemas import AccountCreate, AccountOut, ErrorBody, PasswordReset
from services.gateway.state import GatewayState

router = APIRouter(tags=["admin"])
ADMIN_ERRORS = {**ERRORS, 403: {"model": ErrorBody}}


def _account_out(row) -> AccountOut:
    return AccountOut(id=row.id, email=row.email, display_name=row.display_name, role=row.role, active=row.active,
                      created_at=row.created_at)


async def create_account(db: AsyncSession, state: GatewayState, body: AccountCreate, actor: UUID | None) -> UUID:
    """Insert the account (hashing off the event loop) and audit it; the caller commits.
    409 when the email is taken."""
    password_hash = await state.passwords.hash_async(body.password)
    account_id = await queries.insert_therapist(db, body.email, password_hash, body.display_name, role=body.role)
    if account_id is None:
        raise HTTPException(409, "an account with this email exists")
    await queries.audit(db, actor, None, f"admin.create_{body.role}", target_id=account_id)
    return account_id


async def _account(db: AsyncSession, therapist_id: UUID):
    row = await queries.find_therapist(db, therapist_id)
    if row is None:
        raise HTTPException(404, "account not found")
    return row


@router.get("/api/admin/therapists", response_model=list[AccountOut], responses=ADMIN_ERRORS,
            summary="Every account (therapists and admins)")
async def list_therapists(admin: Admin, db: DB) -> list[AccountOut]:
    async with committing(db):
        await queries.audit(db, admin.id, None, "admin.list_accounts")
    return [_account_out(r) for r in await queries.all_therapists(db)]


@router.post("/api/admin/therapists", response_model=AccountOut, status_code=201,
             responses={**ADMIN_ERRORS, 409: {"model": ErrorBody}}, summary="Create an account")
async def create_therapist(body: AccountCreate, admin: Admin, state: State, db: DB) -> AccountOut:
    async with committing(db):
        account_id = await create_account(db, state, body, admin.id)
    return _account_out(await _account(db, account_id))


async def _set_active(db: AsyncSession, admin_id: UUID, therapist_id: UUID, active: bool) -> AccountOut:
    if therapist_id == admin_id and not active:
        raise HTTPException(409, "you cannot deactivate your own account")
    async with committing(db):
        if not await queries.set_therapist_active(db, therapist_id, active):
            raise HTTPException(404, "account not found")
        if not active:
            await queries.revoke_families_of(db, therapist_id, "deactivated")
        await queries.audit(db, admin_id, None, "admin.reactivate" if active else "admin.deactivate",
                            target_id=therapist_id)
    return _account_out(await _account(db, therapist_id))


@router.post("/api/admin/therapists/{therapist_id}/deactivate", response_model=AccountOut,
             responses={**ADMIN_ERRORS, 409: {"model": ErrorBody}},
             summary="Deactivate: the account cannot sign in or refresh; its sign-ins end now")
async def deactivate_therapist(therapist_id: UUID, admin: Admin, db: DB) -> AccountOut:
    return await _set_active(db, admin.id, therapist_id, False)


@router.post("/api/admin/therapists/{therapist_id}/reactivate", response_model=AccountOut,
             responses={**ADMIN_ERRORS, 409: {"model": ErrorBody}}, summary="Reactivate a deactivated account")
async def reactivate_therapist(therapist_id: UUID, admin: Admin, db: DB) -> AccountOut:
    return await _set_active(db, admin.id, therapist_id, True)


@router.post("/api/admin/therapists/{therapist_id}/password", response_model=AccountOut, responses=ADMIN_ERRORS,
             summary="Set a new password (e.g. a forgotten one); the account's sign-ins end now")
async def reset_password(therapist_id: UUID, body: PasswordReset, admin: Admin, state: State, db: DB) -> AccountOut:
    new_hash = await state.passwords.hash_async(body.new_password)
    async with committing(db):
        if not await queries.set_password_hash(db, therapist_id, new_hash):
            raise HTTPException(404, "account not found")
        await queries.revoke_families_of(db, therapist_id, "password reset")
        await queries.audit(db, admin.id, None, "admin.reset_password", target_id=therapist_id)
    return _account_out(await _account(db, therapist_id))
