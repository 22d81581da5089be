"""Fan-out of a long recording over the transcriber replicas, as plain handler functions
over their dependencies (services.transcriber.fanout_store owns the SQL, the blob store
holds the chunks' audio and results, both sealed with the session's key).

1. ``fan_out`` (the stage's work for a long upload, on the replica that got audio.uploaded):
   cut the recording at pauses, store each chunk's PCM, record the plan and enqueue one
   transcript.chunk per chunk. A re-driven upload of a fanned-out session re-enqueues only
   the chunks not done yet.
2. ``on_transcript_chunk`` (any replica): transcribe one chunk, store its segments, mark it
   done; the replica that completes the last chunk assembles (services.transcriber.chunking)
   and emits the same transcript.ready as the one-piece path. A chunk that keeps failing
   goes to the DLQ with its cause and fails the session with a message."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from shared.contracts.events import (AudioUploaded, ChunkRun, Engine, ErrorInfo, TranscriptChunk, TranscriptFailed,
                                     TranscriptReady, TranscriptSegment)
from shared.envelope import Envelope
from shared.jobs import ProgressFn
from shared.logging import get_logger
from shared.resilience import retrying
from shared.shredding import KeyShredded
from shared.stage import with_timing, pending_timing
from shared.telemetry import current_traceparent
from services.transcriber.chunking import assemble

log = get_logger(__name__)


@dataclass
class FanoutDeps:
    run_blocking: Callable[..., Awaitable[Any]]
    split: Callable[[str, UUID], tuple[list, list[str]]]  # blocking: (uri, session) -> (chunks, chunk audio uris)
    transcribe_chunk: Callable[[str, str | None], Any]  # blocking: (chunk audio uri, language) -> TranscriptionResult
    put_json: Callable[[str, Any], str]  # blocking
    get_json: Callable[[str], Any]  # blocking
    delete_blob: Callable[[str], Any]  # blocking
    store: Any  # FanoutStore, or a fake
    progress: Callable[[UUID, str | None], ProgressFn]
    dead_letter: Callable[[Envelope, str], Awaitable[None]]
    wake: Callable[[], None]
    worker: str  # this replica: host:pid
    engine: Engine
    inline_max_bytes: int
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # shared with the stage: one model, one job
    retry_attempts: int = 3
    retry_initial_s: float = 1.0
    sleep: Callable[[float], Awaitable[None]] | None = None


async def fan_out(event: AudioUploaded, progress: ProgressFn, deps: FanoutDeps) -> None:
    sid = event.session_id
    resent = await deps.store.resend_pending(sid)
    if resent is not None:
        deps.wake()
        log.info("fanout_chunks_resent", chunks=resent)
        return
    progress(0.0, "splitting the recording at pauses")
    chunks, uris = await deps.run_blocking(deps.split, event.audio.uri, sid)
    if await deps.store.start(sid, chunks, uris, event.options.language, chunks[-1].cut_end,
                              current_traceparent(None), notes_backend=event.options.notes_backend):
        deps.wake()
        log.info("fanout_started", chunks=len(chunks), audio_s=round(chunks[-1].cut_end, 1))


async def on_transcript_chunk(envelope: Envelope, deps: FanoutDeps) -> None:
    event = envelope.event
    assert isinstance(event, TranscriptChunk)
    if not await deps.store.chunk_wanted(event.session_id, event.index):
        log.info("chunk_not_wanted", index=event.index)  # done already, or the fan-out ended / was deleted
        return
    t0 = time.perf_counter()
    try:
        async with deps.lock:
            async for try_ in retrying(deps.retry_attempts, deps.retry_initial_s, 30.0, retry_on=(Exception,),
                                       sleep=deps.sleep):
                with try_:
                    result = await deps.run_blocking(deps.transcribe_chunk, event.audio_uri, event.language)
        uri = await deps.run_blocking(deps.put_json, f"sessions/{event.session_id}/chunks/{event.index:04d}.json",
                                      {"language": result.language,
                                       "segments": [s.model_dump(mode="json") for s in result.segments]})
    except KeyShredded:
        log.info("chunk_of_deleted_session_dropped", index=event.index)
        return
    except Exception as exc:
        await _chunk_failed(envelope, deps, exc)
        return
    fanout = await deps.store.chunk_done(event.session_id, event.index, uri, deps.worker, time.perf_counter() - t0)
    if fanout is None:
        return
    total = len(fanout.chunks)
    deps.progress(event.session_id, envelope.traceparent)(
        0.99 * fanout.done / total, f"transcribed {fanout.done} of {total} chunks")
    log.info("chunk_done", index=event.index, done=fanout.done, total=total)
    if fanout.done == total:
        await _assemble(fanout, envelope, deps)


async def _chunk_failed(envelope: Envelope, deps: FanoutDeps, exc: Exception) -> None:
    event = envelope.event
    reason = (f"chunk {event.index + 1} of {event.total} could not be transcribed after "
              f"{deps.retry_attempts} attempts ({type(exc).__name__})")
    failed = TranscriptFailed(session_id=event.session_id, attempts=deps.retry_attempts,
                              error=ErrorInfo(kind="permanent", code="chunk_failed", message=reason))
    log.warning("chunk_failed", index=event.index, error=type(exc).__name__)
    await deps.dead_letter(envelope, reason)
    if await deps.store.finish(event.session_id, "failed", failed, envelope.traceparent,
                               {"code": "chunk_failed", "chunk": event.index}, failed_index=event.index):
        deps.wake()


def _segments(deps: FanoutDeps, fanout) -> tuple[list[TranscriptSegment], str]:
    """Blocking: every chunk's stored result, assembled on the recording's clock."""
    pieces, language = {}, fanout.language
    for row in fanout.rows:
        data = deps.get_json(row.result_uri)
        language = language or data["language"]
        pieces[row.index] = [TranscriptSegment.model_validate(s) for s in data["segments"]]
    return assemble(pieces, fanout.chunks), language or "en"


async def _assemble(fanout, envelope: Envelope, deps: FanoutDeps) -> None:
    sid = fanout.session_id
    segments, language = await deps.run_blocking(_segments, deps, fanout)
    ready = TranscriptReady(session_id=sid, language=language, duration_s=round(fanout.duration_s, 3),
                            segments=segments, engine=deps.engine, timing=pending_timing(),
                            requested_language=fanout.language, notes_backend=fanout.notes_backend,
                            chunks=[ChunkRun(index=r.index, start=c.cut_start, end=c.cut_end, worker=r.worker or "",
                                             processing_s=r.processing_s or 0.0)
                                    for r, c in zip(fanout.rows, fanout.chunks)])
    ready = await spill_segments(ready, deps.inline_max_bytes, deps.run_blocking, deps.put_json)
    started = fanout.started_at
    elapsed = (datetime.now(timezone.utc) - started).total_seconds()
    ready = with_timing(ready, started, elapsed, fanout.duration_s)
    workers = sorted({r.worker for r in fanout.rows if r.worker})
    if await deps.store.finish(sid, "done", ready, fanout.traceparent,
                               {"rtf": ready.timing.rtf, "chunks": len(fanout.rows), "workers": workers}):
        deps.wake()
        deps.progress(sid, envelope.traceparent)(1.0, "transcribed")
        log.info("fanout_assembled", chunks=len(fanout.rows), workers=len(workers), rtf=ready.timing.rtf)
        await deps.run_blocking(_drop_chunk_blobs, deps, fanout)


def _drop_chunk_blobs(deps: FanoutDeps, fanout) -> None:
    """Blocking: the chunks' audio and results, no longer needed once transcript.ready is out."""
    for row in fanout.rows:
        for uri in (row.audio_uri, row.result_uri):
            if uri:
                deps.delete_blob(uri)


async def spill_segments(ready: TranscriptReady, inline_max_bytes: int, run_blocking, put_json) -> TranscriptReady:
    """A transcript too big for an event goes to the blob store, referenced by segments_ref."""
    if ready.segments is None or len(ready.model_dump_json()) <= inline_max_bytes:
        return ready
    uri = await run_blocking(put_json, f"sessions/{ready.session_id}/transcript.json",
                             [s.model_dump(mode="json") for s in ready.segments])
    return ready.model_copy(update={"segments": None, "segments_ref": uri})
