"""Review and sign-off of notes against the database: the decisions of notes_review.py,
applied through queries.py inside the caller's transaction (docs/adr/0008-notes-review-and-sign-off.md).

Versions are made lazily: the first time anyone reads or changes a session's review, its
machine notes become version 1; regenerated machine notes become the next version when
notes_review.machine_supersedes allows it. Writers lock the session's review row, so two
edits of one session apply one after the other and the second, made on the same base
version, gets 409."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway import queries
from services.gateway.notes_render import ReviewInfo
from services.gateway.notes_review import (
    ReviewConflict,
    ReviewState,
    apply_edit,
    apply_flag_review,
    check_addendum,
    check_editable,
    check_regenerate,
    check_signable,
    digest,
    machine_supersedes,
    machine_version,
    unreviewed_flags,
)
from services.gateway.schemas import AddendumOut, NoteSignature, NotesReview, NoteVersionOut, NoteVersionSummary



def no_notes() -> ReviewConflict:
    return ReviewConflict("no_notes", "no notes for this session yet")


def _state(row) -> ReviewState | None:
    if row is None or not row.current_version:
        return None
    return ReviewState(current_version=row.current_version, signed_version=row.signed_version,
                       signed_by_name=row.signed_by_name, signed_at=row.signed_at,
                       accept_machine_after=row.accept_machine_after)


async def _pending_machine(db: AsyncSession, session_id: UUID, state: ReviewState, machine: dict | None) -> tuple[bool, bool]:
    """(supersedes, differs): whether the machine notes as they are now become the next
    version, and whether they differ from those the latest machine version came from."""
    if not machine:
        return False, False
    current = await queries.note_version(db, session_id, state.current_version)
    latest = await queries.latest_machine_version(db, session_id)
    now = digest(machine)
    latest_digest = latest.source_digest if latest else None
    return machine_supersedes(state, current.kind, latest_digest, now), now != latest_digest


async def sync(db: AsyncSession, session_id: UUID, results) -> ReviewState:
    """The session's review state after making version 1 or adopting regenerated machine
    notes; locks the review row until the caller's transaction ends. Raises the no-notes
    conflict when the session has neither notes nor versions."""
    machine = results.notes if results is not None else None
    if machine:
        await queries.insert_review(db, session_id)
    state = _state(await queries.review_row(db, session_id, lock=True))
    engine = results.notes_engine if results is not None else None
    if state is None:
        if not machine:
            raise no_notes()
        await queries.insert_note_version(db, session_id, 1, "machine", machine_version(machine),
                                          source_digest=digest(machine), engine=engine)
        return ReviewState(current_version=1)
    supersedes, _ = await _pending_machine(db, session_id, state, machine)
    if supersedes:
        version = state.current_version + 1
        await queries.insert_note_version(db, session_id, version, "machine", machine_version(machine),
                                          base_version=state.current_version, source_digest=digest(machine),
                                          engine=engine, changes=[{"field": "*", "detail": "regenerated"}])
        state = replace(state, current_version=version, accept_machine_after=None)
    return state


async def current_notes(db: AsyncSession, session_id: UUID, results) -> dict | None:
    """The notes every reader sees (API detail, exports), without writing: the current
    version, or what sync would make of the machine notes."""
    machine = results.notes if results is not None else None
    state = _state(await queries.review_row(db, session_id))
    if state is None:
        return machine_version(machine) if machine else None
    supersedes, _ = await _pending_machine(db, session_id, state, machine)
    if supersedes:
        return machine_version(machine)
    return (await queries.note_version(db, session_id, state.current_version)).notes


async def author_name(db: AsyncSession, therapist_id: UUID) -> str:
    row = await queries.therapist_by_id(db, therapist_id)
    return row.display_name or row.email


def _summary(row) -> NoteVersionSummary:
    return NoteVersionSummary(version=row.version, kind=row.kind, author_id=row.author_id, author_name=row.author_name,
                              base_version=row.base_version, changes=list(row.changes or []), created_at=row.created_at)


def _addendum(row) -> AddendumOut:
    return AddendumOut(id=row.id, text=row.text, author_id=row.author_id, author_name=row.author_name,
                       created_at=row.created_at)


async def view(db: AsyncSession, session_id: UUID, results) -> NotesReview:
    """The review as the API shows it (after sync, in the same transaction)."""
    review = await queries.review_row(db, session_id)
    state = _state(review)
    if state is None:
        raise no_notes()
    current = await queries.note_version(db, session_id, state.current_version)
    _, differs = await _pending_machine(db, session_id, state, results.notes if results is not None else None)
    signature = None
    if state.signed:
        signature = NoteSignature(version=review.signed_version, signed_by=review.signed_by,
                                  signed_by_name=review.signed_by_name, signed_at=review.signed_at)
    return NotesReview(
        session_id=session_id, status="signed" if state.signed else "draft", current_version=state.current_version,
        notes=current.notes, signature=signature,
        versions=[_summary(r) for r in await queries.note_version_list(db, session_id)],
        addenda=[_addendum(r) for r in await queries.addenda_of(db, session_id)],
        unreviewed_flags=unreviewed_flags(current.notes), machine_update_pending=differs)


async def version(db: AsyncSession, session_id: UUID, number: int) -> NoteVersionOut | None:
    row = await queries.note_version(db, session_id, number)
    if row is None:
        return None
    return NoteVersionOut(**_summary(row).model_dump(), notes=row.notes, engine=row.engine)


async def versions(db: AsyncSession, session_id: UUID) -> list[NoteVersionSummary]:
    return [_summary(r) for r in await queries.note_version_list(db, session_id)]


async def edit(db: AsyncSession, session_id: UUID, results, therapist_id: UUID, base_version: int, fields: dict) -> int:
    """A new version with ``fields`` changed; returns its number."""
    state = await sync(db, session_id, results)
    check_editable(state, base_version)
    current = await queries.note_version(db, session_id, state.current_version)
    notes, changes = apply_edit(current.notes, fields)
    return await _new_version(db, session_id, state, "edit", notes, changes, therapist_id)


async def review_flag(db: AsyncSession, session_id: UUID, results, therapist_id: UUID, flag_id: str, body) -> int:
    state = await sync(db, session_id, results)
    check_editable(state, body.base_version)
    current = await queries.note_version(db, session_id, state.current_version)
    name = await author_name(db, therapist_id)
    notes, changes = apply_flag_review(current.notes, flag_id, body.decision, body.reason, body.severity,
                                       therapist_id, name, datetime.now(timezone.utc))
    return await _new_version(db, session_id, state, "flag_review", notes, changes, therapist_id, name)


async def _new_version(db: AsyncSession, session_id: UUID, state: ReviewState, kind: str, notes: dict,
                       changes: list[dict], therapist_id: UUID, name: str | None = None) -> int:
    number = state.current_version + 1
    await queries.insert_note_version(db, session_id, number, kind, notes, author_id=therapist_id,
                                      author_name=name or await author_name(db, therapist_id),
                                      base_version=state.current_version, changes=changes)
    return number


async def sign(db: AsyncSession, session_id: UUID, results, therapist_id: UUID, base_version: int) -> tuple[int, datetime]:
    """Sign the current version (the one the therapist read): (version, signed_at)."""
    state = await sync(db, session_id, results)
    current = await queries.note_version(db, session_id, state.current_version)
    check_signable(state, base_version, current.notes)
    signed = await queries.sign_notes(db, session_id, state.current_version, therapist_id,
                                      await author_name(db, therapist_id))
    return state.current_version, signed.signed_at


async def add_addendum(db: AsyncSession, session_id: UUID, results, therapist_id: UUID, text: str) -> AddendumOut:
    state = await sync(db, session_id, results)
    cleaned = check_addendum(state, text)
    row = await queries.insert_addendum(db, session_id, cleaned, therapist_id, await author_name(db, therapist_id))
    return _addendum(row)


async def before_regenerate(db: AsyncSession, session_id: UUID, results, discard_edits: bool) -> None:
    """Refuse a regeneration that would touch signed notes or silently replace a human's
    edits; with ``discard_edits`` record that the coming machine notes may replace them."""
    try:
        state = await sync(db, session_id, results)
    except ReviewConflict:  # no notes yet (e.g. notes failed): nothing to protect
        return
    current = await queries.note_version(db, session_id, state.current_version)
    if check_regenerate(state, current.kind, discard_edits):
        await queries.accept_machine_after(db, session_id, state.current_version)


async def export_review(db: AsyncSession, session_id: UUID, results) -> ReviewInfo | None:
    """The review facts an export prints, after sync (the caller commits); None without notes."""
    try:
        state = await sync(db, session_id, results)
    except ReviewConflict:
        return None
    review = await queries.review_row(db, session_id)
    current = await queries.note_version(db, session_id, state.current_version)
    addenda = [{"at": a.created_at, "author": a.author_name, "text": a.text} for a in await queries.addenda_of(db, session_id)]
    return ReviewInfo(version=state.current_version, status="signed" if state.signed else "draft", kind=current.kind,
                      signed_by=review.signed_by_name, signed_at=review.signed_at, addenda=addenda)
