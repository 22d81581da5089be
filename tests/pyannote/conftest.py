"""A local pyannote.audio pipeline directory with randomly initialised weights.

These tests exercise the real pyannote backend code path (``Pipeline.from_pretrained``
on a local directory, offline, then inference on audio passed in memory) without the
pretrained weights, which are gated on the Hugging Face hub and cannot be fetched here.
The directory has the layout of ``pyannote/speaker-diarization-community-1``:

    config.yaml                   pipeline: SpeakerDiarization, $model/... references
    segmentation/pytorch_model.bin  PyanNet, powerset (3 speakers, 2 at once), 10 s chunks
    embedding/pytorch_model.bin     WeSpeaker ResNet34 (256-dim embeddings)
    plda/xvec_transform.npz         mean1 (256,), lda (256, 128), mean2 (128,)
    plda/plda.npz                   mu (128,), tr (128, 128), psi (128,)

The checkpoints are written the way pyannote's ``Model.on_save_checkpoint`` and
Lightning's checkpointing write them (``state_dict``, ``hyper_parameters`` and the
``pyannote.audio`` block with versions, architecture and specifications), so that
``Model.from_pretrained`` loads them exactly as it loads a downloaded model. The
output of such a pipeline is meaningless; the code path is the real one.

Run with ``make test-pyannote`` (its own venv, .venv-pyannote); ``make test`` does not
collect this directory.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

# Outside .venv-pyannote (no pyannote.audio), collect nothing here rather than erroring:
# `make test` also passes --ignore=tests/pyannote, this is the second line of defence.
if importlib.util.find_spec("pyannote") is None or importlib.util.find_spec("pyannote.audio") is None:
    collect_ignore_glob = ["test_*.py"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")

DATA = Path(__file__).resolve().parents[1] / "data"
SAMPLE_WAV = DATA / "pyannote_sample.wav"

EMBEDDING_DIM = 256  # WeSpeaker ResNet34
LDA_DIM = 128  # pyannote.audio.core.plda.PLDA default lda_dimension

CONFIG_YAML = """\
# Same shape as pyannote/speaker-diarization-community-1's config.yaml; random weights.
dependencies:
  pyannote.audio: {version}
pipeline:
  name: pyannote.audio.pipelines.SpeakerDiarization
  params:
    clustering: VBxClustering
    segmentation: $model/segmentation
    # community-1 uses 0.1 (a 10 s window every 1 s); 0.5 keeps the test quick on 2 cores.
    segmentation_step: 0.5
    segmentation_batch_size: 8
    embedding: $model/embedding
    embedding_batch_size: 8
    embedding_exclude_overlap: true
    plda: $model/plda
params:
  clustering:
    threshold: 0.6
    Fa: 0.07
    Fb: 0.8
  segmentation:
    min_duration_off: 0.0
"""


def _save_checkpoint(model, path: Path) -> None:
    """Write ``model`` as pyannote.audio's ``pytorch_model.bin`` (a Lightning checkpoint)."""
    import lightning
    import torch

    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    model.on_save_checkpoint(checkpoint)  # adds the "pyannote.audio" block
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)


def _random_orthogonal(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((n, m)))
    return q[:, :m]


def build_random_pipeline(root: Path, seed: int = 0) -> Path:
    """Write a community-1-style pipeline directory with random weights under ``root``."""
    import torch
    from pyannote.audio import __version__ as pyannote_version
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34
    from pyannote.audio.models.segmentation import PyanNet

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)

    # Segmentation: PyanNet with community-1's architecture and powerset output.
    segmentation = PyanNet(
        sincnet={"stride": 10},
        lstm={"hidden_size": 128, "num_layers": 4, "bidirectional": True, "monolithic": True, "dropout": 0.0},
        linear={"hidden_size": 128, "num_layers": 2},
    )
    segmentation.specifications = Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION,
        resolution=Resolution.FRAME,
        duration=10.0,
        min_duration=10.0,
        warm_up=(0.0, 0.0),
        classes=["speaker#1", "speaker#2", "speaker#3"],
        powerset_max_classes=2,
        permutation_invariant=True,
    )
    segmentation.build()  # the task-dependent classifier and activation layers
    _save_checkpoint(segmentation, root / "segmentation" / "pytorch_model.bin")

    # Embedding: WeSpeaker ResNet34 (256-dim), as in community-1.
    embedding = WeSpeakerResNet34()
    embedding.specifications = Specifications(
        problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=10.0
    )
    _save_checkpoint(embedding, root / "embedding" / "pytorch_model.bin")

    # PLDA for VBx clustering: well-conditioned random transforms with the right shapes.
    plda_dir = root / "plda"
    plda_dir.mkdir(parents=True, exist_ok=True)
    np.savez(
        plda_dir / "xvec_transform.npz",
        mean1=rng.standard_normal(EMBEDDING_DIM) * 0.01,
        mean2=rng.standard_normal(LDA_DIM) * 0.01,
        lda=_random_orthogonal(rng, EMBEDDING_DIM, LDA_DIM),
    )
    np.savez(
        plda_dir / "plda.npz",
        mu=rng.standard_normal(LDA_DIM) * 0.01,
        tr=_random_orthogonal(rng, LDA_DIM, LDA_DIM),
        psi=np.sort(rng.uniform(0.5, 5.0, LDA_DIM))[::-1].copy(),
    )

    (root / "config.yaml").write_text(CONFIG_YAML.format(version=pyannote_version))
    return root


@pytest.fixture(scope="session")
def random_pipeline_dir(tmp_path_factory) -> Path:
    """A community-1-layout pipeline directory with random weights (built once per run)."""
    # Import through the backend so the CPU torchaudio shim is in place first.
    from services.diarizer.pyannote_backend import _import_pipeline_class

    _import_pipeline_class()
    return build_random_pipeline(tmp_path_factory.mktemp("pyannote-random-pipeline"))


@pytest.fixture(scope="session")
def loaded_diarizer(random_pipeline_dir):
    from services.diarizer.pyannote_backend import PyannoteDiarizer

    diarizer = PyannoteDiarizer(random_pipeline_dir)
    diarizer.load()
    return diarizer


@pytest.fixture(scope="session")
def sample_audio() -> np.ndarray:
    from shared.audio import decode_audio

    return decode_audio(SAMPLE_WAV)
