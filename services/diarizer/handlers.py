"""Turns audio.uploaded into a diarization run and diarization.ready / diarization.failed
(the shared audio-stage flow in shared.stage). Diarization failure is recoverable: the
joiner merges without speakers. ``diarize_upload`` is the stage's work; ``build_stage``
wires it into the flow."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from shared.audio import SAMPLE_RATE
from shared.contracts.events import AudioUploaded, DiarizationFailed, DiarizationReady, Engine, Stage
from shared.jobs import ProgressFn
from shared.resilience import PermanentError, TransientError
from shared.runtime import ServiceRuntime
from shared.stage import StageDeps, audio_loader, pending_timing
from services.diarizer.diarization import DiarizationError


@dataclass
class DiarizationDeps:
    run_blocking: Callable[..., Awaitable[Any]]  # blocking work goes to the worker pool
    load_audio: Callable[[str], Any]  # blocking: uri -> decoded mono samples
    diarize: Callable[..., Any] | None  # blocking: (audio, num, min, max, progress) -> result
    engine: Engine
    unavailable_reason: str | None = None  # the configured backend could not load: why, and the remedy


async def diarize_upload(event: AudioUploaded, progress: ProgressFn,
                         deps: DiarizationDeps) -> tuple[DiarizationReady, float]:
    if deps.unavailable_reason:
        # The configured backend could not load: say exactly why, once per session.
        raise PermanentError("backend_unavailable", deps.unavailable_reason)
    audio = await deps.run_blocking(deps.load_audio, event.audio.uri)
    options = event.options
    try:
        result = await deps.run_blocking(
            deps.diarize, audio, options.num_speakers, options.min_speakers, options.max_speakers, progress
        )
    except DiarizationError as exc:
        raise PermanentError("diarization_error", f"Speaker identification failed: {exc}") from exc
    except (MemoryError, OSError) as exc:
        raise TransientError("diarization_resources", "Speaker identification ran out of resources") from exc
    ready = DiarizationReady(
        session_id=event.session_id, turns=result.turns, speaker_count=result.speaker_count,
        engine=deps.engine, timing=pending_timing(),
    )
    return ready, len(audio) / SAMPLE_RATE


def build_stage(runtime: ServiceRuntime, diarizer, engine: Engine, unavailable_reason: str | None) -> StageDeps:
    deps = DiarizationDeps(
        run_blocking=runtime.run_blocking, load_audio=audio_loader(runtime.blobs),
        diarize=diarizer.diarize if diarizer is not None else None, engine=engine,
        unavailable_reason=unavailable_reason,
    )
    return StageDeps.on_runtime(runtime, Stage.diarization, DiarizationFailed, partial(diarize_upload, deps=deps))
