"""One clock for every view (issue 15): a flag time or a duration reads the same on the web
page (app.js ``clock()``), in the SOAP/DAP notes (notes_render) and in the CLI
(cli_format.clock). All three floor to the second; the SOAP render used to round, so a flag
at 62.7 s was 01:02 on the page and 01:03 in the note."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from services.gateway.cli_format import clock
from services.gateway.notes_render import SessionMeta, render_dap, render_soap
from shared.contracts.notes import ClinicalNotes, FlagSource, RiskCategory, RiskFlag, Severity

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = [0, 0.4, 0.5, 0.999, 1, 59.5, 59.99, 62.7, 125.5, 599.9, 3599.6, 3600, 3723.9, 36000.5]
EXPECTED = ["00:00", "00:00", "00:00", "00:00", "00:01", "00:59", "00:59", "01:02", "02:05", "09:59", "59:59",
            "1:00:00", "1:02:03", "10:00:00"]


def _web_clock_source() -> str:
    source = (ROOT / "services/gateway/web/app.js").read_text()
    match = re.search(r"function clock\(t\) \{.*?\n  \}", source, re.S)
    assert match, "app.js has no clock(t) function any more: update this test with the page's formatter"
    return match.group(0)


def test_cli_clock_floors():
    assert [clock(s) for s in SAMPLES] == EXPECTED
    assert clock(None) == clock(float("nan")) == "--:--"
    assert clock(-3) == "00:00"


def test_soap_and_dap_flag_and_duration_times_match_the_cli_clock():
    flag = RiskFlag(category=RiskCategory.hopelessness, severity=Severity.moderate, source=FlagSource.lexicon,
                    evidence="I feel hopeless", start=62.7)
    notes = ClinicalNotes.model_validate({"risk_flags": [flag.model_dump()]})
    for render in (render_soap, render_dap):
        md = render(notes, SessionMeta(duration_s=3723.9))
        assert f"at {clock(62.7)}" in md and "at 01:02" in md and "01:03" not in md
        assert f"**Duration:** {clock(3723.9)}" in md


def test_the_web_page_clock_floors_too():
    body = _web_clock_source()
    assert "Math.floor(t" in body and "Math.round" not in body
    node = shutil.which("node")
    if node:  # run the page's own function on the same samples
        script = f"{body}\nconsole.log(JSON.stringify({json.dumps(SAMPLES)}.map(clock)));"
        out = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=30, check=True).stdout
        assert json.loads(out) == EXPECTED
