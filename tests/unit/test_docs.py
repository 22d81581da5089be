"""The README and the AsyncAPI document stay true: the settings and topic tables are
generated from the code and current, and the AsyncAPI document (generated from
shared/topology.py) passes the official AsyncAPI parser."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from devtools.docs import (
    EVENTS_DIR, README, ROOT, TOPICS_MARKERS, asyncapi, operation_id, readme_with_settings, readme_with_topics,
)
from shared.contracts.events import TOPIC_MODELS, Topic
from shared.settings import ENV_PREFIX, Settings
from shared.topology import EXTERNAL_ONLY, SERVICES

TEXT = README.read_text()
CHECKER = ROOT / "tools" / "asyncapi-check"


def test_settings_table_is_current():
    assert readme_with_settings(TEXT) == TEXT, "run `make docs` to regenerate the README settings table"


def test_topic_table_is_current():
    assert readme_with_topics(TEXT) == TEXT, "run `make docs` to regenerate the README topic table"


def topic_rows() -> dict[str, list[str]]:
    table = TEXT.split(TOPICS_MARKERS[0], 1)[1].split(TOPICS_MARKERS[1], 1)[0]
    rows = [line.strip("|").split("|") for line in table.splitlines() if line.startswith("| `")]
    return {cells[0].strip().strip("`"): [c.strip() for c in cells[1:]] for cells in rows}


def test_topic_table_rows_follow_the_topology():
    rows = topic_rows()
    assert set(rows) == {t.value for t in Topic} | {"<topic>.dlq"}
    producers, consumers = rows[Topic.NOTES_FAILED.value][:2]
    assert (producers, consumers) == ("notes", "progress")  # the hand-written table said the joiner consumed it
    for topic in Topic:
        listed = rows[topic.value][1].split(", ")
        expected = [s.name for s in SERVICES.values() if topic in s.consumes]
        assert listed == ["other systems"] if topic in EXTERNAL_ONLY else [c.split(" ")[0] for c in listed] == expected


def test_every_setting_is_in_the_readme():
    missing = [f"{ENV_PREFIX}{n.upper()}" for n in Settings.model_fields if f"`{ENV_PREFIX}{n.upper()}`" not in TEXT]
    assert not missing


def test_readme_names_the_two_commands():
    assert "make run" in TEXT and "make test" in TEXT


def test_an_operation_for_every_service_topic_pair():
    doc = asyncapi()
    expected = {operation_id(s, "receive", t) for s in SERVICES.values() for t in s.consumes}
    expected |= {operation_id(s, "send", t) for s in SERVICES.values() for t in s.produces}
    assert set(doc["operations"]) == expected
    joiner_merged = doc["operations"][operation_id(SERVICES["joiner"], "send", Topic.TRANSCRIPT_MERGED)]
    assert joiner_merged["action"] == "send"
    assert joiner_merged["channel"] == {"$ref": "#/channels/transcript_merged"}
    assert set(doc["components"]["messages"]) == {m.__name__ for m in TOPIC_MODELS.values()}


def resolve(doc: dict, ref: str):
    assert ref.startswith("#/"), ref
    node = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs_in(node) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for value in node.values() for r in refs_in(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs_in(value)]
    return []


def test_every_ref_resolves_inside_the_document():
    doc = asyncapi()
    refs = refs_in(doc)
    assert "#/components/schemas/ClinicalNotes" in refs and "#/components/schemas/MergedWord" in refs
    for ref in refs:
        assert resolve(doc, ref) is not None
    assert not any("$defs" in schema for schema in doc["components"]["schemas"].values())


def validate_with_official_parser(path: Path) -> subprocess.CompletedProcess:
    """Run tools/asyncapi-check (@asyncapi/parser). Fails, never skips, without node/npm:
    `make test` installs the checker; a bare pytest run installs it from the lock file."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are needed to validate docs/events/asyncapi.json (install nodejs and npm)"
    if not (CHECKER / "node_modules" / "@asyncapi" / "parser").exists():
        subprocess.run([npm, "ci", "--prefix", str(CHECKER)], check=True, capture_output=True, timeout=600)
    return subprocess.run([node, str(CHECKER / "validate.mjs"), str(path)], capture_output=True, text=True,
                          timeout=300)


def test_asyncapi_document_passes_the_official_parser():
    result = validate_with_official_parser(EVENTS_DIR / "asyncapi.json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "VALID:" in result.stdout and " 0 operations" not in result.stdout


@pytest.mark.parametrize("breakage", ["dangling_schema_ref", "operation_on_unknown_channel"])
def test_the_official_parser_check_can_fail(tmp_path, breakage):
    doc = copy.deepcopy(asyncapi())
    if breakage == "dangling_schema_ref":
        del doc["components"]["schemas"]["MergedWord"]
    else:
        next(iter(doc["operations"].values()))["channel"] = {"$ref": "#/channels/no_such_topic"}
    broken = tmp_path / "asyncapi.json"
    broken.write_text(json.dumps(doc))
    result = validate_with_official_parser(broken)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "INVALID" in result.stdout
