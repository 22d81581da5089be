"""Files that hold patient data are private (issue 11, item 7): blobs 0600 in 0700
folders whatever the umask, log files 0600, and `make run` prints the sample's words to
a terminal only, never into redirected output (a log file)."""

from __future__ import annotations

import asyncio
import io
import os
import stat
from pathlib import Path

import pytest

from devtools.stack import print_result
from shared.blobstore import LocalBlobStore
from shared.private_files import open_private

WORDS = "zanzibar-private-marker said the patient"


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def loose_umask():
    """The common default umask, under which plain open()/mkdir() give 0644/0755."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_blobs_are_private_in_private_folders(tmp_path, loose_umask):
    root = tmp_path / "blobs"
    root.mkdir(mode=0o755)  # an old install's folder is narrowed too
    store = LocalBlobStore(root)

    async def chunks():
        yield b"RIFF" + b"\0" * 100

    streamed = asyncio.run(store.put_stream("sessions/s1/audio/original.wav", chunks()))
    store.put_bytes("sessions/s1/payloads/transcript.json", WORDS.encode())
    store.put_json("sessions/s2/notes.json", {"text": WORDS})
    files = [p for p in root.rglob("*") if p.is_file()]
    folders = [root] + [p for p in root.rglob("*") if p.is_dir()]
    assert len(files) == 3 and streamed.path in files
    assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}
    assert {str(p): _mode(p) for p in folders} == {str(p): 0o700 for p in folders}


def test_blob_root_created_with_its_parents_private(tmp_path, loose_umask):
    store = LocalBlobStore(tmp_path / "var" / "blobs")
    store.put_bytes("a/b.bin", b"x")
    assert _mode(tmp_path / "var") == 0o700 and _mode(tmp_path / "var" / "blobs") == 0o700
    assert _mode(tmp_path / "var" / "blobs" / "a" / "b.bin") == 0o600


def test_existing_log_file_is_narrowed_before_appending(tmp_path, loose_umask):
    log = tmp_path / "gateway.log"
    log.write_text("old line\n")
    os.chmod(log, 0o644)
    with open_private(log, "ab") as fh:
        fh.write(b"new line\n")
    assert _mode(log) == 0o600 and log.read_text() == "old line\nnew line\n"


def _detail() -> dict:
    return {"id": "s-1", "status": "completed", "transcript_text": WORDS,
            "extracted_notes": {"key_topics": ["zanzibar-topic"], "risk_flags": [], "patient_summary": WORDS}}


def test_make_run_result_keeps_words_out_of_redirected_output():
    out = io.StringIO()
    print_result(_detail(), out, show_text=False)
    text = out.getvalue()
    assert "zanzibar" not in text
    assert "s-1" in text and "4 transcript words" in text


def test_make_run_result_shows_words_on_a_terminal():
    out = io.StringIO()
    print_result(_detail(), out, show_text=True)
    assert WORDS in out.getvalue() and "zanzibar-topic" in out.getvalue()
