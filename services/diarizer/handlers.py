"""Turns audio.uploaded into a diarization run and diarization.ready / diarization.failed
(the shared audio-stage flow in shared.stage). Diarization failure is recoverable: the
joiner merges without speakers. ``diarize_upload`` is the stage's work; ``build_stage``
wires it into the flow. When the session's owner has enrolled their voice, the speaker
matching it is named in diarization.ready (``therapist_match``); ``enrol_pending`` turns
pending voice samples into embeddings with the same model (ADR 0010)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any
from uuid import UUID

from shared.audio import SAMPLE_RATE
from shared.contracts.events import AudioUploaded, DiarizationFailed, DiarizationReady, Engine, Stage
from shared.jobs import ProgressFn
from shared.resilience import PermanentError, TransientError
from shared.runtime import ServiceRuntime
from shared.stage import StageDeps, audio_loader, pending_timing
from shared.logging import get_logger
from services.diarizer.diarization import DiarizationError
from services.diarizer.voices import Enrolment, MatchConfig, match_enrolled

log = get_logger(__name__)


@dataclass
class DiarizationDeps:
    run_blocking: Callable[..., Awaitable[Any]]  # blocking work goes to the worker pool
    load_audio: Callable[[str], Any]  # blocking: uri -> decoded mono samples
    diarize: Callable[..., Any] | None  # blocking: (audio, num, min, max, progress) -> result
    engine: Engine
    unavailable_reason: str | None = None  # the configured backend could not load: why, and the remedy
    enrolment: Callable[[UUID], Awaitable[Enrolment | None]] | None = None  # owner id -> enrolled voice
    match_config: MatchConfig = MatchConfig()


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
        engine=deps.engine, timing=pending_timing(), therapist_match=await _therapist_match(event, result, deps),
    )
    return ready, len(audio) / SAMPLE_RATE


async def _therapist_match(event: AudioUploaded, result, deps: DiarizationDeps):
    """The speaker matching the owner's enrolled voice (None: no enrolment, no centroids,
    no speaker similar enough). Backends without centroids (pyannote) never match."""
    centroids = getattr(result, "centroids", None)
    if deps.enrolment is None or not centroids:
        return None
    match = match_enrolled(centroids, await deps.enrolment(event.owner_id), deps.match_config)
    log.info("enrolled_voice_checked", matched=match is not None,
             similarity=None if match is None else match.similarity)
    return match


# --- voice enrolment -----------------------------------------------------------------------
@dataclass
class EnrolmentDeps:
    store: Any  # services.diarizer.voice_store.VoiceStore (pending, finish) or a fake
    run_blocking: Callable[..., Awaitable[Any]]
    embed: Callable[[Any], Any] | None  # blocking: samples -> unit embedding; None: backend has none
    model: str | None


NO_EMBEDDING_MODEL = "voice enrolment needs the builtin diarizer (TB_DIARIZER_BACKEND=builtin)"


async def enrol_pending(deps: EnrolmentDeps) -> int:
    """Embed every pending voice sample; returns how many enrolments were stored."""
    done = 0
    for sample in await deps.store.pending():
        if deps.embed is None:
            await deps.store.finish(sample, None, None, error=NO_EMBEDDING_MODEL)
            continue
        try:
            embedding = await deps.run_blocking(deps.embed, sample.audio())
        except DiarizationError as exc:
            await deps.store.finish(sample, None, deps.model, error=f"the sample could not be used: {exc}")
            log.warning("voice_enrolment_failed", code="no_speech")
            continue
        if await deps.store.finish(sample, embedding, deps.model):
            done += 1
            log.info("voice_enrolled")
    return done


def build_stage(runtime: ServiceRuntime, diarizer, engine: Engine, unavailable_reason: str | None,
                voices=None) -> StageDeps:
    settings = runtime.settings
    deps = DiarizationDeps(
        run_blocking=runtime.run_blocking, load_audio=audio_loader(runtime.blobs),
        diarize=diarizer.diarize if diarizer is not None else None, engine=engine,
        unavailable_reason=unavailable_reason, enrolment=voices.enrolment if voices is not None else None,
        match_config=MatchConfig(threshold=settings.voice_match_threshold),
    )
    return StageDeps.on_runtime(runtime, Stage.diarization, DiarizationFailed, partial(diarize_upload, deps=deps))
