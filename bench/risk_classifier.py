"""Trains the supervised risk layer (services/notes/risk_classifier.py) and measures it honestly.

1. Leave-one-set-out: for each blind set in ``SETS`` (five writers' sets)
   train on the other four, then score the held-out set through ``bench.risk_blind``'s scorer
   with the FULL detector (lexicon + prototype layer + classifier), for a grid of
   regularisation strengths C and solo thresholds; also the detector without the classifier.
2. ``ship C THRESHOLD``: train on all of ``SETS`` with the chosen C and write
   services/notes/risk_classifier.npz (deterministic: lbfgs, sorted data, float32 weights).

Data: each session's client lines; label = the category of the labelled episode containing
the line (blind category names mapped as in bench.risk_blind), else "none" (distractor
lines, hard negatives, are "none" like every other line). Severity and temporal heads are
trained on the episode lines only. NEVER train on or choose with blind_clinical6 (``HELD_OUT``).

Run: nice -n 19 .venv/bin/python -m bench.risk_classifier [folds|folds7|folds11|veto|shaped|ship C THRESHOLD [WEAK_VETO]|ship6|ship7|ship11 C THRESHOLD WEAK_VETO]
-> bench/results/risk_classifier_folds.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from bench.risk_blind import load_blind, run
from services.notes.risk import RiskDetector
from services.notes.risk_classifier import NONE, WEIGHTS, RiskClassifier, Turn, features

ROOT = Path(__file__).resolve().parents[1]
# Round 5: five writers' sets; blind_clinical6 is held out from training and choosing (scored once
# with ``held-out`` after the weights are shipped).
SETS = ["blind_clinical", "blind_clinical2", "blind_clinical3", "blind_clinical4", "blind_clinical5"]
HELD_OUT = "blind_clinical6"
# Round 6: set 6 was looked at through the system in round 5, so it joins the training sets and
# set 7 (a new writer) is held out; the classifier also learns from ASR-shaped copies of the
# sets (bench/asr_shaped.py): what it reads in production.
SETS_R6 = SETS + ["blind_clinical6"]
HELD_OUT_R6 = "blind_clinical7"
# Round 7: set 7 was read line by line (system misses, notes and risk cues), so it joins the
# training sets and set 8 (a new writer) is held out.
SETS_R7 = SETS_R6 + ["blind_clinical7"]
HELD_OUT_R7 = "blind_clinical8"
# Round 9: sets 8-11 were each read after their held-out scoring, so eleven writers train and
# choose; set 12 (a new writer) is held out.
SETS_R9 = SETS_R7 + ["blind_clinical8", "blind_clinical9", "blind_clinical10", "blind_clinical11"]
HELD_OUT_R9 = "blind_clinical12"
RESULTS = ROOT / "bench" / "results"
CLASSES = [NONE, "suicidal_ideation", "self_harm", "harm_to_others", "substance_use", "abuse_or_violence", "other"]
SEV = ["low", "moderate", "high"]
GUARD_OFFSET = 0.1
CORROBORATE = 0.3
CACHE = Path("/tmp/risk_classifier_embedding_cache.npz")


class CachingEncoder:
    """The bundled MiniLM with a per-text cache (the grid re-reads the same sentences)."""

    def __init__(self) -> None:
        from services.notes.risk_semantic import load_encoder

        self.inner = load_encoder()
        self.cache: dict[str, np.ndarray] = {}
        if CACHE.exists():  # a scratch cache of this machine's embeddings (never committed)
            z = np.load(CACHE, allow_pickle=False)
            self.cache = dict(zip(z["texts"].tolist(), z["emb"]))

    def save(self) -> None:
        texts = sorted(self.cache)
        np.savez(CACHE, texts=np.array(texts), emb=np.stack([self.cache[t] for t in texts]))

    def encode(self, sentences: list[str], **kw) -> np.ndarray:
        missing = sorted({s for s in sentences if s not in self.cache})
        if missing:
            emb = np.asarray(self.inner.encode(missing, batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                                               show_progress_bar=False), dtype=np.float32)
            self.cache.update(zip(missing, emb))
        return np.stack([self.cache[s] for s in sentences])


def turns_of(session: dict) -> list[Turn]:
    return [Turn(ln["speaker"], ln["role"] == "THERAPIST", ln["text"]) for ln in session["lines"]]


def dataset(encoder, sessions: list[dict]) -> dict[str, np.ndarray]:
    xs, ys, sevs, pasts = [], [], [], []
    for s in sessions:
        turns = turns_of(s)
        idx = [i for i, t in enumerate(turns) if not t.therapist and t.text.strip()]
        label = {}
        for e in s["episodes"]:
            for i in e["lines"]:
                label[i] = (e["category"], e["severity"], e["temporal"] == "past")
        xs.append(features(encoder, turns, idx))
        for i in idx:
            cat, sev, past = label.get(i, (NONE, "", False))
            ys.append(CLASSES.index(cat))
            sevs.append(SEV.index(sev) if sev else -1)
            pasts.append(int(past))
    return {"X": np.concatenate(xs), "y": np.array(ys), "sev": np.array(sevs), "past": np.array(pasts)}


def train(data: list[dict[str, np.ndarray]], C: float, threshold: float) -> dict[str, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    X = np.concatenate([d["X"] for d in data]).astype(np.float64)
    y = np.concatenate([d["y"] for d in data])
    sev = np.concatenate([d["sev"] for d in data])
    past = np.concatenate([d["past"] for d in data])
    clf = LogisticRegression(C=C, max_iter=3000, class_weight="balanced").fit(X, y)
    W = np.zeros((len(CLASSES), X.shape[1]))
    b = np.zeros(len(CLASSES))
    W[clf.classes_], b[clf.classes_] = clf.coef_, clf.intercept_
    b[[k for k in range(len(CLASSES)) if k not in set(clf.classes_)]] = -50.0  # a class never seen never fires
    pos = sev >= 0
    sclf = LogisticRegression(C=C, max_iter=3000, class_weight="balanced").fit(X[pos], sev[pos])
    Ws = np.zeros((len(SEV), X.shape[1]))
    bs = np.full(len(SEV), -50.0)
    Ws[sclf.classes_], bs[sclf.classes_] = sclf.coef_, sclf.intercept_
    tclf = LogisticRegression(C=C, max_iter=3000, class_weight="balanced").fit(X[pos], past[pos])
    return {"classes": np.array(CLASSES), "W": W.astype(np.float32), "b": b.astype(np.float32),
            "sev_classes": np.array(SEV), "Ws": Ws.astype(np.float32), "bs": bs.astype(np.float32),
            "Wt": tclf.coef_.astype(np.float32), "bt": tclf.intercept_.astype(np.float32),
            "threshold": np.float32(threshold), "guarded_threshold": np.float32(min(0.99, threshold + GUARD_OFFSET)),
            "corroborate": np.float32(CORROBORATE), "C": np.float32(C)}


def with_threshold(w: dict, threshold: float) -> dict:
    return {**w, "threshold": np.float32(threshold), "guarded_threshold": np.float32(min(0.99, threshold + GUARD_OFFSET))}


def _fold_inputs(sets: list[str]):
    """The caching encoder, the semantic layer on it, each set's sessions and its training data."""
    from services.notes.risk_semantic import SemanticRiskModel

    enc = CachingEncoder()
    semantic = SemanticRiskModel(encoder=enc)
    sessions = {name: load_blind(ROOT / "tests" / "data" / name) for name in sets}
    return enc, semantic, sessions, {name: dataset(enc, ss) for name, ss in sessions.items()}


