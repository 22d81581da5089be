"""RTTM (NIST Rich Transcription Time Marked) writing and reading.

One SPEAKER line per turn: ``SPEAKER <uri> 1 <start> <duration> <NA> <NA> <speaker> <NA> <NA>``.
Used by the API's diarization export and by the DER tests and benchmarks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import NamedTuple, Protocol


class Turn(NamedTuple):
    start: float
    end: float
    speaker: str


class _TurnLike(Protocol):
    start: float
    end: float
    speaker: str


def to_rttm(turns: Iterable[_TurnLike], uri: str) -> str:
    safe_uri = uri.replace(" ", "_") or "session"
    lines = []
    for t in sorted(turns, key=lambda t: (t.start, t.end)):
        duration = max(0.0, t.end - t.start)
        if duration <= 0:
            continue
        speaker = str(t.speaker).replace(" ", "_")
        lines.append(f"SPEAKER {safe_uri} 1 {t.start:.3f} {duration:.3f} <NA> <NA> {speaker} <NA> <NA>")
    return "\n".join(lines) + ("\n" if lines else "")


def parse_rttm(text: str) -> dict[str, list[Turn]]:
    """Return turns per uri, sorted by start. Lines other than SPEAKER are ignored."""
    out: dict[str, list[Turn]] = defaultdict(list)
    for raw in text.splitlines():
        parts = raw.split()
        if len(parts) < 8 or parts[0] != "SPEAKER":
            continue
        start, duration = float(parts[3]), float(parts[4])
        out[parts[1]].append(Turn(start, start + duration, parts[7]))
    return {uri: sorted(turns) for uri, turns in out.items()}
