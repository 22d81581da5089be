"""The joiner's decisions, as plain functions ``(event, delivery, deps)``: record each
half or failure, and publish transcript.merged once the join is complete, when the
diarization deadline passes (degraded, without speakers) or on a remerge command. All
state goes through a JoinStore (services/joiner/store.py), so every branch is unit
tested on an in-memory fake."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from datetime import datetime, timedelta
from typing import Any

from shared.contracts.events import (
    DiarizationFailed,
    DiarizationReady,
    Event,
    SessionDeleted,
    TranscriptFailed,
    TranscriptReady,
    TranscriptRemerge,
    TranscriptSegment,
)
from shared.envelope import Envelope
from shared.logging import get_logger
from shared.telemetry import ServiceMetrics, work_span
from services.joiner.join import build_merged, degraded_warning
from services.joiner.quality import QualityThresholds
from services.joiner.store import JoinRow, JoinStore, JoinTransaction

log = get_logger(__name__)

DEADLINE_BATCH = 20


@dataclass(frozen=True)
class JoinDeps:
    store: JoinStore
    blobs: Any  # shared.blobstore.BlobStore: get_json / put_json
    run_blocking: Callable[..., Awaitable[Any]]
    clock: Callable[[], datetime]
    metrics: ServiceMetrics
    service: str
    deadline_s: float
    inline_payload_max_bytes: int
    quality: QualityThresholds = QualityThresholds()


# --- events --------------------------------------------------------------------------------
async def on_transcript_ready(event: TranscriptReady, delivery: Envelope, deps: JoinDeps) -> None:
    now = deps.clock()
    await _record_and_merge(event, delivery, deps, {
        "transcript": event.model_dump(mode="json"), "transcript_at": now,
        "deadline_at": now + timedelta(seconds=deps.deadline_s), "traceparent": delivery.traceparent,
    })


async def on_diarization_ready(event: DiarizationReady, delivery: Envelope, deps: JoinDeps) -> None:
    await _record_and_merge(event, delivery, deps, {"diarization": event.model_dump(mode="json")})


async def on_diarization_failed(event: DiarizationFailed, delivery: Envelope, deps: JoinDeps) -> None:
    await _record_and_merge(event, delivery, deps, {"diarization_error": event.error.model_dump(mode="json")})


async def on_transcript_failed(event: TranscriptFailed, delivery: Envelope, deps: JoinDeps) -> None:
    # Recorded so a diarization arriving later does not merge a transcript that failed.
    await _record_and_merge(event, delivery, deps, {"transcript_error": event.error.model_dump(mode="json")})


async def on_remerge(event: TranscriptRemerge, delivery: Envelope, deps: JoinDeps) -> None:
    await _record_and_merge(event, delivery, deps, {})


async def on_session_deleted(event: SessionDeleted, delivery: Envelope, deps: JoinDeps) -> None:
    await deps.store.forget(event.session_id)
    log.info("session_forgotten")


async def _record_and_merge(event: Event, delivery: Envelope, deps: JoinDeps, fields: dict) -> None:
    sid = event.session_id
    async with deps.store.transaction() as tx:
        if not await tx.claim(delivery.event_id, sid):
            deps.metrics.duplicates.labels(deps.service).inc()
            log.info("duplicate_event_ignored")
            return
        if fields:
            await tx.save(sid, **fields)
        row = await tx.lock(sid)
        if row is None:
            return  # a remerge for a session the joiner never saw
        if isinstance(event, TranscriptRemerge):
            await _merge(tx, row, deps, delivery.traceparent, forced=True)
        elif isinstance(event, DiarizationReady) and row.merged_at is not None:
            if row.degraded:
                # Late diarization after a degraded merge: recorded, not merged silently;
                # a remerge (POST .../transcript:remerge) publishes a diarized version.
                await tx.save(sid, late_diarization=True)
                log.info("late_diarization_recorded")
        else:
            await _merge(tx, row, deps, delivery.traceparent)


# --- the deadline --------------------------------------------------------------------------
async def check_deadlines(deps: JoinDeps) -> int:
    """Degrade, never hang: merge without speakers when diarization has not arrived by
    the deadline. The deadline is stored with the row, so this survives restarts."""
    merged = 0
    async with deps.store.transaction() as tx:
        for row in await tx.due(deps.clock(), DEADLINE_BATCH):
            if await _merge(tx, row, deps, row.traceparent, deadline_passed=True):
                merged += 1
    return merged


# --- the merge -----------------------------------------------------------------------------
def _degraded_reason(row: JoinRow, deps: JoinDeps, forced: bool, deadline_passed: bool) -> str | None:
    """Why the merge goes ahead without speakers, or None to keep waiting."""
    if row.diarization_error:
        return row.diarization_error.get("message", "diarization failed")
    if deadline_passed or forced:
        return f"speaker identification did not finish within {deps.deadline_s:.0f} s"
    return None


async def _merge(
    tx: JoinTransaction, row: JoinRow, deps: JoinDeps, traceparent: str | None,
    forced: bool = False, deadline_passed: bool = False,
) -> bool:
    """Publish transcript.merged if the join is complete (or forced, or past its deadline)."""
    if row.transcript is None or row.transcript_error is not None:
        return False
    if row.merged_at is not None and not forced:
        return False
    diarization = DiarizationReady.model_validate(row.diarization) if row.diarization else None
    warnings: list[str] = []
    if diarization is None:
        reason = _degraded_reason(row, deps, forced, deadline_passed)
        if reason is None:
            return False  # wait for the other half (or the deadline)
        warnings.append(degraded_warning(reason))
    with work_span("merge", row.session_id, traceparent or row.traceparent):  # the enqueued event's parent
        transcript = TranscriptReady.model_validate(row.transcript)
        segments = transcript.segments
        if segments is None and transcript.segments_ref:
            raw = await deps.run_blocking(deps.blobs.get_json, transcript.segments_ref)
            segments = [TranscriptSegment.model_validate(s) for s in raw]
        version = row.merged_version + 1
        build = partial(build_merged, quality=deps.quality)
        merged = await deps.run_blocking(build, row.session_id, transcript, segments or [], diarization, version, warnings)
        if len(merged.model_dump_json()) > deps.inline_payload_max_bytes:
            merged.segments_ref = await deps.run_blocking(
                deps.blobs.put_json, f"sessions/{row.session_id}/merged-v{version}.json",
                [s.model_dump(mode="json") for s in merged.segments or []])
            merged.segments = None
        await tx.save(row.session_id, merged_version=version, merged_at=deps.clock(), degraded=diarization is None,
                      late_diarization=False)
        await tx.publish(merged, traceparent or row.traceparent)
    log.info("transcript_merged", version=version, diarized=merged.diarized, segments=len(merged.segments or []),
             quality_warnings=len(merged.quality_warnings))
    return True

