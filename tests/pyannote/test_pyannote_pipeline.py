"""The pyannote.audio backend's real loading and inference code, offline, on CPU.

The pipeline directory is built by conftest.py with randomly initialised weights in the
community-1 layout: what the diarizer *says* is meaningless, but every step it takes is
the real one (torchaudio shim, ``Pipeline.from_pretrained`` on a local directory with
the hub switched off, segmentation, embeddings, PLDA/VBx clustering, in-memory audio,
turn conversion). Quality is measured on the built-in backend elsewhere.
"""

from __future__ import annotations

import re
import shutil
import socket

import pytest

from services.diarizer.diarization import DiarizationError
from services.diarizer.pyannote_backend import SAMPLE_RATE, DiarizerUnavailable, PyannoteDiarizer

LABEL = r"SPEAKER_\d\d"


def assert_well_formed(result, audio) -> None:
    duration = len(audio) / SAMPLE_RATE
    assert result.turns, "the pipeline produced no turns"
    starts = [(t.start, t.end) for t in result.turns]
    assert starts == sorted(starts), "turns are not sorted by start"
    for t in result.turns:
        assert 0.0 <= t.start < t.end <= duration + 1e-3, t
        assert isinstance(t.speaker, str)
        assert re.fullmatch(LABEL, t.speaker), t.speaker
    labels = {t.speaker for t in result.turns}
    assert result.speaker_count == len(labels)
    # labels are numbered by first appearance: SPEAKER_00, SPEAKER_01, ...
    first_seen = list(dict.fromkeys(t.speaker for t in result.turns))
    assert first_seen == [f"SPEAKER_{i:02d}" for i in range(len(first_seen))]


@pytest.fixture(scope="module")
def auto_result(loaded_diarizer, sample_audio):
    ticks: list[tuple[float, str]] = []
    result = loaded_diarizer.diarize(sample_audio, progress=lambda f, m: ticks.append((f, m)))
    return result, ticks


