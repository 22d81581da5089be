"""Review and sign-off of a session's clinical notes: versions, edits, risk-flag review,
signature, addenda (docs/adr/0008-notes-review-and-sign-off.md). Every route answers 404
for another therapist's session; 409 (with a ``code``) when the notes are signed, the
edit's base version is stale, or there are no notes yet."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, HTTPException, Path
from sqlalchemy.ext.asyncio import AsyncSession

from shared.contracts.events import NotesSigned
from shared.outbox import enqueue
from services.gateway import queries, review_flow
from services.gateway.deps import DB, ERRORS, State, Therapist, committing, owned_session
from services.gateway.schemas import (
    VERSION_MAX,
    AddendumOut,
    AddendumRequest,
    ErrorBody,
    FlagReviewRequest,
    NotesEditRequest,
    NotesReview,
    NoteVersionOut,
    NoteVersionSummary,
    SafeText,
    SignRequest,
)

SOURCE = "gateway"
REVIEW_ERRORS = {**ERRORS, 409: {"model": ErrorBody, "description": "Signed and locked, stale base version, or no notes yet"}}
router = APIRouter(tags=["notes review"])


async def _view(db: AsyncSession, session_id: UUID) -> NotesReview:
    return await review_flow.view(db, session_id, await queries.results_row(db, session_id))


@router.get("/api/sessions/{session_id}/notes/review", response_model=NotesReview, responses=REVIEW_ERRORS,
            summary="The notes under review: current version, versions, risk-flag reviews, signature, addenda")
async def get_review(session_id: UUID, therapist_id: Therapist, db: DB) -> NotesReview:
    await owned_session(session_id, therapist_id, db)
    async with committing(db):
        await review_flow.sync(db, session_id, await queries.results_row(db, session_id))
        await queries.audit(db, therapist_id, session_id, "notes:read")
    return await _view(db, session_id)


@router.get("/api/sessions/{session_id}/notes/versions", response_model=list[NoteVersionSummary],
            responses=REVIEW_ERRORS, summary="Every version of the notes (who, when, what changed), oldest first")
async def list_versions(session_id: UUID, therapist_id: Therapist, db: DB) -> list[NoteVersionSummary]:
    await owned_session(session_id, therapist_id, db)
    async with committing(db):
        await review_flow.sync(db, session_id, await queries.results_row(db, session_id))
    return await review_flow.versions(db, session_id)


@router.get("/api/sessions/{session_id}/notes/versions/{version}", response_model=NoteVersionOut,
            responses=REVIEW_ERRORS, summary="One version of the notes, as it was")
async def get_version(session_id: UUID, therapist_id: Therapist, db: DB,
                      version: int = Path(ge=1, le=VERSION_MAX)) -> NoteVersionOut:
    await owned_session(session_id, therapist_id, db)
    async with committing(db):
        await review_flow.sync(db, session_id, await queries.results_row(db, session_id))
        await queries.audit(db, therapist_id, session_id, "notes:read")
    found = await review_flow.version(db, session_id, version)
    if found is None:
        raise HTTPException(404, "version not found")
    return found


@router.patch("/api/sessions/{session_id}/notes", response_model=NotesReview, responses=REVIEW_ERRORS,
              summary="Edit notes fields: a new version on top of base_version (409 if stale or signed)")
async def edit_notes(session_id: UUID, body: NotesEditRequest, therapist_id: Therapist, db: DB) -> NotesReview:
    await owned_session(session_id, therapist_id, db)
    async with committing(db):
        await review_flow.edit(db, session_id, await queries.results_row(db, session_id), therapist_id,
                               body.base_version, body.notes.model_dump(mode="json", exclude_unset=True))
        await queries.audit(db, therapist_id, session_id, "notes:edit")
    return await _view(db, session_id)


@router.post("/api/sessions/{session_id}/notes/flags/{flag_id}/review", response_model=NotesReview,
             responses=REVIEW_ERRORS, summary="Confirm or dismiss (with a reason) one risk flag: a new version")
async def review_flag(session_id: UUID, body: FlagReviewRequest, therapist_id: Therapist, db: DB,
                      flag_id: SafeText = Path(max_length=32)) -> NotesReview:
    await owned_session(session_id, therapist_id, db)
    async with committing(db):
        await review_flow.review_flag(db, session_id, await queries.results_row(db, session_id), therapist_id,
                                      flag_id, body)
        await queries.audit(db, therapist_id, session_id, "notes:flag")
    return await _view(db, session_id)


@router.post("/api/sessions/{session_id}/notes:sign", response_model=NotesReview, responses=REVIEW_ERRORS,
             summary="Approve and sign the current version: it is locked from then on (addenda only)")
async def sign_notes(session_id: UUID, body: SignRequest, therapist_id: Therapist, state: State, db: DB) -> NotesReview:
    row = await owned_session(session_id, therapist_id, db)
    async with committing(db):
        version, signed_at = await review_flow.sign(db, session_id, await queries.results_row(db, session_id),
                                                    therapist_id, body.base_version)
        await enqueue(db, NotesSigned(session_id=session_id, owner_id=therapist_id, patient_id=row.patient_id,
                                      version=version, signed_by=therapist_id, signed_at=signed_at), SOURCE)
        await queries.audit(db, therapist_id, session_id, "notes:sign")
    state.publish_soon()
    return await _view(db, session_id)


@router.post("/api/sessions/{session_id}/notes/addenda", response_model=AddendumOut, status_code=201,
             responses=REVIEW_ERRORS, summary="Append an addendum to signed notes (the signed version never changes)")
async def add_addendum(session_id: UUID, body: AddendumRequest, therapist_id: Therapist, db: DB) -> AddendumOut:
    await owned_session(session_id, therapist_id, db)
    async with committing(db):
        added = await review_flow.add_addendum(db, session_id, await queries.results_row(db, session_id),
                                               therapist_id, body.text)
        await queries.audit(db, therapist_id, session_id, "notes:addendum")
    return added
