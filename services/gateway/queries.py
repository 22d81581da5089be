"""Every SQL statement the gateway runs, one small function each, so routes read as
"check, call, answer" and the SQL can be reviewed (and indexed) in one place.

Functions take the request's AsyncSession; those that write do not commit: the caller
groups them in one transaction (``deps.committing``), so an event enqueued in the outbox
commits or rolls back with the rows it describes."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from uuid import UUID

from sqlalchemy import and_, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.tables import (
    audit_log,
    patients,
    session_results,
    session_status,
    sessions,
    status_history,
    therapist_voices,
    therapists,
    token_families,
    refresh_tokens,
)
from shared.outbox import delete_unsent
from shared.shredding import create_session_key, destroy_session_key


# --- health -----------------------------------------------------------------------------------
async def ping(db: AsyncSession) -> None:
    await db.execute(text("SELECT 1"))


# --- therapists -------------------------------------------------------------------------------
async def therapist_exists(db: AsyncSession, therapist_id: UUID) -> bool:
    found = await db.execute(select(therapists.c.id).where(therapists.c.id == therapist_id))
    return found.first() is not None


async def therapist_by_email(db: AsyncSession, email: str):
    return (await db.execute(select(therapists).where(therapists.c.email == email.lower()))).first()


async def therapist_by_id(db: AsyncSession, therapist_id: UUID):
    return (await db.execute(select(therapists).where(therapists.c.id == therapist_id))).one()


async def insert_therapist(db: AsyncSession, email: str, password_hash: str, display_name: str,
                           role: str = "therapist") -> UUID | None:
    """The new account's id; None when the email is taken (nothing inserted)."""
    query = (pg_insert(therapists)
             .values(id=uuid.uuid4(), email=email.lower(), password_hash=password_hash, display_name=display_name,
                     role=role)
             .on_conflict_do_nothing(index_elements=["email"]).returning(therapists.c.id))
    row = (await db.execute(query)).first()
    return row.id if row else None


async def find_therapist(db: AsyncSession, therapist_id: UUID):
    return (await db.execute(select(therapists).where(therapists.c.id == therapist_id))).first()


async def all_therapists(db: AsyncSession) -> list:
    return list((await db.execute(select(therapists).order_by(therapists.c.email))).all())


async def set_therapist_active(db: AsyncSession, therapist_id: UUID, active: bool) -> bool:
    """False when there is no such account."""
    done = await db.execute(update(therapists).where(therapists.c.id == therapist_id).values(active=active)
                            .returning(therapists.c.id))
    return done.first() is not None


async def set_password_hash(db: AsyncSession, therapist_id: UUID, password_hash: str) -> bool:
    done = await db.execute(update(therapists).where(therapists.c.id == therapist_id)
                            .values(password_hash=password_hash).returning(therapists.c.id))
    return done.first() is not None


# --- sign-ins: token families and refresh tokens ----------------------------------------------
async def principal_row(db: AsyncSession, therapist_id: UUID, family_id: UUID):
    """(role, active, revoked_at) of an access token's account and sign-in, or None when
    either is gone: one indexed query per authenticated request."""
    query = (select(therapists.c.role, therapists.c.active, token_families.c.revoked_at)
             .select_from(therapists.join(token_families, token_families.c.therapist_id == therapists.c.id))
             .where(therapists.c.id == therapist_id, token_families.c.id == family_id))
    return (await db.execute(query)).first()


async def insert_family(db: AsyncSession, therapist_id: UUID) -> UUID:
    family_id = uuid.uuid4()
    await db.execute(token_families.insert().values(id=family_id, therapist_id=therapist_id))
    return family_id


async def insert_refresh_token(db: AsyncSession, family_id: UUID, token_hash: str, expires_at: int) -> None:
    await db.execute(refresh_tokens.insert().values(
        token_hash=token_hash, family_id=family_id,
        expires_at=datetime.fromtimestamp(expires_at, tz=timezone.utc)))


async def prune_refresh_tokens(db: AsyncSession, therapist_id: UUID) -> None:
    """Forget the account's expired refresh tokens (their JWT expiry refuses them anyway),
    so the table holds live sign-ins only; run at each login."""
    families = select(token_families.c.id).where(token_families.c.therapist_id == therapist_id)
    await db.execute(delete(refresh_tokens).where(refresh_tokens.c.family_id.in_(families),
                                                  refresh_tokens.c.expires_at < func.now()))