def test_load_is_offline(random_pipeline_dir, monkeypatch):
    """Loading a local directory never opens a network connection."""

    def no_network(*args, **kwargs):
        raise AssertionError(f"network access while loading a local pipeline: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    diarizer = PyannoteDiarizer(str(random_pipeline_dir))
    assert not diarizer.loaded
    diarizer.load()
    assert diarizer.loaded
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"  # load() switches the hub off for local dirs
    assert os.environ["PYANNOTE_METRICS_ENABLED"] == "false"
    from pyannote.audio.pipelines import SpeakerDiarization

    assert isinstance(diarizer._pipeline, SpeakerDiarization)
    diarizer.load()  # idempotent


def test_torchaudio_imports_on_cpu_torch(loaded_diarizer):
    """The shim lets torchaudio's pure-Python parts work next to the CPU-only torch."""
    import torch
    import torchaudio
    import torchaudio.compliance.kaldi as kaldi

    feats = kaldi.fbank(torch.zeros(1, SAMPLE_RATE), num_mel_bins=80)
    assert feats.shape == (98, 80)
    assert torchaudio.functional.resample(torch.zeros(1, SAMPLE_RATE), SAMPLE_RATE, 8000).shape == (1, 8000)


def test_diarize_returns_well_formed_turns(auto_result, sample_audio):
    result, _ = auto_result
    assert_well_formed(result, sample_audio)
    # the random models cannot find more speakers than the powerset model has classes
    assert 1 <= result.speaker_count <= 3


def test_diarize_reports_progress(auto_result):
    _, ticks = auto_result
    assert ticks[0][0] == 0.0 and ticks[-1][0] == 1.0
    assert all(isinstance(m, str) and m for _, m in ticks)


@pytest.mark.parametrize("num_speakers", [1, 2])
def test_num_speakers_is_honoured(loaded_diarizer, sample_audio, num_speakers):
    """Left alone, the random pipeline finds 2 speakers here; 1 and 2 are both enforced.

    (pyannote forces ``num_speakers`` clusters, but a cluster that never wins a frame
    leaves no turn, so with these random weights 3 comes out as 2; see docs/pyannote.md.)
    """
    result = loaded_diarizer.diarize(sample_audio, num_speakers=num_speakers)
    assert_well_formed(result, sample_audio)
    assert result.speaker_count == num_speakers


class _Recorder:
    """Wraps the loaded pipeline, records the keyword arguments, calls through."""

    def __init__(self, pipeline):
        self.pipeline, self.calls = pipeline, []

    def __call__(self, file, **kwargs):
        self.calls.append((file, kwargs))
        return self.pipeline(file, **kwargs)


def test_hints_reach_the_pipeline_and_turns_stay_inside_the_audio(loaded_diarizer, sample_audio, monkeypatch):
    """min/max hints are passed on; 12 s of audio (the last 10 s window is padded past
    the end) still gives turns that end by 12 s."""
    recorder = _Recorder(loaded_diarizer._pipeline)
    monkeypatch.setattr(loaded_diarizer, "_pipeline", recorder)
    clip = sample_audio[: 12 * SAMPLE_RATE]
    result = loaded_diarizer.diarize(clip, min_speakers=1, max_speakers=2)
    assert_well_formed(result, clip)
    assert 1 <= result.speaker_count <= 2
    (file, kwargs), = recorder.calls
    assert kwargs == {"min_speakers": 1, "max_speakers": 2}
    assert file["sample_rate"] == SAMPLE_RATE
    assert tuple(file["waveform"].shape) == (1, len(clip))  # in memory: torchcodec never decodes


def test_diarize_before_load_is_an_error(random_pipeline_dir, sample_audio):
    with pytest.raises(DiarizationError, match="not loaded"):
        PyannoteDiarizer(random_pipeline_dir).diarize(sample_audio)


# ------------------------------------------------------------------ broken directories
@pytest.fixture
def broken_copy(random_pipeline_dir, tmp_path):
    """A fresh copy of the random pipeline directory to break in one way."""
    target = tmp_path / "pipeline"
    shutil.copytree(random_pipeline_dir, target)
    return target


def test_missing_directory(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DiarizerUnavailable) as err:
        PyannoteDiarizer(missing).load()
    assert str(err.value) == f"pyannote pipeline directory {missing} does not exist"


def test_missing_config(broken_copy):
    (broken_copy / "config.yaml").unlink()
    with pytest.raises(DiarizerUnavailable) as err:
        PyannoteDiarizer(broken_copy).load()
    assert str(err.value) == f"pyannote pipeline directory {broken_copy} has no config.yaml"


def test_missing_segmentation_checkpoint(broken_copy):
    checkpoint = broken_copy / "segmentation" / "pytorch_model.bin"
    checkpoint.unlink()
    diarizer = PyannoteDiarizer(broken_copy)
    with pytest.raises(DiarizerUnavailable) as err:
        diarizer.load()
    message = str(err.value)
    assert message.startswith(f"could not load pyannote pipeline {str(broken_copy)!r}: FileNotFoundError: ")
    assert str(checkpoint) in message
    assert "Traceback" not in message
    assert not diarizer.loaded


def test_missing_plda(broken_copy):
    plda = broken_copy / "plda" / "plda.npz"
    plda.unlink()
    with pytest.raises(DiarizerUnavailable) as err:
        PyannoteDiarizer(broken_copy).load()
    message = str(err.value)
    assert message.startswith(f"could not load pyannote pipeline {str(broken_copy)!r}: FileNotFoundError: ")
    assert "plda.npz" in message


def test_corrupt_embedding_checkpoint(broken_copy):
    (broken_copy / "embedding" / "pytorch_model.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(DiarizerUnavailable) as err:
        PyannoteDiarizer(broken_copy).load()
    assert str(err.value).startswith(f"could not load pyannote pipeline {str(broken_copy)!r}: ")


def test_unknown_pipeline_class(broken_copy):
    config = broken_copy / "config.yaml"
    config.write_text(config.read_text().replace("pipelines.SpeakerDiarization", "pipelines.NoSuchPipeline"))
    with pytest.raises(DiarizerUnavailable) as err:
        PyannoteDiarizer(broken_copy).load()
    assert str(err.value).startswith(f"could not load pyannote pipeline {str(broken_copy)!r}: ")
    assert "NoSuchPipeline" in str(err.value)


def test_hub_id_without_token():
    with pytest.raises(DiarizerUnavailable) as err:
        PyannoteDiarizer("pyannote/speaker-diarization-community-1").load()
    assert str(err.value) == (
        "hub pipeline 'pyannote/speaker-diarization-community-1' needs TB_HF_TOKEN (a Hugging Face "
        "token that has accepted the model's conditions), or set the pipeline to a local directory"
    )


def test_hub_id_with_token_but_no_network(monkeypatch):
    """With the hub unreachable (offline mode here), the reason is a clean message."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DiarizerUnavailable) as err:
        PyannoteDiarizer("pyannote/speaker-diarization-community-1", token="hf_dummy").load()
    assert str(err.value).startswith("could not load pyannote pipeline 'pyannote/speaker-diarization-community-1': ")
