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
_RESERVE_AT_MOST_S = 4 * 3600


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


def _audio_stream(container):
    if not container.streams.audio:
        raise AudioDecodeError("the file has no audio stream", code="no_audio_stream")
    return container.streams.audio[0]


def _too_long(duration_s: float, max_duration_s: float, more: bool = False) -> AudioDecodeError:
    length = f"more than {max_duration_s:.0f}" if more else f"{duration_s:.0f}"
    return AudioDecodeError(f"the recording is {length} s long; the limit is {max_duration_s:.0f} s", code="too_long")


def _frames(container, stream, max_duration_s: float | None):
    """Decoded frames one at a time, stopping with ``too_long`` as soon as the decoded
    length passes the cap: memory stays one frame, time stays bounded by the cap."""
    decoded_s = 0.0
    for frame in container.decode(stream):
        decoded_s += frame.samples / (frame.sample_rate or SAMPLE_RATE)
        if max_duration_s is not None and decoded_s > max_duration_s:
            raise _too_long(decoded_s, max_duration_s, more=True)
        yield frame


def _expected_samples(container, stream, sample_rate: int) -> int:
    """What the header says the decoded length will be (0 when it does not say)."""
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        seconds = container.duration / av.time_base
    else:
        return 0
    return max(0, int(seconds * sample_rate))


