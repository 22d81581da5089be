"""Which speaker of a session is the therapist who enrolled their voice (ADR 0010).

Pure domain code: compares each speaker's centroid embedding (``speaker_centroids`` in
diarization.py) with the enrolled embedding by cosine similarity. The best speaker is the
therapist when its similarity reaches ``threshold``; the confidence grows with how far it
is above the threshold and how far ahead of the runner-up it is:

    confidence = 0.5 + 0.49 * min(1, (s_best - threshold) / (full - threshold),
                                    (s_best - s_second) / margin_full)

so a match just at the threshold, or two speakers equally similar, is 0.5 (a coin toss
between "therapist" and "not"), and a clear match is 0.99 (never 1.0). The threshold and
``full`` were calibrated on generated audio with different espeak-ng voices
(bench/voice_calibration.py; numbers in ADR 0010)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from uuid import UUID

import numpy as np

from shared.contracts.events import VoiceMatch

EMBEDDING_DIM = 256


@dataclass(frozen=True)
class Enrolment:
    therapist_id: UUID
    display_name: str | None
    embedding: np.ndarray  # unit length, float32


@dataclass(frozen=True)
class MatchConfig:
    threshold: float = 0.90
    full: float = 0.97  # similarity at which the absolute term reaches 0.99
    margin_full: float = 0.15  # lead over the runner-up at which the margin term reaches 0.99


def embedding_to_bytes(vec: np.ndarray) -> bytes:
    return np.asarray(vec, dtype="<f4").tobytes()


def embedding_from_bytes(raw: bytes) -> np.ndarray:
    vec = np.frombuffer(raw, dtype="<f4")
    if vec.shape != (EMBEDDING_DIM,):
        raise ValueError(f"an enrolled embedding has {EMBEDDING_DIM} floats, not {vec.shape}")
    return vec / (np.linalg.norm(vec) + 1e-9)


def similarities(centroids: Mapping[str, np.ndarray], embedding: np.ndarray) -> dict[str, float]:
    """Cosine similarity of each speaker's centroid to the enrolled embedding."""
    e = embedding / (np.linalg.norm(embedding) + 1e-9)
    return {label: float(np.dot(c / (np.linalg.norm(c) + 1e-9), e)) for label, c in centroids.items()}


def match_confidence(best: float, second: float | None, cfg: MatchConfig) -> float:
    absolute = (best - cfg.threshold) / max(cfg.full - cfg.threshold, 0.05)
    margin = 1.0 if second is None else (best - second) / max(cfg.margin_full, 1e-6)
    return round(0.5 + 0.49 * max(0.0, min(1.0, absolute, margin)), 3)


def match_enrolled(centroids: Mapping[str, np.ndarray], enrolment: Enrolment | None,
                   cfg: MatchConfig) -> VoiceMatch | None:
    """The speaker matching the enrolment, or None (no enrolment, no speaker, none similar enough)."""
    if enrolment is None or not centroids:
        return None
    sims = similarities(centroids, enrolment.embedding)
    ranked = sorted(sims.items(), key=lambda kv: -kv[1])
    label, best = ranked[0]
    if best < cfg.threshold:
        return None
    second = ranked[1][1] if len(ranked) > 1 else None
    return VoiceMatch(speaker=label, therapist_id=enrolment.therapist_id, display_name=enrolment.display_name or None,
                      similarity=round(best, 4), confidence=match_confidence(best, second, cfg),
                      similarities={k: round(v, 4) for k, v in sims.items()})
