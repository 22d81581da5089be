"""The one audio-decoding helper every stage uses: any container/codec PyAV (FFmpeg)
reads -> 16 kHz mono float32. Decoding is blocking: call it from a worker thread.

Measured on this stack: garbage/empty/text files fail at open; video-only files have no
audio stream; truncated files decode silently to shorter audio while the header still
claims the full length, so we trust the decoded length and compare it to the header.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

SAMPLE_RATE = 16000
# Lossy formats may estimate their header duration from the bitrate, so allow slack.
_EXACT_HEADER_FORMATS = {"wav", "flac"}


class AudioDecodeError(Exception):
    """The file is not decodable audio. ``reason`` is safe to show to a user."""

    def __init__(self, reason: str, code: str = "undecodable_audio") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True)
class AudioProbe:
    duration_s: float
    header_duration_s: float | None
    codec: str
    format_name: str
    sample_rate: int
    channels: int


def _open(path: Path):
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise AudioDecodeError("not a recognisable audio file") from exc


def _decode(container, sample_rate: int) -> tuple[np.ndarray, object]:
    if not container.streams.audio:
        raise AudioDecodeError("the file has no audio stream", code="no_audio_stream")
    stream = container.streams.audio[0]
    stream.thread_type = "AUTO"
    resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
    chunks: list[np.ndarray] = []
    try:
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    except (av.error.FFmpegError, ValueError) as exc:
        if not chunks:
            raise AudioDecodeError("the audio data is corrupt") from exc
        # Corruption after some good audio: keep what decoded; the probe decides.
    if not chunks:
        return np.zeros(0, dtype=np.float32), stream
    pcm = np.concatenate(chunks).astype(np.float32) / 32768.0
    return pcm, stream


def decode_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode to mono float32 in [-1, 1] at ``sample_rate``."""
    with _open(Path(path)) as container:
        pcm, _ = _decode(container, sample_rate)
    if pcm.size == 0:
        raise AudioDecodeError("the file contains no audio samples", code="empty_audio")
    return pcm


def _wav_declared_bytes(path: Path) -> int | None:
    """The RIFF size a WAV header declares, or None when unknown (streamed WAVs write 0
    or 0xFFFFFFFF). FFmpeg derives a truncated WAV's duration from the file size, so the
    header must be read directly to notice the truncation."""
    with open(path, "rb") as fh:
        head = fh.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    declared = int.from_bytes(head[4:8], "little")
    if declared in (0, 0xFFFFFFFF):
        return None
    return declared + 8


def probe_audio(path: str | Path, max_duration_s: float | None = None) -> AudioProbe:
    """Fully decode once to prove the file is usable; reject empty, truncated or too-long audio."""
    with _open(Path(path)) as container:
        pcm, stream = _decode(container, SAMPLE_RATE)
        header = None
        if container.duration:
            header = container.duration / 1_000_000
        elif stream.duration and stream.time_base:
            header = float(stream.duration * stream.time_base)
        fmt = (container.format.name or "").split(",")[0]
        codec = stream.codec_context.name if stream.codec_context else "unknown"
        rate = stream.rate or 0
        channels = stream.channels if hasattr(stream, "channels") else 0
    duration = pcm.size / SAMPLE_RATE
    declared = _wav_declared_bytes(Path(path))
    actual = Path(path).stat().st_size
    if declared is not None and actual < declared * 0.98:
        raise AudioDecodeError(
            f"the file looks truncated: its header declares {declared} bytes but it has {actual}",
            code="truncated_audio",
        )
    if duration <= 0.05:
        raise AudioDecodeError("the file contains no audio samples", code="empty_audio")
    if header:
        exact = fmt in _EXACT_HEADER_FORMATS or codec.startswith("pcm_") or codec == "flac"
        ratio = 0.9 if exact else 0.5
        if duration < header * ratio - 0.5:
            raise AudioDecodeError(
                f"the file looks truncated: its header says {header:.1f} s but only {duration:.1f} s decode",
                code="truncated_audio",
            )
    if max_duration_s is not None and duration > max_duration_s:
        raise AudioDecodeError(
            f"the recording is {duration:.0f} s long; the limit is {max_duration_s:.0f} s", code="too_long"
        )
    return AudioProbe(duration, header, codec, fmt, int(rate), int(channels or 0))
