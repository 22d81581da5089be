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


async def update_patient(db: AsyncSession, patient_id: UUID, therapist_id: UUID, values: dict):
    """The updated row, or None when it is not this therapist's."""
    query = (update(patients).where(patients.c.id == patient_id, patients.c.therapist_id == therapist_id)
             .values(**values).returning(patients))
    return (await db.execute(query)).first()


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


SORT_COLUMNS = {
    "date": lambda: func.coalesce(sessions.c.session_date, sessions.c.created_at),
    "created": lambda: sessions.c.created_at,
    "duration": lambda: sessions.c.duration_s,
    "status": lambda: func.coalesce(session_status.c.status, "uploading"),
    "patient": lambda: func.lower(func.coalesce(patients.c.display_name, "")),
    "filename": lambda: func.lower(func.coalesce(sessions.c.audio_filename, "")),
}


def _like(text_: str) -> str:
    return "%" + text_.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _session_filters(query, therapist_id: UUID, filters: dict):
    query = query.where(sessions.c.therapist_id == therapist_id)
    if filters.get("patient_id"):
        query = query.where(sessions.c.patient_id == filters["patient_id"])
    if filters.get("status") == "cancelled":
        query = query.where(sessions.c.cancelled_at.is_not(None))
    elif filters.get("status"):
        query = query.where(session_status.c.status == filters["status"], sessions.c.cancelled_at.is_(None))
    if filters.get("since"):
        query = query.where(sessions.c.created_at >= filters["since"])
    if filters.get("until"):
        query = query.where(sessions.c.created_at < filters["until"])
    if filters.get("q"):
        pattern = _like(filters["q"])
        query = query.where(or_(sessions.c.audio_filename.ilike(pattern, escape="\\"),
                                patients.c.display_name.ilike(pattern, escape="\\")))
    return query


async def session_page(db: AsyncSession, therapist_id: UUID, *, after: tuple[datetime, UUID] | None,
                       limit: int, sort: str = "created", descending: bool = True, offset: int = 0,
                       **filters) -> list:
    """One page of the therapist's sessions with their status, patient name and risk flags.
    The default order (newest first) pages by ``after``, the (created_at, id) of the previous
    page's last row; any other ``sort`` pages by ``offset``."""
    query = _session_filters(
        select(sessions, session_status.c.status, session_status.c.percent,
               session_status.c.updated_at.label("status_updated_at"),
               patients.c.display_name.label("patient_name"),
               session_results.c.notes["risk_flags"].label("risk_flags"),
               func.coalesce(func.jsonb_array_length(session_results.c.quality_warnings), 0)
               .label("quality_warning_count"))
        .select_from(sessions.outerjoin(session_status, session_status.c.session_id == sessions.c.id)
                     .outerjoin(patients, patients.c.id == sessions.c.patient_id)
                     .outerjoin(session_results, session_results.c.session_id == sessions.c.id)),
        therapist_id, filters)
    if after:
        created, sid = after
        query = query.where(or_(sessions.c.created_at < created,
                                and_(sessions.c.created_at == created, sessions.c.id < sid)))
    column = SORT_COLUMNS[sort]()
    primary = column.desc().nulls_last() if descending else column.asc().nulls_last()
    query = query.order_by(primary, sessions.c.created_at.desc(), sessions.c.id.desc()).offset(offset).limit(limit)
    return list((await db.execute(query)).all())


async def set_segment_edits(db: AsyncSession, session_id: UUID, edits: dict) -> None:
    await db.execute(update(sessions).where(sessions.c.id == session_id).values(segment_edits=edits))


async def set_cancelled(db: AsyncSession, session_id: UUID, at: datetime | None, reason: str | None) -> None:
    """Cancel (``at`` set) or lift a cancellation (None, None)."""
    await db.execute(update(sessions).where(sessions.c.id == session_id)
                     .values(cancelled_at=at, cancel_reason=reason))


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


