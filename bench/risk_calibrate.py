"""Calibrates the semantic layer's SOLO threshold on data it was not tuned on.

Why: the semantic layer (prototype banks + margins) was tuned on tests/data/risk_sentences.jsonl.
Unchecked, it raised flags alone at similarity 0.46-0.56 on benign sentences. Here, on
tests/data/risk_holdout.jsonl (never used to tune the prototypes or margins), every semantic
hit that the lexicon did not also find is listed with its similarity and whether its category
is one the sentence's label allows; the solo threshold is the lowest similarity above which
those hits are at least ``TARGET_PRECISION`` correct and no benign sentence is hit (see
``lowest_safe_threshold``). Separate thresholds for sentences with and without a negation /
hypothetical / third-party cue. Writes bench/results/risk_calibration.json.

Run: .venv/bin/python -m bench.risk_calibrate
"""

from __future__ import annotations

import json
from pathlib import Path

from services.notes.risk import _scan_sentence_ex, _semantic_guard
from services.notes.grounding import normalize
from services.notes.risk_semantic import SemanticRiskModel

ROOT = Path(__file__).resolve().parents[1]
HOLDOUT = ROOT / "tests" / "data" / "risk_holdout.jsonl"
OUT = ROOT / "bench" / "results" / "risk_calibration.json"
TARGET_PRECISION = 0.95


def semantic_only_hits(model: SemanticRiskModel, rows: list[dict]) -> list[dict]:
    """(similarity, correct) of every unguarded semantic hit the lexicon did not make."""
    scores = model.score([r["text"] for r in rows])
    out = []
    for r, sc in zip(rows, scores):
        norm = normalize(r["text"])
        hits, suppressed = _scan_sentence_ex(r["text"])
        lexicon_cats = {p.category.value for p, _s, _w in hits}
        guard = _semantic_guard(norm, suppressed)
        ok = ({r["category"]} if r["category"] else set()) | set(r.get("also", []))
        for cat, sim in model.decide(sc, guard):
            if cat not in lexicon_cats:
                out.append({"similarity": round(sim, 4), "category": cat, "correct": cat in ok,
                            "benign_sentence": r["category"] is None, "guarded": bool(guard)})
    return sorted(out, key=lambda h: h["similarity"])


def lowest_safe_threshold(hits: list[dict], guarded: bool = False) -> float:
    """Lowest similarity above which the (un)guarded semantic-only hits reach the target
    precision AND no benign sentence (one with no risk at all) is hit.

    Why the second condition: in a real session benign client sentences outnumber risk
    sentences by ~20 to 1, far more than in the holdout, so a hit on a benign sentence costs
    far more false flags per session than the holdout's precision suggests.
    """
    pool = [h for h in hits if h["guarded"] is guarded]
    for h in pool:
        above = [x for x in pool if x["similarity"] >= h["similarity"]]
        precise = sum(x["correct"] for x in above) / len(above) >= TARGET_PRECISION
        if precise and not any(x["benign_sentence"] for x in above):
            return h["similarity"]
    return 1.0


def main() -> None:
    rows = [json.loads(line) for line in HOLDOUT.read_text().splitlines() if line.strip()]
    model = SemanticRiskModel()
    hits = semantic_only_hits(model, rows)
    threshold = lowest_safe_threshold(hits)
    guarded_threshold = lowest_safe_threshold(hits, guarded=True)
    result = {
        "data": "tests/data/risk_holdout.jsonl (not used to tune the prototypes or margins)",
        "target_precision_of_solo_hits": TARGET_PRECISION,
        "calibrated_solo_threshold": threshold,
        "configured_solo_threshold": model.config.solo_threshold,
        "calibrated_guarded_solo_threshold": guarded_threshold,
        "configured_guarded_solo_threshold": model.config.guarded_solo_threshold,
        "semantic_only_hits": hits,
        "false_hits_below_threshold": sum(not h["correct"] for h in hits if h["similarity"] < threshold),
        "correct_hits_at_or_above": sum(h["correct"] for h in hits if h["similarity"] >= threshold and not h["guarded"]),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "semantic_only_hits"}, indent=2))


if __name__ == "__main__":
    main()
