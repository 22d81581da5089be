"""Round 10 (issue 14): rules + the shipped classifier with the lexicon veto off (as shipped)
and at ``MEASURED_LEXICON_VETO``, side by side per set: text sets by folder name under
tests/data, ASR-shaped copies (bench/asr_shaped.py) as ``asr:NAME``.

Run: PYTHONPATH=. .venv/bin/python -m bench.risk_lexicon_veto OUT.json SET [SET ...]
The round's results: bench/results/risk_lexicon_veto.json (docs/risk-blind3.md, "Round 10").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.risk_blind import load_blind, run
from services.notes.risk import RiskDetector
from services.notes.risk_classifier import MEASURED_LEXICON_VETO, RiskClassifier

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def sessions_of(name: str) -> list[dict]:
    if name.startswith("asr:"):
        from bench import asr_shaped

        return asr_shaped.load(name[4:])
    return load_blind(DATA / name)


def main(out_path: str, names: list[str]) -> None:
    from services.notes.risk_semantic import SemanticRiskModel

    model = SemanticRiskModel()
    out: dict[str, dict] = {}
    for name in names:
        sessions = sessions_of(name)
        out[name] = {label: run(sessions, RiskDetector(semantic=model, classifier=RiskClassifier(model.encoder, lexicon_veto=veto)))["summary"]
                     for label, veto in (("off", None), (str(MEASURED_LEXICON_VETO), MEASURED_LEXICON_VETO))}
        print(name, json.dumps({k: [v[m] for m in ("episode_recall", "false_flags_per_session", "severity_agreement", "high_marked_high")]
                                for k, v in out[name].items()}), flush=True)
        Path(out_path).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
