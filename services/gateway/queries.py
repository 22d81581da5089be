"""Every SQL statement the gateway runs, one small function each, so routes read as
"check, call, answer" and the SQL can be reviewed (and indexed) in one place.

Functions take the request's AsyncSession; those that write do not commit: the caller
groups them in one transaction (``deps.committing``), so an event enqueued in the outbox
commits or rolls back with the rows it describes."""

from __future__ import annotations

import uuid
from datetime import datetime
from uuid import UUID

from sqlalchemy import and_, delete, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.tables import (
    audit_log,
    patients,
    session_results,
    session_status,
    sessions,
    status_history,
    therapists,
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


async def insert_therapist(db: AsyncSession, email: str, password_hash: str, display_name: str) -> UUID:
    therapist_id = uuid.uuid4()
    await db.execute(therapists.insert().values(
        id=therapist_id, email=email.lower(), password_hash=password_hash, display_name=display_name))
    return therapist_id


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


# --- sessions ---------------------------------------------------------------------------------
async def owned_session(db: AsyncSession, session_id: UUID, therapist_id: UUID):
    query = select(sessions).where(sessions.c.id == session_id, sessions.c.therapist_id == therapist_id)
    return (await db.execute(query)).first()


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


async def audit(db: AsyncSession, therapist_id: UUID, session_id: UUID, action: str) -> None:
    await db.execute(audit_log.insert().values(therapist_id=therapist_id, session_id=session_id, action=action))


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
