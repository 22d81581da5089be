"""Turns audio.uploaded into a transcription run and transcript.ready / transcript.failed
(the shared audio-stage flow in shared.stage: dedupe, off-loop inference, outbox, DLQ).
``transcribe_upload`` is the stage's work; ``build_stage`` wires it into the flow."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from shared.audio import SAMPLE_RATE
from shared.contracts.events import AudioUploaded, Engine, Stage, TranscriptFailed, TranscriptReady
from shared.jobs import ProgressFn
from shared.runtime import ServiceRuntime
from shared.stage import StageDeps, audio_loader, pending_timing
from services.transcriber.transcription import WhisperTranscriber


@dataclass
class TranscriptionDeps:
    run_blocking: Callable[..., Awaitable[Any]]  # blocking work goes to the worker pool
    load_audio: Callable[[str], Any]  # blocking: uri -> decoded mono samples
    transcribe: Callable[..., Any]  # blocking: (audio, language, progress) -> TranscriptionResult
    store_segments: Callable[[str, list], str]  # blocking: (key, segments as JSON) -> blob uri
    device: str
    inline_max_bytes: int  # a bigger transcript goes to the blob store, referenced by segments_ref


async def transcribe_upload(event: AudioUploaded, progress: ProgressFn,
                            deps: TranscriptionDeps) -> tuple[TranscriptReady, float]:
    audio = await deps.run_blocking(deps.load_audio, event.audio.uri)
    result = await deps.run_blocking(deps.transcribe, audio, event.options.language, progress)
    ready = TranscriptReady(
        session_id=event.session_id, language=result.language, duration_s=round(result.duration_s, 3),
        segments=result.segments,
        engine=Engine(backend="faster-whisper", model=result.model_name, device=deps.device),
        timing=pending_timing(), notes_backend=event.options.notes_backend,
    )
    if len(ready.model_dump_json()) > deps.inline_max_bytes:
        ready.segments_ref = await deps.run_blocking(
            deps.store_segments, f"sessions/{event.session_id}/transcript.json",
            [s.model_dump(mode="json") for s in result.segments])
        ready.segments = None
    return ready, len(audio) / SAMPLE_RATE


def build_stage(runtime: ServiceRuntime, transcriber: WhisperTranscriber) -> StageDeps:
    deps = TranscriptionDeps(
        run_blocking=runtime.run_blocking,
        load_audio=audio_loader(runtime.blobs),
        transcribe=transcriber.transcribe, store_segments=runtime.blobs.put_json,
        device=transcriber.config.device, inline_max_bytes=runtime.settings.inline_payload_max_bytes,
    )
    return StageDeps.on_runtime(runtime, Stage.transcription, TranscriptFailed, partial(transcribe_upload, deps=deps))

