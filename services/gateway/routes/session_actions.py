"""What a therapist does to a session besides reading it: correct a segment's text (the
original is kept, and the change audited), retry a stalled or failed session, cancel one.
Every route answers 404 for another therapist's session."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from uuid import UUID

from fastapi import APIRouter, HTTPException, Path

from shared.outbox import enqueue
from shared.outbox import latest_ids, republish
from shared.redrive import events_to_resend, topics_of, unfinished_stage
from services.gateway import queries
from services.gateway.deps import DB, ERRORS, State, Therapist, committing, owned_session
from services.gateway.readmodel import session_detail, transcript_view
from services.gateway.routes.sessions import SOURCE, full_detail, regenerate_command
from services.gateway.schemas import CancelRequest, ErrorBody, RetryAccepted, SegmentEdit, SessionDetail

router = APIRouter(tags=["sessions"])
CONFLICT = {**ERRORS, 409: {"model": ErrorBody, "description": "Not possible in the session's state"}}


async def _segment_text(state, db, row, index: int) -> str:
    """The recognised (unedited) text of segment ``index``; 404 when there is no such segment."""
    results = await queries.results_row(db, row.id)
    view = await asyncio.to_thread(transcript_view, results, state.blobs, row)
    segments = view["segments"] or []
    if not 0 <= index < len(segments):
        raise HTTPException(404, "segment not found")
    return segments[index].get("original_text", segments[index].get("text", ""))


@router.patch("/api/sessions/{session_id}/segments/{index}", response_model=SessionDetail, responses=ERRORS,
              summary="Correct the text of one transcript segment (the original is kept; notes: regenerate)")
async def edit_segment(session_id: UUID, body: SegmentEdit, therapist_id: Therapist, state: State, db: DB,
                       index: int = Path(ge=0, le=100_000)) -> SessionDetail:
    row = await owned_session(session_id, therapist_id, db)
    edits = dict(row.segment_edits or {})
    original = edits[str(index)]["original"] if str(index) in edits else await _segment_text(state, db, row, index)
    if body.text == original:
        edits.pop(str(index), None)  # back to what was recognised
    else:
        edits[str(index)] = {"text": body.text, "original": original,
                             "edited_at": datetime.now(timezone.utc).isoformat()}
    async with committing(db):
        await queries.set_segment_edits(db, session_id, edits)
        await queries.audit(db, therapist_id, session_id, f"segment.edit:{index}")
    row = await owned_session(session_id, therapist_id, db)
    return await full_detail(db, state, row)


async def _redrive(db, session_id: UUID, stage: str) -> int:
    latest = await latest_ids(db, session_id, topics_of(stage))
    return await republish(db, events_to_resend(stage, latest))


@router.post("/api/sessions/{session_id}:retry", response_model=RetryAccepted, status_code=202, responses=CONFLICT,
             summary="Retry a stalled session (its unfinished stage is driven again) or failed notes")
async def retry_session(session_id: UUID, therapist_id: Therapist, state: State, db: DB) -> RetryAccepted:
    row = await owned_session(session_id, therapist_id, db)
    detail = await session_detail(db, state.blobs, row, state.settings.stalled_after_s)
    notes = detail.stages.get("notes")
    notes_failed = (notes is not None and notes.state == "failed") or detail.notes_error is not None
    stage = "notes" if notes_failed and detail.transcript_segments is not None else unfinished_stage(detail.stages)
    if detail.status == "processed" and not notes_failed:
        raise HTTPException(409, "the session is processed: nothing to retry")
    if stage is None or (detail.status == "failed" and stage != "notes"):
        raise HTTPException(409, f"processing failed ({detail.error or 'no stage left to run'}); upload the recording again")
    async with committing(db):
        await queries.set_cancelled(db, session_id, None, None)
        if stage == "notes" and detail.transcript_segments is not None:
            await enqueue(db, regenerate_command(row, therapist_id, None), SOURCE)
            resent = 1
        else:
            resent = await _redrive(db, session_id, stage)
        await queries.audit(db, therapist_id, session_id, f"retry:{stage}")
    if not resent:
        raise HTTPException(409, "nothing to send again for this session; upload the recording again")
    state.publish_soon()
    return RetryAccepted(id=session_id, status=detail.status if detail.status != "cancelled" else "processing",
                         stage=stage, resent=resent)


@router.post("/api/sessions/{session_id}:cancel", response_model=SessionDetail, responses=CONFLICT,
             summary="Cancel an unfinished session: it shows as cancelled, whatever a later stage reports")
async def cancel_session(session_id: UUID, therapist_id: Therapist, state: State, db: DB,
                         body: CancelRequest | None = None) -> SessionDetail:
    row = await owned_session(session_id, therapist_id, db)
    detail = await session_detail(db, state.blobs, row, state.settings.stalled_after_s)
    if detail.status == "processed":
        raise HTTPException(409, "the session is already processed; delete it instead")
    async with committing(db):
        await queries.set_cancelled(db, session_id, datetime.now(timezone.utc),
                                    (body or CancelRequest()).reason)
        await queries.audit(db, therapist_id, session_id, "cancel")
    state.hub.notify(session_id)
    row = await owned_session(session_id, therapist_id, db)
    return await full_detail(db, state, row)
