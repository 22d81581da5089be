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
from shared.telemetry import ServiceMetrics
from services.progress.state import TERMINAL, SessionView, apply_event
from services.progress.store import ProgressStore, ProgressTransaction

log = get_logger(__name__)

RECONCILE_BATCH = 50


@dataclass(frozen=True)
class ProgressDeps:
    store: ProgressStore
    clock: Callable[[], datetime]
    metrics: ServiceMetrics
    service: str
    stage_deadline_s: float


async def on_pipeline_event(event: Event, delivery: Envelope, deps: ProgressDeps) -> None:
    sid = event.session_id
    async with deps.store.transaction() as tx:
        # Progress ticks are idempotent by construction (max fraction); everything else
        # is deduplicated by event id.
        if not isinstance(event, SessionProgress) and not await tx.claim(delivery.event_id, sid):
            deps.metrics.duplicates.labels(deps.service).inc()
            log.info("duplicate_event_ignored")
            return
        view, seq = await tx.lock_view(sid, deps.clock())
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
        return {"merged": payload, "merged_version": event.version}
    if isinstance(event, NotesReady):
        return {"notes": payload["notes"], "notes_engine": payload["engine"], "notes_error": None}
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


async def reconcile(deps: ProgressDeps) -> int:
    """Fail every session with no progress for stage_deadline_s (SKIP LOCKED: replicas share it)."""
    limit_s = deps.stage_deadline_s
    cutoff = deps.clock() - timedelta(seconds=limit_s)
    failed = 0
    async with deps.store.transaction() as tx:
        for view, seq in await tx.stalled(cutoff, RECONCILE_BATCH):
            fail_stalled(view, limit_s)
            await _publish_status(tx, view, seq, deps, None)
            failed += 1
    if failed:
        deps.metrics.sessions.labels("failed").inc(failed)
        log.warning("stalled_sessions_failed", count=failed)
    return failed


def reconcile_interval_s(stage_deadline_s: float) -> float:
    return min(60.0, max(1.0, stage_deadline_s / 10))
