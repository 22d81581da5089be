"""Bounded audio inputs (issue 11, item 3): the duration limit is enforced from the
container's metadata, and otherwise by a streaming decode that stops at the cap, never by
decoding everything first. The bomb: a FLAC well under 1 MB holding over 4 hours of
silence (the issue measured 10.6 s and 2.5 GB of gateway memory before the 413).

Memory is measured in a fresh process (peak RSS from /proc, and tracemalloc), so
nothing else this test run did can hide or fake the growth. No timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from shared.audio import AudioDecodeError, probe_audio

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
LIMIT_S = 4 * 3600  # the default TB_UPLOAD_MAX_DURATION_S
BOMB_S = LIMIT_S + 300
MAX_GROWTH = 100 * 1024 * 1024


def write_silent_flac(path: Path, seconds: int, rate: int = 16000) -> Path:
    """Silence compresses to almost nothing in FLAC: big blocks of constant subframes."""
    with av.open(str(path), "w", format="flac") as container:
        stream = container.add_stream("flac", rate=rate, layout="mono", options={"frame_size": "16384"})
        stream.format = "s16"
        block = np.zeros((1, rate * 60), dtype=np.int16)
        for start in range(0, seconds * rate, block.shape[1]):
            frame = av.AudioFrame.from_ndarray(block[:, : min(block.shape[1], seconds * rate - start)],
                                               format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def hide_total_samples(flac: Path, out: Path) -> Path:
    """The same stream with STREAMINFO's total-samples field zeroed (legal: "unknown"),
    so the container declares no duration and only decoding can tell the length."""
    data = bytearray(flac.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO comes first
    data[21] &= 0xF0  # the 36-bit total: low 4 bits of byte 21, then bytes 22..25
    data[22:26] = b"\0\0\0\0"
    out.write_bytes(bytes(data))
    return out


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    path = write_silent_flac(tmp_path_factory.mktemp("bomb") / "four_hours.flac", BOMB_S)
    assert path.stat().st_size < 1_000_000
    with av.open(str(path)) as container:
        assert container.duration / 1e6 == pytest.approx(BOMB_S)
    return path


_MEASURE = """
import json, sys, tracemalloc
from shared.audio import AudioDecodeError, probe_audio

def peak_rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

probe_audio(sys.argv[3])  # warm-up: codecs and lazy imports are not the probe's growth
before = peak_rss()
tracemalloc.start()
try:
    probe_audio(sys.argv[1], max_duration_s=float(sys.argv[2]))
    result = {"code": None}
except AudioDecodeError as exc:
    result = {"code": exc.code, "reason": exc.reason}
result.update(traced_peak=tracemalloc.get_traced_memory()[1], rss_growth=peak_rss() - before)
print(json.dumps(result))
"""


def probe_in_fresh_process(path: Path, max_duration_s: float) -> dict:
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(path), str(max_duration_s), str(DATA / "jfk.flac")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_bomb_is_rejected_from_its_metadata_without_decoding(bomb):
    result = probe_in_fresh_process(bomb, LIMIT_S)
    assert result["code"] == "too_long"
    # The exact length comes from the header: nothing was decoded to find it.
    assert result["reason"] == f"the recording is {BOMB_S} s long; the limit is {LIMIT_S} s"
    assert result["rss_growth"] < MAX_GROWTH, result
    assert result["traced_peak"] < MAX_GROWTH, result


def test_bomb_hiding_its_length_is_stopped_at_the_cap(bomb, tmp_path):
    hidden = hide_total_samples(bomb, tmp_path / "no_length.flac")
    with av.open(str(hidden)) as container:
        assert not container.duration
    cap_s = 3600  # any cap: the decode keeps no samples, so memory does not grow with it
    result = probe_in_fresh_process(hidden, cap_s)
    assert result["code"] == "too_long"
    assert result["reason"] == f"the recording is more than {cap_s} s long; the limit is {cap_s} s"
    assert result["rss_growth"] < MAX_GROWTH, result
    assert result["traced_peak"] < MAX_GROWTH, result


def test_a_short_recording_still_probes(tmp_path):
    probe = probe_audio(DATA / "jfk.flac", max_duration_s=60)
    assert probe.duration_s == pytest.approx(11.0, abs=0.05) and probe.codec == "flac"
    with pytest.raises(AudioDecodeError) as caught:
        probe_audio(DATA / "jfk.flac", max_duration_s=5)
    assert caught.value.code == "too_long"


def test_size_limit_and_truncated_wav(tmp_path):
    wav = (DATA / "pyannote_sample.wav").read_bytes()
    with pytest.raises(AudioDecodeError) as caught:
        probe_audio(DATA / "pyannote_sample.wav", max_bytes=len(wav) - 1)
    assert caught.value.code == "too_large"
    half = tmp_path / "half.wav"
    half.write_bytes(wav[: len(wav) // 2])
    with pytest.raises(AudioDecodeError) as caught:
        probe_audio(half)
    assert caught.value.code == "truncated_audio" and "declares" in caught.value.reason
