"""Turns audio.uploaded into a transcription run and transcript.ready / transcript.failed
(the shared audio-stage flow in shared.stage: dedupe, off-loop inference, outbox, DLQ).
``transcribe_upload`` is the stage's work; ``build_stage`` wires it into the flow. A
recording longer than one piece is fanned out over the replicas (services.transcriber.fanout)
or, with fan-out off, transcribed here in windows."""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from shared.audio import energy_profile, read_spans
from shared.contracts.events import AudioUploaded, Engine, Stage, TranscriptFailed, TranscriptReady
from shared.jobs import ProgressFn
from shared.runtime import ServiceRuntime
from shared.stage import StageDeps, pending_timing
from services.transcriber.chunking import ChunkPolicy
from services.transcriber.fanout import FanoutDeps, fan_out, spill_segments
from services.transcriber.fanout_store import FanoutStore
from services.transcriber.transcription import WhisperTranscriber


@dataclass
class TranscriptionDeps:
    run_blocking: Callable[..., Awaitable[Any]]  # blocking work goes to the worker pool
    # blocking: (uri, language, progress) -> TranscriptionResult; a long recording is decoded
    # and transcribed in windows (services.transcriber.chunking), a short one in one piece
    transcribe_file: Callable[..., Any]
    store_segments: Callable[[str, list], str]  # blocking: (key, segments as JSON) -> blob uri
    device: str
    inline_max_bytes: int  # a bigger transcript goes to the blob store, referenced by segments_ref
    fanout: FanoutDeps | None = None  # set: long recordings fan out over the replicas
    policy: ChunkPolicy = ChunkPolicy()


async def transcribe_upload(event: AudioUploaded, progress: ProgressFn,
                            deps: TranscriptionDeps) -> tuple[TranscriptReady | None, float]:
    """(transcript.ready, audio seconds); (None, audio seconds) when the recording was fanned
    out: the replica finishing its last chunk emits transcript.ready."""
    if deps.fanout is not None and not deps.policy.one_piece(event.audio.duration_s):
        await fan_out(event, progress, deps.fanout)
        return None, event.audio.duration_s
    result = await deps.run_blocking(deps.transcribe_file, event.audio.uri, event.options.language, progress)
    ready = TranscriptReady(
        session_id=event.session_id, language=result.language, duration_s=round(result.duration_s, 3),
        segments=result.segments,
        engine=Engine(backend="faster-whisper", model=result.model_name, device=deps.device),
        timing=pending_timing(),
        language_probability=getattr(result, "language_probability", None),
        requested_language=event.options.language, notes_backend=event.options.notes_backend,
    )
    return await spill_segments(ready, deps.inline_max_bytes, deps.run_blocking, deps.store_segments), \
        result.duration_s


def chunk_policy(settings) -> ChunkPolicy:
    return ChunkPolicy(min_s=settings.transcribe_chunk_min_s, max_s=settings.transcribe_chunk_max_s,
                       overlap_s=settings.transcribe_chunk_overlap_s,
                       one_piece_max_s=settings.transcribe_one_piece_max_s)


def file_transcriber(blobs, transcriber: WhisperTranscriber, policy: ChunkPolicy) -> Callable[..., Any]:
    """Blocking: (uri, language, progress) -> TranscriptionResult, through a local copy."""
    def run(uri: str, language: str | None, progress) -> Any:
        return blobs.with_local_copy(uri, transcriber.transcribe_file, policy, language, progress)
    return run


def splitter(blobs, policy: ChunkPolicy) -> Callable[..., Any]:
    """Blocking: (uri, session) -> (chunks, their audio's blob uris): one pass for the level
    profile, one for the chunks' samples (16-bit PCM, sealed with the session's key)."""
    def split_file(path, session_id) -> tuple[list, list[str]]:
        chunks = policy.plan(energy_profile(path, policy.hop_s))
        uris = []
        for chunk, pcm in zip(chunks, read_spans(path, [c.span for c in chunks])):
            data = np.clip(np.round(pcm * 32768.0), -32768, 32767).astype("<i2").tobytes()
            uris.append(blobs.put_bytes(f"sessions/{session_id}/chunks/{chunk.index:04d}.pcm", data))
        return chunks, uris
    return lambda uri, session_id: blobs.with_local_copy(uri, split_file, session_id)


def chunk_transcriber(blobs, transcriber: WhisperTranscriber) -> Callable[..., Any]:
    """Blocking: (chunk audio uri, language) -> TranscriptionResult (chunk-local times)."""
    def run(uri: str, language: str | None) -> Any:
        pcm = np.frombuffer(blobs.get_bytes(uri), dtype="<i2").astype(np.float32) / 32768.0
        return transcriber.transcribe(pcm, language)
    return run


def build_fanout(runtime: ServiceRuntime, transcriber: WhisperTranscriber, stage: StageDeps) -> FanoutDeps:
    settings, policy = runtime.settings, chunk_policy(runtime.settings)
    return FanoutDeps(
        run_blocking=runtime.run_blocking, split=splitter(runtime.blobs, policy),
        transcribe_chunk=chunk_transcriber(runtime.blobs, transcriber), put_json=runtime.blobs.put_json,
        get_json=runtime.blobs.get_json, delete_blob=runtime.blobs.delete, store=FanoutStore(runtime.session_factory, runtime.name),
        progress=stage.progress, dead_letter=stage.dead_letter, wake=runtime.relay.wake,
        worker=f"{socket.gethostname()}:{os.getpid()}",
        engine=Engine(backend="faster-whisper", model=transcriber.model_name, device=transcriber.config.device),
        inline_max_bytes=settings.inline_payload_max_bytes, lock=stage.lock, retry_attempts=settings.dlq_max_attempts,
    )


def build_stage(runtime: ServiceRuntime, transcriber: WhisperTranscriber) -> tuple[StageDeps, FanoutDeps]:
    policy = chunk_policy(runtime.settings)
    deps = TranscriptionDeps(
        run_blocking=runtime.run_blocking,
        transcribe_file=file_transcriber(runtime.blobs, transcriber, policy),
        store_segments=runtime.blobs.put_json,
        device=transcriber.config.device, inline_max_bytes=runtime.settings.inline_payload_max_bytes, policy=policy,
    )
    stage = StageDeps.on_runtime(runtime, Stage.transcription, TranscriptFailed, partial(transcribe_upload, deps=deps))
    fanout = build_fanout(runtime, transcriber, stage)
    if runtime.settings.transcribe_fanout:
        deps.fanout = fanout
    return stage, fanout
