"""Scores the offline notes' plan content (action items, interventions) on scripted sessions.

Each session's lines become timed merged segments (as in bench/risk_blind.py) and go through
``build_offline_notes``. Matching uses each extracted item's evidence time:

- action-item recall: a labelled action item (on the line where it was agreed) is found when an
  extracted action item's evidence sentence lies on that line or an adjacent one (agreement
  usually spans the suggestion and the acceptance);
- intervention recall: a labelled intervention is found when an extracted strategy of the same
  type (``TYPE_OF`` maps our names to the label vocabulary) exists in the session; also
  reported with its evidence within 3 lines of the labelled line;
- invented items: extracted items whose evidence is not verbatim transcript text (must be 0);
- unmatched action items: extracted items on no labelled action line (+-1): possible noise,
  or real plans the labels do not list.

Data: ``dev`` = the author's own sessions (tests/data/risk_dev_sessions.jsonl, tuning data);
``blind`` = tests/data/blind_clinical/, scored once after the extractor froze.

Run: .venv/bin/python -m bench.notes_blind [dev|blind|DIR] [name] -> bench/results/notes_<name>.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.risk_blind import load_dev, to_segments
from services.notes.intervention_classifier import InterventionClassifier, normalise_label
from services.notes.offline import build_offline_notes
from shared.contracts.events import MergedSegment

ROOT = Path(__file__).resolve().parents[1]
BLIND = ROOT / "tests" / "data" / "blind_clinical"
RESULTS = ROOT / "bench" / "results"
ACTION_WINDOW = 1
INTERVENTION_WINDOW = 3

#: Our strategy names -> the label vocabulary (issue 14's list; the blind README's types).
#: Writers differ: one calls a breathing exercise "mindfulness/grounding", another
#: "relaxation"; a strategy of ours counts for every label it names.
TYPE_OF = {
    "thought records / cognitive restructuring": ("cognitive restructuring",), "behavioral activation": ("behavioural activation",),
    "grounding": ("mindfulness/grounding",), "mindfulness": ("mindfulness/grounding",),
    "breathing exercises": ("mindfulness/grounding", "relaxation"),
    "progressive muscle relaxation": ("mindfulness/grounding", "relaxation"), "relaxation": ("relaxation", "mindfulness/grounding"),
    "boundary setting": ("communication skills",),
}


def _label_type(t: str) -> str:
    # Label vocabularies differ between writers: "safety_planning", "mindfulness_grounding".
    return normalise_label(t)


def _line_of(t: float, segments: list[MergedSegment]) -> int:
    return min(range(len(segments)), key=lambda i: 0 if segments[i].start <= t <= segments[i].end
               else min(abs(segments[i].start - t), abs(segments[i].end - t)))


def score_session(session: dict, interventions: InterventionClassifier | None = None) -> dict:
    """``interventions``: the supervised layer beside the patterns (None: patterns alone)."""
    segs = to_segments(session["lines"])
    notes = build_offline_notes(segs, [], interventions=interventions)
    return score_notes(session, notes, segs, "\n".join(s.text for s in segs))


def score_notes(session: dict, notes, segs: list, text: str) -> dict:
    """``segs``: one timed segment per labelled line (evidence times are mapped to lines
    through them); ``text``: the transcript the evidence must be verbatim in."""
    text = normalise_quote(text)
    action_lines = [_line_of(a.start, segs) for a in notes.action_items if a.start is not None]
    found_actions = [a for a in session["action_items"] if any(abs(a["line"] - ln) <= ACTION_WINDOW for ln in action_lines)]
    ours = {label.replace("behavioral", "behavioural"): s for s in notes.strategies for label in TYPE_OF.get(s.name, (s.name,))}
    labelled = [(_label_type(i["type"]), i["line"]) for i in session["interventions"]]
    found_iv = [t for t, _ln in labelled if t in ours]
    found_iv_near = [t for t, ln in labelled if t in ours and ours[t].start is not None
                     and abs(_line_of(ours[t].start, segs) - ln) <= INTERVENTION_WINDOW]
    invented = [a.evidence for a in notes.action_items if not a.evidence or normalise_quote(a.evidence) not in text]
    invented += [s.evidence for s in notes.strategies if not s.evidence or normalise_quote(s.evidence) not in text]
    labelled_lines = {a["line"] for a in session["action_items"]}
    unmatched = [a.evidence for a, ln in zip(notes.action_items, action_lines)
                 if not any(abs(ln - x) <= ACTION_WINDOW for x in labelled_lines)]
    return {"id": session["id"], "action_items": len(session["action_items"]), "actions_found": len(found_actions),
            "interventions": len(labelled), "interventions_found": len(found_iv),
            "interventions_found_near_line": len(found_iv_near), "extracted_actions": len(notes.action_items),
            "extracted_interventions": sorted(ours), "invented": invented, "unmatched_actions": unmatched,
            "missed_actions": [a for a in session["action_items"] if a not in found_actions],
            "missed_interventions": [t for t, _ in labelled if t not in ours]}


def summarise(per: list[dict]) -> dict:
    n_a = sum(s["action_items"] for s in per)
    n_i = sum(s["interventions"] for s in per)
    return {
        "sessions": len(per), "action_items": n_a,
        "action_item_recall": round(sum(s["actions_found"] for s in per) / max(1, n_a), 3),
        "interventions": n_i, "intervention_recall": round(sum(s["interventions_found"] for s in per) / max(1, n_i), 3),
        "intervention_recall_near_line": round(sum(s["interventions_found_near_line"] for s in per) / max(1, n_i), 3),
        "invented_items": sum(len(s["invented"]) for s in per),
        "extracted_actions": sum(s["extracted_actions"] for s in per),
        "unmatched_extracted_actions": sum(len(s["unmatched_actions"]) for s in per),
    }


def normalise_quote(text: str) -> str:
    """Whitespace-normalised (the transcript text joins segments with newlines)."""
    return " ".join(text.split())


def load_blind(folder: Path = BLIND) -> list[dict]:
    out = []
    for path in sorted(Path(folder).glob("session_*.json")):
        s = json.loads(path.read_text())
        lines = [{"speaker": ln["speaker"], "role": "THERAPIST" if ln["speaker"] == "THERAPIST" else "CLIENT",
                  "text": ln["text"]} for ln in s["lines"]]
        out.append({"id": s["id"], "lines": lines, "action_items": s["action_items"], "interventions": s["interventions"]})
    return out


def optional_interventions() -> InterventionClassifier:
    """The intervention layer as the notes service loads it when TB_NOTES_INTERVENTION_CLASSIFIER
    is on (the safety net's MiniLM)."""
    from services.notes.risk_semantic import load_encoder

    return InterventionClassifier(load_encoder())


def main(which: str = "dev", name: str | None = None) -> None:
    """``dev``, ``blind`` (tests/data/blind_clinical) or a directory of session_*.json files."""
    if which in ("dev", "blind"):
        sessions, name = (load_dev() if which == "dev" else load_blind()), name or which
    else:
        sessions, name = load_blind(Path(which)), name or Path(which).name
    per = [score_session(s) for s in sessions]
    layer = optional_interventions()
    with_clf = [score_session(s, layer) for s in sessions]
    result = {"summary": summarise(per), "sessions": per,
              "configuration": "shipped defaults: the pattern extractor (TB_NOTES_INTERVENTION_CLASSIFIER off)",
              "with_intervention_classifier": {"summary": summarise(with_clf), "sessions": with_clf},
              "level": "text: reference transcript lines straight into the offline extractor (no audio)"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"notes_{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"shipped": result["summary"], "with_intervention_classifier": result["with_intervention_classifier"]["summary"]},
                     indent=2))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "dev", sys.argv[2] if len(sys.argv) > 2 else None)