async def use_refresh_token(db: AsyncSession, token_hash: str) -> bool:
    """Mark the token used; True only for the one caller that found it unused (a
    concurrent second exchange of the same token gets False, i.e. reuse)."""
    done = await db.execute(update(refresh_tokens)
                            .where(refresh_tokens.c.token_hash == token_hash, refresh_tokens.c.used_at.is_(None))
                            .values(used_at=func.now()).returning(refresh_tokens.c.family_id))
    return done.first() is not None


async def family_of_refresh_token(db: AsyncSession, token_hash: str) -> UUID | None:
    row = (await db.execute(select(refresh_tokens.c.family_id)
                            .where(refresh_tokens.c.token_hash == token_hash))).first()
    return row.family_id if row else None


async def revoke_family(db: AsyncSession, family_id: UUID, reason: str) -> None:
    await db.execute(update(token_families)
                     .where(token_families.c.id == family_id, token_families.c.revoked_at.is_(None))
                     .values(revoked_at=func.now(), revoked_reason=reason))


async def revoke_families_of(db: AsyncSession, therapist_id: UUID, reason: str, keep: UUID | None = None) -> None:
    """Every open sign-in of an account (deactivation, password reset), except ``keep``."""
    query = update(token_families).where(token_families.c.therapist_id == therapist_id,
                                         token_families.c.revoked_at.is_(None))
    if keep is not None:
        query = query.where(token_families.c.id != keep)
    await db.execute(query.values(revoked_at=func.now(), revoked_reason=reason))


# --- patients ---------------------------------------------------------------------------------
async def insert_patient(db: AsyncSession, therapist_id: UUID, display_name: str, external_ref: str | None):
    return (await db.execute(patients.insert().values(
        id=uuid.uuid4(), therapist_id=therapist_id, display_name=display_name, external_ref=external_ref,
    ).returning(patients))).one()


async def patients_of(db: AsyncSession, therapist_id: UUID) -> list:
    query = select(patients).where(patients.c.therapist_id == therapist_id).order_by(patients.c.display_name)
    return list((await db.execute(query)).all())


async def owned_patient(db: AsyncSession, patient_id: UUID, therapist_id: UUID):
    query = select(patients).where(patients.c.id == patient_id, patients.c.therapist_id == therapist_id)
    return (await db.execute(query)).first()


async def session_ids_of_patient(db: AsyncSession, patient_id: UUID, therapist_id: UUID) -> list[UUID]:
    query = select(sessions.c.id).where(sessions.c.patient_id == patient_id, sessions.c.therapist_id == therapist_id)
    return [r.id for r in await db.execute(query)]


async def delete_patient(db: AsyncSession, patient_id: UUID) -> None:
    await db.execute(delete(patients).where(patients.c.id == patient_id))


# --- sessions ---------------------------------------------------------------------------------
async def owned_session(db: AsyncSession, session_id: UUID, therapist_id: UUID):
    query = select(sessions).where(sessions.c.id == session_id, sessions.c.therapist_id == therapist_id)
    return (await db.execute(query)).first()


async def session_exists(db: AsyncSession, session_id: UUID) -> bool:
    return (await db.execute(select(sessions.c.id).where(sessions.c.id == session_id))).first() is not None


async def insert_session(db: AsyncSession, data_key: bytes | None = None, **values) -> None:
    """The session row and its data key (crypto-shredding), in the upload's transaction."""
    await db.execute(sessions.insert().values(**values))
    await create_session_key(db, values["id"], data_key)


async def delete_session(db: AsyncSession, session_id: UUID) -> None:
    """The session row, its data key (every sealed copy of its events and blobs becomes
    unreadable) and its events not yet relayed, in the deletion's transaction."""
    await db.execute(delete(sessions).where(sessions.c.id == session_id))
    await destroy_session_key(db, session_id)
    await delete_unsent(db, session_id)


