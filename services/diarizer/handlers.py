"""Turns audio.uploaded into a diarization run and diarization.ready / diarization.failed.
Diarization failure is recoverable: the joiner merges without speakers."""

from __future__ import annotations

from shared.audio import SAMPLE_RATE, decode_audio
from shared.contracts.events import AudioUploaded, DiarizationFailed, DiarizationReady, Engine, Stage
from shared.jobs import ProgressFn
from shared.resilience import PermanentError, TransientError
from shared.runtime import ServiceRuntime
from shared.stage import AudioStageWorker, pending_timing
from services.diarizer.diarization import DiarizationError


class DiarizationHandler(AudioStageWorker):
    stage = Stage.diarization
    failed_event = DiarizationFailed

    def __init__(self, runtime: ServiceRuntime, diarizer, engine: Engine, unavailable_reason: str | None = None) -> None:
        super().__init__(runtime)
        self.diarizer = diarizer
        self.engine = engine
        self.unavailable_reason = unavailable_reason

    async def process(self, event: AudioUploaded, progress: ProgressFn) -> tuple[DiarizationReady, float]:
        if self.unavailable_reason:
            # The configured backend could not load: say exactly why, once per session.
            raise PermanentError("backend_unavailable", self.unavailable_reason)
        rt = self.runtime
        audio = await rt.run_blocking(rt.blobs.with_local_copy, event.audio.uri, decode_audio)
        options = event.options
        try:
            result = await rt.run_blocking(
                self.diarizer.diarize, audio, options.num_speakers, options.min_speakers, options.max_speakers, progress
            )
        except DiarizationError as exc:
            raise PermanentError("diarization_error", f"Speaker identification failed: {exc}") from exc
        except (MemoryError, OSError) as exc:
            raise TransientError("diarization_resources", "Speaker identification ran out of resources") from exc
        ready = DiarizationReady(
            session_id=event.session_id, turns=result.turns, speaker_count=result.speaker_count,
            engine=self.engine, timing=pending_timing(),
        )
        return ready, len(audio) / SAMPLE_RATE
