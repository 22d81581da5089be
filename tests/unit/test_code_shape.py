"""The code's shape (issue 10): no function over 50 lines in services/ or shared/, and no
stdlib logging.getLogger outside shared/logging.py. Long functions hide decisions that
deserve a name and a unit test."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_FUNCTION_LINES = 50


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_no_function_over_fifty_lines():
    long = [f"{p.relative_to(ROOT)}:{f.lineno} {f.name} ({f.end_lineno - f.lineno + 1} lines)"
            for package in ("services", "shared") for p in sorted((ROOT / package).rglob("*.py"))
            for f in _functions(p) if f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


def test_the_check_sees_a_long_function(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n" + "    x = 1\n" * 60)
    assert [f.end_lineno - f.lineno + 1 for f in _functions(sample)] == [61]
