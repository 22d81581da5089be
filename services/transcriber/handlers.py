"""Turns audio.uploaded into a transcription run and transcript.ready / transcript.failed
(the shared audio-stage flow: dedupe, off-loop inference, outbox, DLQ)."""

from __future__ import annotations

from shared.audio import SAMPLE_RATE, decode_audio
from shared.contracts.events import AudioUploaded, Engine, Stage, TranscriptFailed, TranscriptReady
from shared.jobs import ProgressFn
from shared.runtime import ServiceRuntime
from shared.stage import AudioStageWorker, pending_timing
from services.transcriber.transcription import WhisperTranscriber

class TranscriptionHandler(AudioStageWorker):
    stage = Stage.transcription
    failed_event = TranscriptFailed

    def __init__(self, runtime: ServiceRuntime, transcriber: WhisperTranscriber) -> None:
        super().__init__(runtime)
        self.transcriber = transcriber

    async def process(self, event: AudioUploaded, progress: ProgressFn) -> tuple[TranscriptReady, float]:
        rt = self.runtime
        audio = await rt.run_blocking(rt.blobs.with_local_copy, event.audio.uri, decode_audio)
        result = await rt.run_blocking(self.transcriber.transcribe, audio, event.options.language, progress)
        audio_s = len(audio) / SAMPLE_RATE
        ready = TranscriptReady(
            session_id=event.session_id, language=result.language, duration_s=round(result.duration_s, 3),
            segments=result.segments,
            engine=Engine(backend="faster-whisper", model=result.model_name, device=self.transcriber.config.device),
            timing=pending_timing(),
        )
        if len(ready.model_dump_json()) > rt.settings.inline_payload_max_bytes:
            ready.segments_ref = await rt.run_blocking(
                rt.blobs.put_json, f"sessions/{event.session_id}/transcript.json",
                [s.model_dump(mode="json") for s in result.segments])
            ready.segments = None
        return ready, audio_s
