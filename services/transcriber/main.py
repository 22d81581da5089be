"""Transcriber entry point: wires settings, broker, DB and the model, then runs."""

from __future__ import annotations

from shared.contracts.events import Topic
from shared.runtime import ServiceRuntime, run_service
from shared.settings import Settings
from shared.topology import TRANSCRIBER
from services.transcriber.handlers import TranscriptionHandler
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
    handler = TranscriptionHandler(runtime, transcriber)
    runtime.consume(TRANSCRIBER,
                    {Topic.AUDIO_UPLOADED: handler.on_audio_uploaded, Topic.SESSION_DELETED: handler.on_session_deleted})
    return runtime


if __name__ == "__main__":
    run_service(build)
