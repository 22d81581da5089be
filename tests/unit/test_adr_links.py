"""Every reference to an ADR (docs/adr/NNNN-name.md) in code, docs and deployment files
names a file that exists: a renamed or never-written ADR fails here, not in a reader's
browser."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ADR_REF = re.compile(r"docs/adr/([0-9]{4}[A-Za-z0-9_.-]*\.md)")
SEARCHED = ("services", "shared", "devtools", "bench", "tests", "docs", "deploy")
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".js", ".html", ".txt"}


def _files():
    yield from (ROOT / name for name in ("README.md", "Makefile", "docker-compose.yml", "pyproject.toml"))
    for top in SEARCHED:
        yield from (p for p in (ROOT / top).rglob("*") if p.suffix in SUFFIXES and p.is_file())


def adr_references() -> list[tuple[str, str]]:
    refs = []
    for path in _files():
        if path.exists():
            refs += [(str(path.relative_to(ROOT)), name) for name in ADR_REF.findall(path.read_text(errors="ignore"))]
    return refs


def test_the_scan_finds_references():
    # Guards the test itself: a broken pattern would find nothing and pass vacuously.
    assert any(name == "0003-streams-read-the-database.md" for _, name in adr_references())


def test_every_adr_reference_names_an_existing_file():
    missing = [(where, name) for where, name in adr_references() if not (ROOT / "docs" / "adr" / name).exists()]
    assert not missing, missing