async def sessions_older_than(db: AsyncSession, cutoff: datetime, limit: int) -> list:
    """(id, therapist_id) of sessions created before ``cutoff``, oldest first; rows another
    replica is deleting are skipped."""
    query = (select(sessions.c.id, sessions.c.therapist_id).where(sessions.c.created_at < cutoff)
             .order_by(sessions.c.created_at).limit(limit).with_for_update(skip_locked=True))
    return list((await db.execute(query)).all())


async def set_speaker_labels(db: AsyncSession, session_id: UUID, names: dict, overrides: dict) -> None:
    await db.execute(update(sessions).where(sessions.c.id == session_id)
                     .values(speaker_names=names, role_overrides=overrides))


async def session_page(db: AsyncSession, therapist_id: UUID, *, patient_id: UUID | None, status: str | None,
                       since: datetime | None, until: datetime | None, after: tuple[datetime, UUID] | None,
                       limit: int) -> list:
    """Newest first; ``after`` is the (created_at, id) of the previous page's last row."""
    query = (
        select(sessions, session_status.c.status, session_status.c.percent)
        .select_from(sessions.outerjoin(session_status, session_status.c.session_id == sessions.c.id))
        .where(sessions.c.therapist_id == therapist_id)
    )
    if patient_id:
        query = query.where(sessions.c.patient_id == patient_id)
    if status:
        query = query.where(session_status.c.status == status)
    if since:
        query = query.where(sessions.c.created_at >= since)
    if until:
        query = query.where(sessions.c.created_at < until)
    if after:
        created, sid = after
        query = query.where(or_(sessions.c.created_at < created,
                                and_(sessions.c.created_at == created, sessions.c.id < sid)))
    query = query.order_by(sessions.c.created_at.desc(), sessions.c.id.desc()).limit(limit)
    return list((await db.execute(query)).all())


async def audit(db: AsyncSession, therapist_id: UUID | None, session_id: UUID | None, action: str,
                target_id: UUID | None = None) -> None:
    """``therapist_id`` is who acted (None: the admin command line), ``target_id`` the
    account an admin action was about."""
    await db.execute(audit_log.insert().values(therapist_id=therapist_id, session_id=session_id, action=action,
                                               target_id=target_id))


# --- the progress service's read model ---------------------------------------------------------
async def status_row(db: AsyncSession, session_id: UUID):
    return (await db.execute(select(session_status).where(session_status.c.session_id == session_id))).first()


async def results_row(db: AsyncSession, session_id: UUID):
    return (await db.execute(select(session_results).where(session_results.c.session_id == session_id))).first()


async def history_after(db: AsyncSession, session_id: UUID, after_seq: int) -> list[dict]:
    rows = await db.execute(
        select(status_history.c.payload)
        .where(status_history.c.session_id == session_id, status_history.c.seq > after_seq)
        .order_by(status_history.c.seq)
    )
    return [r.payload for r in rows]


# --- enrolled voices (therapist_voices, ADR 0010) -----------------------------------------------
async def voice_row(db: AsyncSession, therapist_id: UUID):
    """The therapist's enrolment, without the sample or the embedding bytes."""
    tv = therapist_voices
    query = select(tv.c.status, tv.c.sample_s, tv.c.model, tv.c.error, tv.c.requested_at, tv.c.enrolled_at,
                   tv.c.request_id).where(tv.c.therapist_id == therapist_id)
    return (await db.execute(query)).first()


async def request_voice_enrolment(db: AsyncSession, therapist_id: UUID, pcm: bytes, sample_s: float) -> UUID:
    """Replace any enrolment with a pending request carrying the decoded sample; the
    diarizer embeds it and clears the sample. Returns the request id."""
    request_id = uuid.uuid4()
    values = {"request_id": request_id, "status": "pending", "sample_pcm": pcm, "sample_s": sample_s,
              "embedding": None, "model": None, "error": None, "requested_at": func.now(), "enrolled_at": None}
    await db.execute(pg_insert(therapist_voices).values(therapist_id=therapist_id, **values)
                     .on_conflict_do_update(index_elements=[therapist_voices.c.therapist_id], set_=values))
    return request_id


async def delete_voice(db: AsyncSession, therapist_id: UUID) -> bool:
    result = await db.execute(delete(therapist_voices).where(therapist_voices.c.therapist_id == therapist_id))
    return result.rowcount > 0
