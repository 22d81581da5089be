"""The progress service's decisions, as plain functions ``(event, delivery, deps)``:
fold every pipeline event into the session's view (services/progress/state.py), keep
the stage results, and publish session.status with a per-session monotonic seq when the
visible state changed; fail sessions that stall. All state goes through a ProgressStore
(services/progress/store.py), so every branch is unit tested on an in-memory fake."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.contracts.events import (
    DiarizationReady,
    Event,
    NotesFailed,
    NotesReady,
    SessionDeleted,
    SessionProgress,
    SessionStatus,
    TranscriptMerged,
    TranscriptReady,
)
from shared.envelope import Envelope
from shared.logging import get_logger
from shared.redrive import events_to_resend, topics_of, unfinished_stage
from shared.telemetry import ServiceMetrics
from services.progress.state import TERMINAL, SessionView, apply_event
from services.progress.store import ProgressStore, ProgressTransaction, Stranded

log = get_logger(__name__)

RECONCILE_BATCH = 50


@dataclass(frozen=True)
class ProgressDeps:
    store: ProgressStore
    clock: Callable[[], datetime]
    metrics: ServiceMetrics
    service: str
    stage_deadline_s: float
    stage_stall_s: float = 300.0
    redrive_max: int = 3


async def on_pipeline_event(event: Event, delivery: Envelope, deps: ProgressDeps) -> None:
    sid = event.session_id
    async with deps.store.transaction() as tx:
        # Progress ticks are idempotent by construction (max fraction); everything else
        # is deduplicated by event id.
        claimed = isinstance(event, SessionProgress) or await tx.claim(delivery.event_id, sid)
        # Only a duplicate notes result of a merged session may need applying again (the
        # read model of a session never merged, or deleted, is not created for it).
        if not claimed and not (isinstance(event, (NotesReady, NotesFailed)) and await tx.merged_version(sid) is not None):
            return _duplicate(deps)
        view, seq = await tx.lock_view(sid, deps.clock())
        if not claimed and not notes_result_undone(view, event, await tx.merged_version(sid)):
            return _duplicate(deps)
        if isinstance(event, TranscriptMerged) and event.version < (await tx.merged_version(sid) or 0):
            # An older merge arriving after a newer one changes neither result nor status.
            log.info("stale_merge_ignored", version=event.version)
            return
        changed = apply_event(view, event)
        result = result_values(event)
        if result:
            await tx.save_result(sid, **result)
        if not changed:
            return
        await _publish_status(tx, view, seq, deps, delivery.traceparent)
    if view.status in TERMINAL:
        deps.metrics.sessions.labels(view.status).inc()


def _duplicate(deps: ProgressDeps) -> None:
    deps.metrics.duplicates.labels(deps.service).inc()
    log.info("duplicate_event_ignored")


def notes_result_undone(view: SessionView, event: Event, merged_version: int | None) -> bool:
    """A notes result seen before whose effect a late copy of the SAME merge undid.

    After a broker loses its records the first delivery of transcript.merged can reach this
    service after notes.ready (re-driven from the outbox): the merge reopens the notes stage
    ("a re-merge re-runs notes"), but the notes service already has a run for that version
    and writes none, so the re-driven notes.ready, a duplicate by event id, must be applied
    again or the session waits in extracting_notes for ever. Never for notes of an older
    transcript than the stored merge (a real re-merge waits for its own notes)."""
    if not isinstance(event, (NotesReady, NotesFailed)) or view.stages["notes"].state in ("done", "failed"):
        return False
    return view.status not in TERMINAL and (event.transcript_version or 0) >= (merged_version or 0)


async def on_session_deleted(event: SessionDeleted, delivery: Envelope, deps: ProgressDeps) -> None:
    await deps.store.forget(event.session_id)
    log.info("session_forgotten")


def result_values(event: Event) -> dict:
    """What of this event the session's results keep (session_results columns)."""
    payload = event.model_dump(mode="json")
    if isinstance(event, TranscriptReady):
        return {"transcript": payload}
    if isinstance(event, DiarizationReady):
        return {"diarization": payload}
    if isinstance(event, TranscriptMerged):
        return {"merged": payload, "merged_version": event.version, "quality_warnings": payload["quality_warnings"]}
    if isinstance(event, NotesReady):
        # when these notes were written: a regeneration is told apart from the notes it replaces
        engine = {**payload["engine"], "generated_at": (payload.get("timing") or {}).get("finished_at")}
        return {"notes": payload["notes"], "notes_engine": engine, "notes_error": None}
    if isinstance(event, NotesFailed):
        return {"notes_error": payload["error"]}
    return {}


