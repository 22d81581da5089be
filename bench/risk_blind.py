"""Scores the risk safety net at the transcript level on scripted sessions with labelled episodes.

Each session's lines become merged segments (speaker roles THERAPIST/CLIENT, words timed at
~140 words/min, a short pause between turns), run through the service's detector (lexicon +
semantic layer), and the flags are matched to the labelled episodes:

- episode recall: a labelled episode is found when a flag of its category has an evidence
  quote on one of the episode's lines;
- false flags: flags with no evidence quote on any labelled episode's line (any category);
  also counted without past-marked low flags (recorded history, e.g. "sober for eight years");
- wrong-category flags: flags on an episode's lines whose category is not the episode's
  (reported, not counted as false: they sit on a real disclosure);
- severity agreement: a found episode's flag (the most severe matching one) has the
  labelled severity; high-priority agreement: every episode labelled high is flagged high.

Data sets:
- ``dev``: tests/data/risk_dev_sessions.jsonl, written by the detector's author and used
  while tuning (so its numbers are optimistic);
- ``blind``: tests/data/blind_clinical/ (22 sessions written by someone who never saw the
  detector), scored ONCE after the detector was frozen and committed.

Run: .venv/bin/python -m bench.risk_blind [dev|blind|blind-posthoc|DIR] [name] -> bench/results/risk_<name>.json
     .venv/bin/python -m bench.risk_blind held-out DIR [name] -> bench/results/risk_<name>_text.json
     (a set neither layer saw: rules alone and rules + the shipped classifier, side by side)
(``blind-posthoc`` re-scores the blind set after changes made once it had been read: not blind)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from services.notes.risk import RiskDetector
from shared.contracts.events import MergedSegment, MergedWord
from shared.contracts.notes import RiskFlag

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT / "tests" / "data" / "risk_dev_sessions.jsonl"
BLIND = ROOT / "tests" / "data" / "blind_clinical"
RESULTS = ROOT / "bench" / "results"
WORD_S = 60.0 / 140.0
TURN_PAUSE_S = 0.8


def to_segments(lines: list[dict]) -> list[MergedSegment]:
    """lines: [{"speaker": id, "role": "THERAPIST"|"CLIENT", "text": ...}] -> timed segments."""
    labels: dict[str, str] = {}
    t = 0.0
    out = []
    for line in lines:
        label = labels.setdefault(line["speaker"], f"SPEAKER_{len(labels):02d}")
        words = []
        for w in line["text"].split():
            words.append(MergedWord(start=round(t, 3), end=round(t + WORD_S * 0.9, 3), word=w, speaker=label))
            t += WORD_S
        out.append(MergedSegment(start=words[0].start, end=words[-1].end, speaker=label, role=line["role"],
                                 text=line["text"], words=words))
        t += TURN_PAUSE_S
    return out


def _lines_of(flag: RiskFlag, segments: list[MergedSegment]) -> set[int]:
    quotes = flag.evidence_quotes or []
    spans = [(q.start, q.end if q.end is not None else q.start) for q in quotes] or [(flag.start, flag.end or flag.start)]
    return {i for i, s in enumerate(segments) for a, b in spans if a <= s.end and b >= s.start}


#: Secondary, lenient recall only: categories a clinician would read as the same disclosure
#: ("no point in going on" flagged as hopelessness when labelled suicidal ideation).
RELATED = {("suicidal_ideation", "hopelessness"), ("hopelessness", "suicidal_ideation"),
           ("self_harm", "suicidal_ideation"), ("suicidal_ideation", "self_harm")}


def score_session(session: dict, flags: list[RiskFlag], segments: list[MergedSegment]) -> dict:
    flag_lines = [(f, _lines_of(f, segments)) for f in flags]
    found_related = sum(1 for e in session["episodes"] if any(
        (f.category.value == e["category"] or (e["category"], f.category.value) in RELATED) and ls & set(e["lines"])
        for f, ls in flag_lines))
    episode_lines = set().union(*[set(e["lines"]) for e in session["episodes"]]) if session["episodes"] else set()
    found, sev_ok, high_ok, n_high, misses = 0, 0, 0, 0, []
    for e in session["episodes"]:
        hits = [f for f, ls in flag_lines if f.category.value == e["category"] and ls & set(e["lines"])]
        n_high += e["severity"] == "high"
        if not hits:
            misses.append(e)
            continue
        found += 1
        top = max(hits, key=lambda f: ("low", "moderate", "high").index(f.severity.value))
        sev_ok += top.severity.value == e["severity"]
        high_ok += e["severity"] == "high" and top.severity.value == "high"
    false = [f for f, ls in flag_lines if not ls & episode_lines]
    distractor_type = {d["line"]: d["type"] for d in session.get("distractors", [])}
    false_on = [sorted({distractor_type.get(i, "unlabelled line") for i in ls}) for f, ls in flag_lines if not ls & episode_lines]
    wrong_cat = [f for f, ls in flag_lines if ls & episode_lines and not any(
        f.category.value == e["category"] and ls & set(e["lines"]) for e in session["episodes"])]
    return {
        "id": session["id"], "episodes": len(session["episodes"]), "found": found, "found_related": found_related,
        "severity_agree": sev_ok,
        "high_episodes": n_high, "high_marked_high": high_ok, "flags": len(flags),
        "false_flags": [{**_brief(f), "on": on} for f, on in zip(false, false_on)], "wrong_category_flags": [_brief(f) for f in wrong_cat],
        "missed": misses,
        "severity_disagreements": [
            {"episode": e, "flagged": [_brief(f) for f, ls in flag_lines if f.category.value == e["category"] and ls & set(e["lines"])]}
            for e in session["episodes"] if e not in misses and not any(
                f.severity.value == e["severity"] for f, ls in flag_lines if f.category.value == e["category"] and ls & set(e["lines"]))],
    }


def _brief(f: RiskFlag) -> dict:
    return {"category": f.category.value, "severity": f.severity.value, "temporal": f.temporal.value,
            "evidence": f.evidence, "quotes": len(f.evidence_quotes), "rationale": f.rationale}


def summarise(per_session: list[dict]) -> dict:
    n_ep = sum(s["episodes"] for s in per_session)
    found = sum(s["found"] for s in per_session)
    n_false = sum(len(s["false_flags"]) for s in per_session)
    n_false_cur = sum(1 for s in per_session for f in s["false_flags"] if not (f["temporal"] == "past" and f["severity"] == "low"))
    n_high = sum(s["high_episodes"] for s in per_session)
    return {
        "sessions": len(per_session), "episodes": n_ep, "episode_recall": round(found / max(1, n_ep), 3),
        "episode_recall_related_category": round(sum(s["found_related"] for s in per_session) / max(1, n_ep), 3),
        "false_flags": n_false, "false_flags_per_session": round(n_false / max(1, len(per_session)), 3),
        "false_flags_excluding_past_low": n_false_cur,
        "false_flags_per_session_excluding_past_low": round(n_false_cur / max(1, len(per_session)), 3),
        "wrong_category_flags": sum(len(s["wrong_category_flags"]) for s in per_session),
        "severity_agreement": round(sum(s["severity_agree"] for s in per_session) / max(1, found), 3),
        "high_episodes": n_high, "high_marked_high": sum(s["high_marked_high"] for s in per_session),
        "flags_total": sum(s["flags"] for s in per_session),
    }


def load_dev() -> list[dict]:
    return [json.loads(x) for x in DEV.read_text().splitlines() if x.strip()]


def run(sessions: list[dict], detector: RiskDetector) -> dict:
    per = []
    for s in sessions:
        segs = to_segments(s["lines"])
        per.append(score_session(s, detector.detect(segs), segs))
    return {"summary": summarise(per), "sessions": per}


def held_out(folder: Path, name: str | None = None, asr_shaped: bool = False) -> dict:
    """A set neither layer was tuned or trained on, scored once: rules alone and rules +
    the shipped classifier, side by side -> bench/results/risk_<name>_text.json, or with
    ``asr_shaped`` on the set's ASR-shaped copy (bench/asr_shaped.py: the transcriber's
    fragments with its errors, as the detector reads them through the system)
    -> risk_<name>_asr_shaped.json."""
    from services.notes.risk_classifier import RiskClassifier
    from services.notes.risk_semantic import SemanticRiskModel

    name = name or Path(folder).name
    if asr_shaped:
        from bench import asr_shaped as shaped

        sessions = shaped.load(Path(folder).name)
    else:
        sessions = load_blind(Path(folder))
    model = SemanticRiskModel()
    result = {
        "set": str(folder), "held_out": True,
        "note": "scored once after freezing the rules and the shipped classifier weights",
        "level": ("asr-shaped: the shipped transcriber's fragments of the voiced session (bench/asr_shaped.py)"
                  if asr_shaped else "text: reference transcript lines straight into the detector (no audio)"),
        "rules": run(sessions, RiskDetector(semantic=model)),
        "rules_plus_classifier": run(sessions, RiskDetector(semantic=model, classifier=RiskClassifier(model.encoder))),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"risk_{name}_{'asr_shaped' if asr_shaped else 'text'}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k]["summary"] for k in ("rules", "rules_plus_classifier")}, indent=2))
    return result


def main(which: str = "dev", name: str | None = None) -> None:
    """``dev``, ``blind`` (tests/data/blind_clinical), ``blind-posthoc``, or a directory of
    ``session_*.json`` files in the blind schema (e.g. /work/blind/clinical2); results go to
    bench/results/risk_<name>.json (name: the directory's name unless given)."""
    if which == "dev":
        sessions, name = load_dev(), name or "dev"
    elif which in ("blind", "blind-posthoc"):
        sessions, name = load_blind(), name or which.replace("-", "_")
    else:
        sessions, name = load_blind(Path(which)), name or Path(which).name
    result = run(sessions, RiskDetector())
    result["level"] = "text: reference transcript lines straight into the detector (no audio)"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"risk_{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2))


#: The blind set's category names (written without seeing ours) -> the RiskCategory values.
BLIND_CATEGORIES = {
    "suicidal_ideation": "suicidal_ideation", "self_harm": "self_harm", "harm_to_others": "harm_to_others",
    "substance_crisis": "substance_use", "abuse_or_neglect": "abuse_or_violence",
    "psychosis_or_mania": "other", "eating_disorder_risk": "other",
}


def load_blind(folder: Path = BLIND) -> list[dict]:
    """``folder``/session_*.json (default tests/data/blind_clinical) in the scorer's form
    (line roles: THERAPIST or CLIENT)."""
    out = []
    for path in sorted(Path(folder).glob("session_*.json")):
        s = json.loads(path.read_text())
        lines = [{"speaker": ln["speaker"], "role": "THERAPIST" if ln["speaker"] == "THERAPIST" else "CLIENT",
                  "text": ln["text"]} for ln in s["lines"]]
        episodes = [{"category": BLIND_CATEGORIES[e["category"]], "blind_category": e["category"],
                     "severity": e["severity"], "temporal": e["temporal"], "lines": e["lines"]} for e in s["risk_episodes"]]
        out.append({"id": s["id"], "kind": s["kind"], "lines": lines, "episodes": episodes,
                    "distractors": s.get("distractors", [])})
    return out


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] in ("held-out", "held-out-asr"):  # held-out[-asr] DIR [name]
        held_out(Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None, asr_shaped=sys.argv[1] == "held-out-asr")
        sys.exit(0)
    main(sys.argv[1] if len(sys.argv) > 1 else "dev", sys.argv[2] if len(sys.argv) > 2 else None)
