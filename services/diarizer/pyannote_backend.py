"""Optional pyannote.audio backend, same interface as the built-in diarizer.

pyannote.audio is an optional extra (``pip install -e .[pyannote]``): it is heavier and
its pretrained pipelines are gated on the Hugging Face hub. It is loaded lazily in
``load()`` so that importing this module never needs it, and every way loading can fail
becomes a :class:`DiarizerUnavailable` whose message says exactly what to do: the
service turns that into a clear, permanent ``diarization.failed`` reason (or falls back
to the built-in diarizer) instead of a stack trace.

Audio is passed in memory (``{"waveform": (1, n) tensor, "sample_rate": 16000}``), so
the pipeline never re-decodes the file.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from services.diarizer.diarization import DiarizationError, DiarizationResult, relabel_by_first_appearance

SAMPLE_RATE = 16_000


class DiarizerUnavailable(RuntimeError):
    """The backend cannot run here; ``str(exc)`` is a human-readable reason and remedy."""


def _torchaudio_utils_path() -> Path | None:
    """torchaudio's ``_extension/utils.py``, if torchaudio is installed, not yet imported
    and laid out as expected; else None (leave it alone)."""
    if "torchaudio" in sys.modules or "torchaudio._extension.utils" in sys.modules:
        return None
    try:
        spec = importlib.util.find_spec("torchaudio")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    utils_path = Path(next(iter(spec.submodule_search_locations))) / "_extension" / "utils.py"
    return utils_path if utils_path.is_file() else None


def _bypass_unloadable_torchaudio_libs() -> None:
    """Let ``import torchaudio`` succeed when its compiled libraries cannot load.

    Why: pyannote.audio 4 depends on torchaudio, and pip resolves it to the default
    PyPI wheel (torchaudio 2.11), a CUDA build made for another torch. Next to the
    CPU-only torch 2.13.0 this project pins, ``import torchaudio`` dies in
    ``torchaudio._extension`` with ``OSError: Could not load this library:
    .../_torchaudio.abi3.so`` (it needs ``libc10_cuda.so``). pyannote only uses
    torchaudio's pure-Python parts (``compliance.kaldi.fbank`` for the WeSpeaker
    features, ``functional.resample``), which work without the compiled extension.

    How: torchaudio already supports running without its extension (``_load_lib``
    returns False when the library file is absent, as in a pex deployment). Before
    torchaudio is first imported we load its own ``_extension/utils.py`` and wrap
    ``_load_lib`` so that a library that *exists but cannot be loaded* is treated the
    same as an absent one. Where the libraries do load (a matching torch/torchaudio
    pair, a CUDA machine) the wrapper changes nothing. No installed file is touched.
    """
    utils_path = _torchaudio_utils_path()
    if utils_path is None:
        return
    name = "torchaudio._extension.utils"
    utils_spec = importlib.util.spec_from_file_location(name, utils_path)
    if utils_spec is None or utils_spec.loader is None:
        return
    module = importlib.util.module_from_spec(utils_spec)
    try:
        utils_spec.loader.exec_module(module)
    except Exception:  # noqa: BLE001 - anything odd: let the normal import report it
        return
    real_load_lib = getattr(module, "_load_lib", None)
    if real_load_lib is None:
        return

    def _load_lib(lib: str) -> bool:
        try:
            return real_load_lib(lib)
        except OSError:  # e.g. a CUDA build of the library next to a CPU-only torch
            return False

    module._load_lib = _load_lib
    # ``torchaudio._extension`` does ``from .utils import _load_lib``: the import system
    # finds this already-loaded submodule in sys.modules and uses the wrapper.
    sys.modules[name] = module


def _import_pipeline_class():
    """Import ``pyannote.audio.Pipeline`` on a CPU-only torch (see the shim above)."""
    _bypass_unloadable_torchaudio_libs()
    with warnings.catch_warnings():
        # pyannote warns at import when torchcodec (file decoding) cannot load; this
        # backend never asks pyannote to decode: audio is passed in memory.
        warnings.filterwarnings("ignore", message=r"(?s).*torchcodec is not installed correctly")
        from pyannote.audio import Pipeline  # noqa: PLC0415 - optional, heavy dependency
    return Pipeline


class PyannoteDiarizer:
    """Diarize with a pyannote.audio pipeline from a local directory or a hub id.

    ``source`` is either a directory holding the pipeline's ``config.yaml`` (offline: the
    hub is never contacted) or a hub id such as ``pyannote/speaker-diarization-3.1``,
    which needs ``token`` (TB_HF_TOKEN) because the pretrained pipelines are gated.
    """

    def __init__(self, source: str | Path, token: str | None = None, device: str = "cpu"):
        self.source = str(source)
        self.token = token or None
        self.device = device
        self._pipeline = None

    @property
    def loaded(self) -> bool:
        return self._pipeline is not None

    def _looks_local(self) -> bool:
        """A path (absolute, relative with ./ or ~, or existing) rather than a hub id."""
        s = self.source
        return s.startswith(("/", "./", "../", "~")) or Path(s).expanduser().exists()

    def _check_source(self) -> bool:
        """True for a local pipeline directory (checked, hub access turned off), False for a
        hub id with a token; DiarizerUnavailable with the exact reason otherwise."""
        if not self._looks_local():
            if not self.token:
                raise DiarizerUnavailable(
                    f"hub pipeline {self.source!r} needs TB_HF_TOKEN (a Hugging Face token that has "
                    "accepted the model's conditions), or set the pipeline to a local directory"
                )
            return False
        path = Path(self.source).expanduser()
        if not path.is_dir():
            raise DiarizerUnavailable(f"pyannote pipeline directory {path} does not exist")
        if not (path / "config.yaml").is_file():
            raise DiarizerUnavailable(f"pyannote pipeline directory {path} has no config.yaml")
        os.environ["HF_HUB_OFFLINE"] = "1"
        return True

    def load(self) -> None:
        if self.loaded:
            return
        # Never phone home from a clinical service: pyannote's usage telemetry is off.
        os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
        local = self._check_source()
        try:
            Pipeline = _import_pipeline_class()  # noqa: N806
        except ImportError as exc:
            raise DiarizerUnavailable(
                f"pyannote.audio is not installed: pip install -e .[pyannote] ({exc})"
            ) from exc
        except OSError as exc:  # a compiled library (torch/torchaudio/torchcodec) will not load
            raise DiarizerUnavailable(
                f"pyannote.audio is installed but cannot be imported here ({exc}); install "
                "torch==2.13.0 first, then pip install -e .[pyannote]"
            ) from exc
        try:
            source = str(Path(self.source).expanduser()) if local else self.source
            try:
                pipeline = Pipeline.from_pretrained(source, token=self.token)
            except TypeError:  # pyannote.audio < 4 names the argument use_auth_token
                pipeline = Pipeline.from_pretrained(source, use_auth_token=self.token)
        except DiarizerUnavailable:
            raise
        except Exception as exc:  # hub errors, bad yaml, missing checkpoints, ...
            raise DiarizerUnavailable(
                f"could not load pyannote pipeline {self.source!r}: {type(exc).__name__}: {exc}"
            ) from exc
        if pipeline is None:  # older versions return None on gated/unauthorised models
            raise DiarizerUnavailable(
                f"pyannote pipeline {self.source!r} could not be loaded (gated model: check that "
                "the token has accepted its user conditions)"
            )
        if self.device != "cpu":
            import torch

            pipeline.to(torch.device(self.device))
        self._pipeline = pipeline

    def diarize(
        self,
        audio: np.ndarray,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        progress: Callable[[float, str], None] | None = None,
    ) -> DiarizationResult:
        """Diarize float32 mono 16 kHz audio; overlaps keep every pyannote turn."""
        if not self.loaded:
            raise DiarizationError("diarizer not loaded: call load() first")
        import torch

        report = progress or (lambda f, m: None)
        report(0.0, "diarizing (pyannote)")
        waveform = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).unsqueeze(0)
        kwargs = {}
        if num_speakers:
            kwargs["num_speakers"] = int(num_speakers)
        else:
            if min_speakers:
                kwargs["min_speakers"] = int(min_speakers)
            if max_speakers:
                kwargs["max_speakers"] = int(max_speakers)
        output = self._pipeline({"waveform": waveform, "sample_rate": SAMPLE_RATE}, **kwargs)
        # pyannote.audio 4 returns an object with .speaker_diarization; 3.x an Annotation.
        annotation = getattr(output, "speaker_diarization", output)
        # pyannote pads the last segmentation window past the end of the audio and can
        # return turns that run into that padding: clip every turn to the recording.
        duration = len(audio) / SAMPLE_RATE
        raw = [
            (max(0.0, seg.start), min(seg.end, duration), label)
            for seg, _, label in annotation.itertracks(yield_label=True)
        ]
        ids: dict[str, int] = {}
        turns = [(s, e, ids.setdefault(lbl, len(ids))) for s, e, lbl in raw if e > s]
        out = relabel_by_first_appearance(turns)
        report(1.0, "diarization done")
        return DiarizationResult(turns=out, speaker_count=len({t.speaker for t in out}))
