"""Transcriber entry point: wires settings, broker, DB and the model, then runs."""

from __future__ import annotations

from functools import partial

from shared.contracts.events import Topic
from shared.runtime import ServiceRuntime, run_service
from shared.settings import Settings
from shared.topology import TRANSCRIBER
from shared.stage import on_audio_uploaded, on_session_deleted
from services.transcriber.fanout import on_transcript_chunk
from services.transcriber.fanout_store import forget_transcription
from services.transcriber.handlers import build_stage
from services.transcriber.transcription import WhisperConfig, WhisperTranscriber


def build(settings: Settings) -> ServiceRuntime:
    runtime = ServiceRuntime.create(settings, "transcriber")
    transcriber = WhisperTranscriber(
        WhisperConfig(
            model=settings.whisper_model,
            device=settings.whisper_device,
            compute_type=settings.whisper_compute_type,
            threads=settings.whisper_threads,
            beam_size=settings.whisper_beam_size,
            vad_filter=settings.whisper_vad_filter,
        )
    )
    transcriber.load()  # once per process, before consuming
    deps, fanout = build_stage(runtime, transcriber)
    deps.forget = partial(forget_transcription, runtime)
    runtime.consume(TRANSCRIBER,
        {Topic.AUDIO_UPLOADED: partial(on_audio_uploaded, deps=deps),
         Topic.TRANSCRIPT_CHUNK: partial(on_transcript_chunk, deps=fanout),
         Topic.SESSION_DELETED: partial(on_session_deleted, deps=deps)},
    )
    return runtime


if __name__ == "__main__":
    run_service(build)