async def _publish_status(
    tx: ProgressTransaction, view: SessionView, previous_seq: int, deps: ProgressDeps, traceparent: str | None
) -> None:
    status = SessionStatus(
        session_id=view.session_id, seq=previous_seq + 1, status=view.status, percent=view.percent,
        message=view.message, eta_s=view.eta_s, error=view.error, stages=view.stages, warnings=view.warnings,
    )
    await tx.save_status(view, status, deps.clock(), traceparent)


def fail_stalled(view: SessionView, limit_s: float) -> None:
    """Nothing stays 'processing' forever: the view of a session with no progress for
    ``limit_s`` becomes failed with a message saying which stages did not finish."""
    stalled = [name for name, stage in view.stages.items() if stage.state in ("pending", "running")]
    view.status = "failed"
    view.error = (f"Processing stalled: no progress for {limit_s / 60:.0f} minutes "
                  f"(stages not finished: {', '.join(stalled) or 'none'}). Please upload again.")
    view.message = view.error
    view.eta_s = 0.0


def missing_stage(view: SessionView) -> str | None:
    """The first stage (pipeline order) that has not finished."""
    return unfinished_stage(view.stages)


def decide(stranded: Stranded, now: datetime, deps: ProgressDeps) -> tuple[str, str | None]:
    """("fail", None) past the deadline; ("redrive", stage) while the stage has re-drives
    left; ("wait", stage) when they are used up (only the deadline is left)."""
    if (now - stranded.updated_at).total_seconds() >= deps.stage_deadline_s:
        return "fail", None
    stage = missing_stage(stranded.view)
    if stage is None or stranded.redrives.get(stage, 0) >= deps.redrive_max:
        return "wait", stage
    return "redrive", stage


async def reconcile(deps: ProgressDeps) -> int:
    """Re-drive stranded sessions from PostgreSQL, fail those past the deadline (SKIP
    LOCKED: replicas share the work). Returns how many sessions it acted on."""
    now = deps.clock()
    stall_cutoff = now - timedelta(seconds=deps.stage_stall_s)
    deadline_cutoff = now - timedelta(seconds=deps.stage_deadline_s)
    failed = redriven = 0
    async with deps.store.transaction() as tx:
        redriven += await _redrive_unseen_uploads(tx, deadline_cutoff, stall_cutoff, now)
        for stranded in await tx.stranded(stall_cutoff, deadline_cutoff, RECONCILE_BATCH):
            action, stage = decide(stranded, now, deps)
            if action == "fail":
                fail_stalled(stranded.view, deps.stage_deadline_s)
                await _publish_status(tx, stranded.view, stranded.seq, deps, None)
                failed += 1
            elif action == "redrive":
                redriven += await _redrive(tx, stranded, stage, now)
    if failed:
        deps.metrics.sessions.labels("failed").inc(failed)
        log.warning("stalled_sessions_failed", count=failed)
    return failed + redriven


async def _redrive(tx: ProgressTransaction, stranded: Stranded, stage: str, now: datetime) -> int:
    sid = stranded.view.session_id
    latest = await tx.latest_events(sid, topics_of(stage))
    resent = await tx.republish(events_to_resend(stage, latest))
    redrives = {**stranded.redrives, stage: stranded.redrives.get(stage, 0) + 1}
    await tx.mark_redriven(sid, redrives, now)
    if resent:
        log.warning("stranded_session_redriven", session_id=sid, stage=stage, attempt=redrives[stage], events=resent)
    else:  # nothing in the outbox to start it from (e.g. published around it): the deadline decides
        log.warning("stranded_session_has_no_events", session_id=sid, stage=stage)
    return 1


async def _redrive_unseen_uploads(tx: ProgressTransaction, since: datetime, cutoff: datetime, now: datetime) -> int:
    """Uploads this read model never saw (the event was lost before progress read it):
    create the session's row and send the upload again."""
    unseen = await tx.unseen_uploads(since, cutoff, RECONCILE_BATCH)
    for sid, outbox_id in unseen:
        await tx.lock_view(sid, now)
        await tx.republish([outbox_id])
        await tx.mark_redriven(sid, {"transcription": 1}, now)
        log.warning("lost_upload_redriven", session_id=str(sid))
    return len(unseen)


def reconcile_interval_s(stage_deadline_s: float, stage_stall_s: float | None = None) -> float:
    shortest = min(stage_deadline_s, stage_stall_s or stage_deadline_s)
    return min(60.0, max(0.5, shortest / 5))