def _pooled(rows: list[dict]) -> dict:
    """Leave-one-set-out rows of one setting pooled over sessions and episodes."""
    eps = sum(r["episodes"] for r in rows)
    return {"episode_recall": round(sum(r["episode_recall"] * r["episodes"] for r in rows) / eps, 3),
            "false_flags_per_session": round(sum(r["false_flags"] for r in rows) / sum(r["sessions"] for r in rows), 3),
            "high_marked_high": sum(r["high_marked_high"] for r in rows), "high_episodes": sum(r["high_episodes"] for r in rows)}


def folds(Cs=(1.0, 4.0), thresholds=(0.5, 0.6, 0.7, 0.8, 0.9), severity_modes=("head",)) -> dict:
    enc, semantic, sessions, data = _fold_inputs(SETS)
    enc.save()
    out: dict = {"baseline": {}, "grid": []}
    for name in SETS:
        out["baseline"][name] = run(sessions[name], RiskDetector(semantic=semantic))["summary"]
        print("rules", name, out["baseline"][name], flush=True)
    for C in Cs:
        for held in SETS:
            w = train([data[n] for n in SETS if n != held], C, thresholds[0])
            for th in thresholds:
                for mode in severity_modes:
                    det = RiskDetector(semantic=semantic, classifier=RiskClassifier(enc, weights=with_threshold(w, th)),
                                       classifier_severity=mode)
                    summ = run(sessions[held], det)["summary"]
                    row = {"C": C, "threshold": th, "severity": mode, "held_out": held, **summ}
                    out["grid"].append(row)
                    print(json.dumps({k: row[k] for k in ("C", "threshold", "severity", "held_out", "episode_recall",
                                      "false_flags_per_session", "severity_agreement", "high_marked_high", "high_episodes")}),
                          flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    enc.save()
    (RESULTS / "risk_classifier_folds.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


def folds7(C: float = 4.0, thresholds=(0.7, 0.8, 0.85, 0.9, 0.95), weak_veto: float = 0.8,
           sets: list[str] = SETS_R7, name: str = "folds7", shipped_on: list[str] = ()) -> dict:
    """Round 7: leave-one-set-out over the seven tuning writers (``SETS_R7``) at the shipped C and
    weak-opener veto, for the solo threshold -> bench/results/risk_classifier_folds7.json. The
    rule, fixed before the run: ship the lowest threshold whose pooled false flags per session
    are <= 0.5 at text level (the held-out set 8 plays no part).

    Round 9 (``folds11``): the same over the eleven writers of ``SETS_R9``, and on ``shipped_on``
    (the writers the shipped weights never saw) the shipped weights beside the folds, so more
    writers' worth of training is compared with the weights it would replace on the same sets."""
    enc, semantic, sessions, data = _fold_inputs(sets)
    enc.save()
    rows = []
    for held in sets:
        w = train([data[n] for n in sets if n != held], C, thresholds[0])
        for th in thresholds:
            weights = {**with_threshold(w, th), "weak_veto": np.float32(weak_veto)}
            summ = run(sessions[held], RiskDetector(semantic=semantic, classifier=RiskClassifier(enc, weights=weights)))["summary"]
            rows.append({"C": C, "threshold": th, "weak_veto": weak_veto, "held_out": held, **summ})
            print(json.dumps({k: rows[-1][k] for k in ("threshold", "held_out", "episode_recall", "false_flags_per_session")}), flush=True)
    pooled = {str(th): _pooled([r for r in rows if r["threshold"] == th]) for th in thresholds}
    out: dict = {"sets": sets, "rows": rows, "pooled": pooled}
    if shipped_on:
        shipped = RiskClassifier(enc)
        ship_rows = [{"held_out": held, **run(sessions[held], RiskDetector(semantic=semantic, classifier=shipped))["summary"]}
                     for held in shipped_on]
        out["shipped_weights_on"] = {"sets": list(shipped_on), "rows": ship_rows, "pooled": _pooled(ship_rows)}
        out["folds_on_the_same_sets"] = {str(th): _pooled([r for r in rows if r["threshold"] == th and r["held_out"] in shipped_on])
                                         for th in thresholds}
    RESULTS.mkdir(parents=True, exist_ok=True)
    enc.save()
    (RESULTS / f"risk_classifier_{name}.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k not in ("rows", "sets")}, indent=2, default=str))
    return out


def veto_folds(C: float = 4.0, threshold: float = 0.7, vetoes=(None, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)) -> dict:
    """Leave-one-set-out for the weak-opener veto (``risk._veto_openers``) at the chosen
    C and threshold -> bench/results/risk_classifier_veto_folds.json."""
    enc, semantic, sessions, data = _fold_inputs(SETS)
    rows = []
    for held in SETS:
        w = train([data[n] for n in SETS if n != held], C, threshold)
        for veto in vetoes:
            wv = {**w, "weak_veto": np.float32(veto)} if veto is not None else w
            summ = run(sessions[held], RiskDetector(semantic=semantic, classifier=RiskClassifier(enc, weights=wv)))["summary"]
            rows.append({"C": C, "threshold": threshold, "weak_veto": veto, "held_out": held, **summ})
            print(json.dumps({k: rows[-1][k] for k in ("weak_veto", "held_out", "episode_recall", "false_flags_per_session",
                              "severity_agreement", "high_marked_high")}), flush=True)
    enc.save()
    out = {"sets": SETS, "grid": rows}
    (RESULTS / "risk_classifier_veto_folds.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


def shaped_folds(Cs=(1.0, 4.0), thresholds=(0.6, 0.7, 0.8, 0.9), sets=tuple(SETS_R6)) -> dict:
    """Round 6, leave-one-set-out scored on the held-out set's ASR-SHAPED copy (what the
    detector reads through the system): classifier trained on script lines only (as
    shipped in round 5) against script lines plus ASR-shaped fragments of the training sets
    -> bench/results/risk_classifier_shaped_folds.json."""
    from bench import asr_shaped
    from services.notes.risk_semantic import SemanticRiskModel

    enc = CachingEncoder()
    semantic = SemanticRiskModel(encoder=enc)
    script = {n: dataset(enc, load_blind(ROOT / "tests" / "data" / n)) for n in sets}
    shaped_sessions = {n: asr_shaped.load(n) for n in sets}
    shaped = {n: dataset(enc, ss) for n, ss in shaped_sessions.items()}
    enc.save()
    rows = [{"train": "rules only", "held_out": held, **run(shaped_sessions[held], RiskDetector(semantic=semantic))["summary"]}
            for held in sets]
    for row in rows:
        print(json.dumps(_brief_row(row)), flush=True)
    for C in Cs:
        for held in sets:
            others = [n for n in sets if n != held]
            for train_on, data in (("script", [script[n] for n in others]),
                                   ("script+shaped", [script[n] for n in others] + [shaped[n] for n in others])):
                w = train(data, C, thresholds[0])
                for th in thresholds:
                    det = RiskDetector(semantic=semantic, classifier=RiskClassifier(enc, weights={**with_threshold(w, th), "weak_veto": np.float32(0.8)}))
                    row = {"train": train_on, "C": C, "threshold": th, "held_out": held,
                           **run(shaped_sessions[held], det)["summary"]}
                    rows.append(row)
                    print(json.dumps(_brief_row(row)), flush=True)
    enc.save()
    out = {"sets": list(sets), "level": "ASR-shaped held-out set (bench/asr_shaped.py)", "weak_veto": 0.8, "grid": rows}
    (RESULTS / "risk_classifier_shaped_folds.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


def _brief_row(row: dict) -> dict:
    keys = ("train", "C", "threshold", "held_out", "episode_recall", "false_flags_per_session", "severity_agreement",
            "high_marked_high", "high_episodes")
    return {k: row[k] for k in keys if k in row}


def ship(C: float, threshold: float, weak_veto: float | None = None, sets: list[str] = SETS) -> None:
    """Train on ``sets``' script lines (round 5: sets 1-5; round 6, ``ship6``: sets 1-6; round 7,
    ``ship7``: sets 1-7) and
    write the shipped weights. Round 6 measured adding the sets' ASR-shaped copies
    (``shaped``): no better on the ASR-shaped folds at any matched false-flag rate, so the
    shipped weights are trained on script lines."""
    enc = CachingEncoder()
    w = train([dataset(enc, load_blind(ROOT / "tests" / "data" / n)) for n in sets], C, threshold)
    if weak_veto is not None:
        w["weak_veto"] = np.float32(weak_veto)
    np.savez_compressed(WEIGHTS, **w)
    print("wrote", WEIGHTS, WEIGHTS.stat().st_size, "bytes")


if __name__ == "__main__":
    t0 = time.time()
    if len(sys.argv) > 1 and sys.argv[1] in ("ship", "ship6", "ship7", "ship11"):
        ship(float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]) if len(sys.argv) > 4 else None,
             sets={"ship6": SETS_R6, "ship7": SETS_R7, "ship11": SETS_R9}.get(sys.argv[1], SETS))
    elif len(sys.argv) > 1 and sys.argv[1] == "shaped":
        shaped_folds()
    elif len(sys.argv) > 1 and sys.argv[1] == "folds7":
        folds7()
    elif len(sys.argv) > 1 and sys.argv[1] == "folds11":
        folds7(thresholds=(0.6, 0.7, 0.8, 0.9), sets=SETS_R9, name="folds11", shipped_on=SETS_R9[6:])
    elif len(sys.argv) > 1 and sys.argv[1] == "veto":
        veto_folds()
    else:
        folds()
    print(f"{time.time() - t0:.0f} s")
