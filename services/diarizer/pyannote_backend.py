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

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from services.diarizer.diarization import DiarizationError, DiarizationResult, relabel_by_first_appearance

SAMPLE_RATE = 16_000


class DiarizerUnavailable(RuntimeError):
    """The backend cannot run here; ``str(exc)`` is a human-readable reason and remedy."""


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

    def load(self) -> None:
        if self.loaded:
            return
        # Never phone home from a clinical service: pyannote's usage telemetry is off.
        os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
        local = self._looks_local()
        if local:
            path = Path(self.source).expanduser()
            if not path.is_dir():
                raise DiarizerUnavailable(f"pyannote pipeline directory {path} does not exist")
            if not (path / "config.yaml").is_file():
                raise DiarizerUnavailable(f"pyannote pipeline directory {path} has no config.yaml")
            os.environ["HF_HUB_OFFLINE"] = "1"
        elif not self.token:
            raise DiarizerUnavailable(
                f"hub pipeline {self.source!r} needs TB_HF_TOKEN (a Hugging Face token that has "
                "accepted the model's conditions), or set the pipeline to a local directory"
            )
        try:
            from pyannote.audio import Pipeline  # noqa: PLC0415 - optional, heavy dependency
        except ImportError as exc:
            raise DiarizerUnavailable(
                f"pyannote.audio is not installed: pip install -e .[pyannote] ({exc})"
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
        raw = [(seg.start, seg.end, label) for seg, _, label in annotation.itertracks(yield_label=True)]
        ids: dict[str, int] = {}
        turns = [(s, e, ids.setdefault(lbl, len(ids))) for s, e, lbl in raw if e > s]
        out = relabel_by_first_appearance(turns)
        report(1.0, "diarization done")
        return DiarizationResult(turns=out, speaker_count=len({t.speaker for t in out}))