# --- review and sign-off of notes (docs/adr/0008-notes-review-and-sign-off.md) -----------------
from shared.db.tables import note_addenda, note_reviews, note_versions  # noqa: E402  (one block, easy to merge)

_VERSION_SUMMARY = (note_versions.c.version, note_versions.c.kind, note_versions.c.author_id,
                    note_versions.c.author_name, note_versions.c.base_version, note_versions.c.changes,
                    note_versions.c.created_at)


async def review_row(db: AsyncSession, session_id: UUID, lock: bool = False):
    """The session's review row (None before anyone read or edited its notes); ``lock``
    holds it until the transaction ends, so edits of one session apply one at a time."""
    query = select(note_reviews).where(note_reviews.c.session_id == session_id)
    return (await db.execute(query.with_for_update() if lock else query)).first()


async def insert_review(db: AsyncSession, session_id: UUID) -> None:
    """The review row with no version yet (current_version 0); nothing if it exists."""
    await db.execute(pg_insert(note_reviews).values(session_id=session_id, current_version=0)
                     .on_conflict_do_nothing(index_elements=["session_id"]))


async def insert_note_version(db: AsyncSession, session_id: UUID, version: int, kind: str, notes: dict, *,
                              author_id: UUID | None = None, author_name: str | None = None,
                              base_version: int | None = None, changes: list | None = None,
                              source_digest: str | None = None, engine: dict | None = None) -> None:
    """Version ``version`` and the review row pointing at it (the caller holds the row lock)."""
    await db.execute(note_versions.insert().values(
        session_id=session_id, version=version, kind=kind, notes=notes, author_id=author_id, author_name=author_name,
        base_version=base_version, changes=changes or [], source_digest=source_digest, engine=engine))
    await db.execute(update(note_reviews).where(note_reviews.c.session_id == session_id)
                     .values(current_version=version, updated_at=func.now()))


async def latest_machine_version(db: AsyncSession, session_id: UUID):
    """(version, source_digest) of the newest machine version, or None."""
    query = (select(note_versions.c.version, note_versions.c.source_digest)
             .where(note_versions.c.session_id == session_id, note_versions.c.kind == "machine")
             .order_by(note_versions.c.version.desc()).limit(1))
    return (await db.execute(query)).first()


async def note_version(db: AsyncSession, session_id: UUID, version: int):
    query = select(note_versions).where(note_versions.c.session_id == session_id, note_versions.c.version == version)
    return (await db.execute(query)).first()


async def note_version_list(db: AsyncSession, session_id: UUID) -> list:
    """Every version of the session's notes without their text, oldest first."""
    query = (select(*_VERSION_SUMMARY).where(note_versions.c.session_id == session_id)
             .order_by(note_versions.c.version))
    return list((await db.execute(query)).all())


async def sign_notes(db: AsyncSession, session_id: UUID, version: int, by: UUID, by_name: str):
    done = await db.execute(update(note_reviews).where(note_reviews.c.session_id == session_id,
                                                       note_reviews.c.signed_version.is_(None))
                            .values(signed_version=version, signed_by=by, signed_by_name=by_name,
                                    signed_at=func.now(), updated_at=func.now())
                            .returning(note_reviews.c.signed_at))
    return done.first()


async def accept_machine_after(db: AsyncSession, session_id: UUID, version: int) -> None:
    await db.execute(update(note_reviews).where(note_reviews.c.session_id == session_id)
                     .values(accept_machine_after=version, updated_at=func.now()))


async def insert_addendum(db: AsyncSession, session_id: UUID, text_: str, author_id: UUID, author_name: str):
    return (await db.execute(note_addenda.insert().values(
        session_id=session_id, text=text_, author_id=author_id, author_name=author_name).returning(note_addenda))).one()


async def addenda_of(db: AsyncSession, session_id: UUID) -> list:
    query = select(note_addenda).where(note_addenda.c.session_id == session_id).order_by(note_addenda.c.id)
    return list((await db.execute(query)).all())


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
