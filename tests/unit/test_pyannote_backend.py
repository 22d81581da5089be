"""The optional pyannote backend fails to load with an exact, actionable reason."""

from __future__ import annotations

import builtins
import sys

import pytest

from services.diarizer.pyannote_backend import DiarizerUnavailable, PyannoteDiarizer


@pytest.fixture
def no_pyannote(monkeypatch):
    """Make ``import pyannote.audio`` fail, as on an install without the extra."""
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "pyannote.audio" or name.startswith("pyannote.audio."):
            raise ImportError("No module named 'pyannote.audio'")
        return real_import(name, *args, **kwargs)

    for mod in [m for m in sys.modules if m == "pyannote.audio" or m.startswith("pyannote.audio.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_missing_package_message(tmp_path, no_pyannote):
    (tmp_path / "config.yaml").write_text("pipeline: {}\n")
    with pytest.raises(DiarizerUnavailable) as err:
        PyannoteDiarizer(tmp_path).load()
    assert str(err.value).startswith("pyannote.audio is not installed: pip install -e .[pyannote]")


def test_missing_directory_message(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DiarizerUnavailable, match=f"pyannote pipeline directory {missing} does not exist"):
        PyannoteDiarizer(str(missing)).load()


def test_directory_without_config_message(tmp_path):
    with pytest.raises(DiarizerUnavailable, match=f"pyannote pipeline directory {tmp_path} has no config.yaml"):
        PyannoteDiarizer(tmp_path).load()


def test_hub_id_without_token_message():
    with pytest.raises(DiarizerUnavailable, match="needs TB_HF_TOKEN"):
        PyannoteDiarizer("pyannote/speaker-diarization-3.1").load()