def _decode(container, sample_rate: int, max_duration_s: float | None = None) -> tuple[np.ndarray, object]:
    """Blocks written into one buffer sized from the header (plus 1 s), so a 2-hour file
    peaks at one copy of its samples, not two (a list of blocks and their concatenation:
    0.9 GB instead of 0.46 GB at 16 kHz). A header that under-states the length grows the
    buffer by half each time it fills; the result is a view of the filled part."""
    stream = _audio_stream(container)
    # A header is the uploader's claim: never reserve more than the cap (or 4 hours) on it.
    cap_s = max_duration_s if max_duration_s is not None else _RESERVE_AT_MOST_S
    expected = min(_expected_samples(container, stream, sample_rate), int(cap_s * sample_rate))
    buf = np.empty(expected + sample_rate, dtype=np.float32)
    filled = 0
    for block in _pcm_blocks(container, sample_rate, max_duration_s, stream):
        if filled + block.size > buf.size:
            grown = np.empty(max(filled + block.size, buf.size + buf.size // 2), dtype=np.float32)
            grown[:filled] = buf[:filled]
            buf = grown
        buf[filled : filled + block.size] = block
        filled += block.size
    return buf[:filled], stream


def decode_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, max_duration_s: float | None = None) -> np.ndarray:
    """Decode to mono float32 in [-1, 1] at ``sample_rate``; with ``max_duration_s``,
    stop with ``too_long`` once more than that has decoded."""
    with _open(Path(path)) as container:
        pcm, _ = _decode(container, sample_rate, max_duration_s)
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


def _header_duration(container, stream) -> float | None:
    if container.duration:
        return container.duration / 1_000_000
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


def _check_size(path: Path, max_bytes: int | None) -> None:
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise AudioDecodeError(f"the file has {size} bytes; the limit is {max_bytes}", code="too_large")
    declared = _wav_declared_bytes(path)
    if declared is not None and size < declared * 0.98:
        raise AudioDecodeError(
            f"the file looks truncated: its header declares {declared} bytes but it has {size}",
            code="truncated_audio",
        )


def _count_decoded_seconds(container, stream, max_duration_s: float | None) -> float:
    """Decode every frame (proving the data is usable) without keeping any samples."""
    decoded_s = 0.0
    try:
        for frame in _frames(container, stream, max_duration_s):
            decoded_s += frame.samples / (frame.sample_rate or SAMPLE_RATE)
    except (av.error.FFmpegError, ValueError) as exc:
        if decoded_s == 0:
            raise AudioDecodeError("the audio data is corrupt") from exc
        # Corruption after some good audio: the header comparison below decides.
    return decoded_s


def probe_audio(path: str | Path, max_duration_s: float | None = None, max_bytes: int | None = None) -> AudioProbe:
    """Prove the file is usable audio within the limits, cheapest check first: its size,
    the WAV header's size, the container's declared duration, then a streaming decode
    that keeps no samples and stops at the duration cap (a file whose header hides its
    length, or lies about it, costs at most the cap). Rejects empty, truncated, too-long."""
    path = Path(path)
    _check_size(path, max_bytes)
    with _open(path) as container:
        stream = _audio_stream(container)
        header = _header_duration(container, stream)
        fmt = (container.format.name or "").split(",")[0]
        codec = stream.codec_context.name if stream.codec_context else "unknown"
        exact = fmt in _EXACT_HEADER_FORMATS or codec.startswith("pcm_") or codec == "flac"
        # Lossy headers may be bitrate estimates; exact ones are the real length.
        if header and max_duration_s is not None and header > max_duration_s * (1.0 if exact else 1.5) + 1:
            raise _too_long(header, max_duration_s)
        duration = _count_decoded_seconds(container, stream, max_duration_s)
        rate, channels = stream.rate or 0, getattr(stream, "channels", 0)
    if duration <= 0.05:
        raise AudioDecodeError("the file contains no audio samples", code="empty_audio")
    if header and duration < header * (0.9 if exact else 0.5) - 0.5:
        raise AudioDecodeError(
            f"the file looks truncated: its header says {header:.1f} s but only {duration:.1f} s decode",
            code="truncated_audio",
        )
    return AudioProbe(duration, header, codec, fmt, int(rate), int(channels or 0))


def _pcm_blocks(container, sample_rate: int, max_duration_s: float | None = None, stream=None):
    """Decoded 16-bit mono float32 blocks, one resampled frame at a time (with
    ``max_duration_s``: ``too_long`` once more than that has decoded)."""
    stream = stream or _audio_stream(container)
    stream.thread_type = "AUTO"  # not in the probe: frame threads cost 5x CPU on silence-heavy FLAC
    resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
    produced = False
    try:
        for frame in _frames(container, stream, max_duration_s):
            for out in resampler.resample(frame):
                produced = True
                yield out.to_ndarray().reshape(-1).astype(np.float32) / 32768.0
        for out in resampler.resample(None):
            yield out.to_ndarray().reshape(-1).astype(np.float32) / 32768.0
    except (av.error.FFmpegError, ValueError) as exc:
        if not produced:
            raise AudioDecodeError("the audio data is corrupt") from exc
        # Corruption after some good audio: keep what decoded; the probe decides.


def stream_pcm(path: str | Path, sample_rate: int = SAMPLE_RATE):
    """Blocking generator: the file as consecutive mono float32 blocks at ``sample_rate``;
    memory stays one decoded frame, whatever the recording's length."""
    with _open(Path(path)) as container:
        yield from _pcm_blocks(container, sample_rate)


def energy_profile(path: str | Path, hop_s: float = 0.02, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Blocking: the RMS level (dBFS) of every ``hop_s`` of the file, in one streaming pass
    (2 h at 20 ms hops is 360 000 float32 values, 1.4 MB)."""
    hop = int(round(hop_s * sample_rate))
    levels: list[np.ndarray] = []
    carry = np.zeros(0, dtype=np.float32)
    for block in stream_pcm(path, sample_rate):
        buf = np.concatenate([carry, block]) if carry.size else block
        n = buf.size // hop
        if n:
            frames = buf[: n * hop].reshape(n, hop)
            levels.append(10 * np.log10(np.mean(frames * frames, axis=1) + 1e-10).astype(np.float32))
        carry = buf[n * hop:]
    if carry.size:
        levels.append(np.array([10 * np.log10(np.mean(carry * carry) + 1e-10)], dtype=np.float32))
    return np.concatenate(levels) if levels else np.zeros(0, dtype=np.float32)


def read_spans(path: str | Path, spans: list[tuple[float, float]], sample_rate: int = SAMPLE_RATE):
    """Blocking generator: the samples of each (start_s, end_s) span, in one streaming pass.
    Spans are sorted by start and may overlap their neighbours; memory holds only the
    samples from the current span's start onwards (one span plus overlap)."""
    bounds = [(int(round(a * sample_rate)), int(round(b * sample_rate))) for a, b in spans]
    held: list[np.ndarray] = []  # consecutive blocks starting at sample held_start
    held_start, pos = 0, 0
    blocks = stream_pcm(path, sample_rate)
    for i, (start, end) in enumerate(bounds):
        while pos < end:
            block = next(blocks, None)
            if block is None:
                break
            held.append(block)
            pos += block.size
        buf = np.concatenate(held) if held else np.zeros(0, dtype=np.float32)
        yield buf[max(0, start - held_start):max(0, end - held_start)].copy()
        next_start = bounds[i + 1][0] if i + 1 < len(bounds) else end
        held, held_start = _drop_before(buf, held_start, next_start)


def _drop_before(buf: np.ndarray, buf_start: int, sample: int) -> tuple[list[np.ndarray], int]:
    """Keep the buffer from ``sample`` on (the next span starts at or after the current one)."""
    cut = max(0, min(buf.size, sample - buf_start))
    return [buf[cut:]], buf_start + cut
