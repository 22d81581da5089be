"""Quality of the built-in diarizer, measured with pyannote.metrics DER (collar 0.25 s,
overlap scored), on public reference excerpts and on generated espeak-ng dialogues.

Each test prints what it measured. The AMI bound is the one achieved (see the test).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # tests/ is not a package: make tests.audio_gen importable
    sys.path.insert(0, str(ROOT))

from pyannote.core import Annotation, Segment, Timeline  # noqa: E402
from pyannote.metrics.diarization import DiarizationErrorRate  # noqa: E402

from services.diarizer.diarization import BuiltinDiarizer, DiarizerConfig  # noqa: E402
from services.gateway.rttm import parse_rttm  # noqa: E402
from tests.audio_gen import generate_dialogue, long_session, read_wav  # noqa: E402

DATA = ROOT / "tests" / "data"
SR = 16_000


def _annotation(turns) -> Annotation:
    ann = Annotation()
    for t in turns:
        start, end, spk = (t.start, t.end, t.speaker) if hasattr(t, "speaker") else t
        ann[Segment(start, end)] = spk
    return ann


def der(reference, hypothesis, uem: Timeline | None = None) -> float:
    metric = DiarizationErrorRate(collar=0.25, skip_overlap=False)
    return float(metric(_annotation(reference), _annotation(hypothesis), uem=uem))


@pytest.fixture(scope="module")
def diarizer() -> BuiltinDiarizer:
    d = BuiltinDiarizer(DiarizerConfig())
    d.load()
    return d


@pytest.fixture(scope="module")
def audio_cache(tmp_path_factory) -> Path | None:
    # The shared cache (/tmp/tb-audio-cache) makes reruns fast; generation is deterministic.
    return None


def _run(diarizer, audio, **kw):
    t0 = time.perf_counter()
    result = diarizer.diarize(audio, **kw)
    return result, time.perf_counter() - t0


def test_pyannote_sample(diarizer):
    audio = read_wav(DATA / "pyannote_sample.wav")
    ref = parse_rttm((DATA / "pyannote_sample.rttm").read_text())["sample"]
    result, dt = _run(diarizer, audio)
    value = der(ref, result.turns)
    print(f"\n[pyannote_sample] DER={value:.3f} speakers={result.speaker_count} time={dt:.1f}s {result.stats}")
    # A real two-person recording, never tuned on. Told there are two (the upload's
    # num_speakers), the answer must be as good: the segmentation settings of ADR 0011 pass 4
    # found 3 here and, told 2, merged the two people (DER 0.43), which kept them off until
    # speaker-change cuts (pass 6): measured 0.032 free and 0.082 told 2, both 2 speakers
    # (the silero settings: 0.109 and 0.119).
    assert result.speaker_count == 2
    assert value <= 0.10
    hinted, _ = _run(diarizer, audio, num_speakers=2)
    hinted_der = der(ref, hinted.turns)
    print(f"[pyannote_sample num_speakers=2] DER={hinted_der:.3f} speakers={hinted.speaker_count}")
    assert hinted.speaker_count == 2
    assert hinted_der <= 0.10


def test_num_speakers_hint_is_honoured(diarizer):
    audio = read_wav(DATA / "pyannote_sample.wav")
    result, _ = _run(diarizer, audio, num_speakers=3)
    print(f"\n[pyannote_sample num_speakers=3] speakers={result.speaker_count}")
    assert result.speaker_count == 3
    assert {t.speaker for t in result.turns} == {"SPEAKER_00", "SPEAKER_01", "SPEAKER_02"}
    bounded, _ = _run(diarizer, audio, min_speakers=1, max_speakers=1)
    assert bounded.speaker_count == 1


def test_single_speaker_jfk(diarizer):
    import av

    with av.open(str(DATA / "jfk.flac")) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SR)
        chunks = []
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    audio = np.concatenate(chunks).astype(np.float32)
    result, _ = _run(diarizer, audio)
    print(f"\n[jfk] speakers={result.speaker_count} {result.stats}")
    assert result.speaker_count == 1


def der_detail(reference, hypothesis, uem: Timeline | None = None) -> dict:
    metric = DiarizationErrorRate(collar=0.25, skip_overlap=False)
    comp = metric(_annotation(reference), _annotation(hypothesis), uem=uem, detailed=True)
    total = comp["total"] or 1.0
    return {"der": float(comp["diarization error rate"]), "false_alarm": comp["false alarm"] / total,
            "missed": comp["missed detection"] / total, "confusion": comp["confusion"] / total}


# (minutes, speakers, seed) as in bench/diarization_quality.py. False alarm before turns were
# trimmed to voice activity was 0.046-0.057 on these sessions (issue 17): it must be at
# least halved, and DER must stay within the 0.03 with the exact speaker count.
# With the energy gate on turn edges (ADR 0011 pass 8) it is 0.000-0.002 (silero trimming
# alone: 0.005-0.008); 0.004 keeps a margin and fails if the gate stops acting.
GENERATED_SESSIONS = {"2spk_1.5min": (1.5, 2, 0), "2spk_3min": (3, 2, 0), "3spk_3min": (3, 3, 2), "2spk_10min": (10, 2, 1)}
FALSE_ALARM_BEFORE_TRIMMING = 0.046
FALSE_ALARM_WITH_GATE = 0.004


@pytest.mark.parametrize("name", list(GENERATED_SESSIONS))
def test_generated_sessions(diarizer, name):
    minutes, n_speakers, seed = GENERATED_SESSIONS[name]
    gen = generate_dialogue(long_session(minutes, n_speakers, seed=seed), seed=seed)
    result, dt = _run(diarizer, gen.load_audio())
    d = der_detail(gen.turns, result.turns)
    print(f"\n[generated {name}, {gen.duration_s:.0f}s] DER={d['der']:.4f} FA={d['false_alarm']:.4f} "
          f"miss={d['missed']:.4f} conf={d['confusion']:.4f} speakers={result.speaker_count} rtf={dt / gen.duration_s:.3f}")
    assert result.speaker_count == n_speakers
    assert d["der"] <= 0.03
    assert d["false_alarm"] <= min(FALSE_ALARM_BEFORE_TRIMMING / 2, FALSE_ALARM_WITH_GATE)


def test_ami_excerpts(diarizer):
    """AMI far-field meeting excerpts (30 s each, 2 speakers in each excerpt): HELD OUT.

    The settings were chosen by cross-validation on tests/data/ami_train only (issue 17);
    these two files were never used to choose anything. Measured with the shipped
    defaults (bench/results/diarization_quality.json, ADR 0011 pass 6): dev00 0.355 (3
    speakers found), dev01 0.238 (4 found), mean 0.297, within the issue's 0.30 goal (the
    previous silero defaults: 0.358). The assertion is 0.32.
    """
    refs = parse_rttm((DATA / "ami_dev.rttm").read_text())
    uem = {}
    for line in (DATA / "ami_dev.uem").read_text().splitlines():
        uri, _, start, end = line.split()
        uem[uri] = Timeline([Segment(float(start), float(end))])
    values = []
    for uri in ("dev00", "dev01"):
        audio = read_wav(DATA / f"ami_{uri}.wav")
        result, _ = _run(diarizer, audio)
        value = der(refs[uri], result.turns, uem[uri])
        values.append(value)
        print(f"\n[AMI {uri}] DER={value:.3f} speakers={result.speaker_count} (reference 2)")
    mean = float(np.mean(values))
    print(f"[AMI] mean DER={mean:.3f}")
    assert mean <= 0.32
