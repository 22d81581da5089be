"""Replay a whole-system run's transcripts through the CURRENT notes code, without audio.

``bench/clinical_system.py`` with ``TB_BENCH_DUMP_DIR`` keeps each session's API detail (the
system's own transcript segments, speakers and roles). A change to the notes stage (risk
rules, the turn classifier, the extractor) only needs those transcripts again: this reads
the dumps, rebuilds the offline notes with the code as it is now and scores them exactly as
the system bench does (the scripted lines' audio times come from re-synthesis with the same
seeds, cached beside the dumps). Minutes instead of a quarter of an hour, and the ASR's draw
is held fixed, so a before/after difference is the code's alone. Same dumps, same code ->
the system run's own figures (checked on set 14: identical).

Run: .venv/bin/python -m bench.clinical_replay DIR DUMP_DIR [session_id ...]
     (session ids: also print each session's misses, false flags and flags)
The dumps hold transcript text: keep them out of the repo.
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

from bench import clinical_system, notes_blind, risk_blind
from services.notes.offline import build_offline_notes
from services.notes.risk import RiskDetector
from shared.contracts.events import MergedSegment, SpeakerInfo


def _line_times(labels: list[dict], dump: Path, only: set[str] | None) -> dict[str, list[tuple[float, float, str]]]:
    cache = dump / "line_times.pkl"
    times = pickle.loads(cache.read_bytes()) if cache.exists() else {}
    missing = [(seed, lab) for seed, lab in enumerate(labels)  # the system bench's seed is the session's rank
               if lab["raw"]["id"] not in times and (not only or lab["raw"]["id"] in only)]
    for seed, lab in missing:
        gen = clinical_system.synthesise(lab["raw"], seed=seed)
        times[lab["raw"]["id"]] = [(ln.start, ln.end, ln.text) for ln in gen.lines]
    if missing:
        cache.write_bytes(pickle.dumps(times))
    return times


def _detector() -> RiskDetector:
    from services.notes.risk_classifier import RiskClassifier
    from services.notes.risk_semantic import SemanticRiskModel

    semantic = SemanticRiskModel()
    return RiskDetector(semantic=semantic, classifier=RiskClassifier(semantic.encoder))


def _show(risk: dict, notes) -> None:
    for e in risk["missed"]:
        print("  missed", e["category"], e["severity"], "lines", e["lines"])
    for f in risk["false_flags"]:
        print("  false", f["category"], f["severity"], f["on"], f["rationale"])
    for f in notes.risk_flags:
        print("  flag", f.category.value, f.severity.value, f.temporal.value, round(f.start, 1), f.rationale[:120])


def replay(folder: Path, dump: Path, only: set[str] | None = None) -> dict:
    labels = clinical_system.labels_in_run_order(folder)
    times, detector = _line_times(labels, dump, only), _detector()
    risk, plan = [], []
    for lab in labels:
        sid = lab["raw"]["id"]
        if only and sid not in only:
            continue
        detail = json.loads((dump / f"{sid}.json").read_text())
        segments = [MergedSegment.model_validate(s) for s in detail["transcript_segments"]]
        notes = build_offline_notes(segments, [SpeakerInfo.model_validate(s) for s in detail["speakers"]], detector)
        lines = [clinical_system._Line(*t) for t in times[sid]]
        risk.append(risk_blind.score_session(lab["risk"], notes.risk_flags, lines))
        plan.append(notes_blind.score_notes(lab["notes"], notes, lines, detail.get("transcript_text") or ""))
        if only:
            _show(risk[-1], notes)
    return {"set": str(folder), "level": "replay: the system's dumped transcripts -> current offline notes",
            "risk": risk_blind.summarise(risk), "notes": notes_blind.summarise(plan)}


if __name__ == "__main__":
    result = replay(Path(sys.argv[1]), Path(sys.argv[2]), set(sys.argv[3:]) or None)
    print(json.dumps({k: result[k] for k in ("risk", "notes")}, indent=1))
