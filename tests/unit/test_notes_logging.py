"""Logging in the notes service and the shared library goes through structlog (so the
session id bound per event reaches every line) and carries type names, never exception text."""

from __future__ import annotations

import ast
from pathlib import Path

from structlog.testing import capture_logs

from services.notes import risk
from services.notes.risk import RiskDetector

ROOT = Path(__file__).resolve().parents[2]


def test_no_standard_library_loggers_in_services_or_shared():
    offenders = []
    for path in [*ROOT.joinpath("services").rglob("*.py"), *ROOT.joinpath("shared").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "getLogger"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "logging"):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_semantic_layer_failure_logs_the_type_only(monkeypatch):
    import services.notes.risk_semantic as risk_semantic

    class Unloadable:
        def __init__(self) -> None:
            raise RuntimeError("model missing at /home/clinic/patient-42/cache")

    monkeypatch.setattr(risk_semantic, "SemanticRiskModel", Unloadable)
    with capture_logs() as logs:
        assert RiskDetector(semantic="auto").semantic is None
    [entry] = [e for e in logs if e["event"] == "risk_semantic_unavailable_lexicon_only"]
    assert entry["error"] == "RuntimeError" and "patient-42" not in repr(logs)
    assert risk.detect_risk([], None) == []  # the lexicon still works
