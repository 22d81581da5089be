"""Shared helpers: result metadata, load sampling, fresh-child measurements, WER/DER."""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
RESULTS = ROOT / "bench" / "results"
JFK_TEXT = (
    "And so, my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)

if str(ROOT) not in sys.path:  # tests/ is not a package on sys.path by default
    sys.path.insert(0, str(ROOT))


# --------------------------------------------------------------------------- metadata
def git_commit() -> dict[str, Any]:
    """HEAD and whether the checkout has local changes (read-only git calls)."""
    out: dict[str, Any] = {"commit": None, "dirty": None}
    try:
        out["commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip() or None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT, capture_output=True, text=True, timeout=20,
        ).stdout
        out["dirty"] = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def machine() -> dict[str, Any]:
    import platform

    import psutil

    return {
        "cpu_count": os.cpu_count(),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "memory_total_mb": round(psutil.virtual_memory().total / 2**20),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def envelope(name: str, parameters: dict, started: float) -> dict[str, Any]:
    return {
        "benchmark": name,
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_s": round(time.time() - started, 1),
        "git": git_commit(),
        "machine": machine(),
        "parameters": parameters,
    }


def write_json(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    tmp.replace(path)
    return path


def _jsonable(x):
    try:
        import numpy as np

        if isinstance(x, np.generic):
            return x.item()
        if isinstance(x, np.ndarray):
            return x.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x)}")


# --------------------------------------------------------------------------- load
class LoadSampler:
    """Machine load during a measurement: load average before/after and the mean
    system-wide CPU busy % sampled every ``interval_s`` (other people's jobs share the box)."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self._samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.before: list[float] = []
        self.after: list[float] = []

    def __enter__(self) -> "LoadSampler":
        import psutil

        self.before = [round(x, 2) for x in os.getloadavg()]
        psutil.cpu_percent(None)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        import psutil

        while not self._stop.wait(self.interval_s):
            self._samples.append(psutil.cpu_percent(None))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.after = [round(x, 2) for x in os.getloadavg()]

    def summary(self) -> dict[str, Any]:
        return {
            "loadavg_before": self.before,
            "loadavg_after": self.after,
            "cpu_busy_pct_mean": round(statistics.fmean(self._samples), 1) if self._samples else None,
            "cpu_busy_pct_samples": len(self._samples),
        }


# --------------------------------------------------------------------------- children
def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("PYANNOTE_METRICS_ENABLED", "false")
    return env


def run_child(task: str, params: dict, timeout_s: float = 3600) -> dict[str, Any]:
    """Run ``bench.worker <task>`` in a fresh Python process and return its JSON result,
    with the machine load sampled while it ran. Peak memory is the child's own
    VmHWM (not ru_maxrss, which inherits this parent's peak), so each measurement starts
    from an empty process."""
    with tempfile.TemporaryDirectory(prefix="tb-bench-") as td:
        out = Path(td) / "result.json"
        cmd = [sys.executable, "-m", "bench.worker", task, json.dumps(params), str(out)]
        t0 = time.perf_counter()
        with LoadSampler() as load:
            proc = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=timeout_s)
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"bench.worker {task} failed (rc={proc.returncode}):\n{proc.stderr[-3000:]}")
        result = json.loads(out.read_text())
    result["child_wall_s"] = round(wall, 2)
    result["load"] = load.summary()
    return result


# --------------------------------------------------------------------------- quality
def normalise_text(text: str) -> str:
    """Lowercase, punctuation stripped (apostrophes kept inside words), single spaces."""
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    text = re.sub(r"(?<![a-z0-9])'|'(?![a-z0-9])", " ", text)
    return " ".join(text.split())


def wer(reference: str, hypothesis: str) -> float:
    import jiwer

    return float(jiwer.wer(normalise_text(reference), normalise_text(hypothesis)))


def annotation(turns):
    from pyannote.core import Annotation, Segment

    ann = Annotation()
    for t in turns:
        if isinstance(t, dict):
            start, end, spk = t["start"], t["end"], t["speaker"]
        elif hasattr(t, "speaker"):
            start, end, spk = t.start, t.end, t.speaker
        else:
            start, end, spk = t
        if end > start:
            ann[Segment(float(start), float(end))] = str(spk)
    return ann


def der(reference, hypothesis, uem=None, collar: float = 0.25) -> dict[str, float]:
    """DER and its components (pyannote.metrics, overlap scored)."""
    from pyannote.metrics.diarization import DiarizationErrorRate

    import warnings

    metric = DiarizationErrorRate(collar=collar, skip_overlap=False)
    with warnings.catch_warnings():
        # Without a UEM the scored region is the union of both extents (expected here).
        warnings.filterwarnings("ignore", message="'uem' was approximated")
        comp = metric(annotation(reference), annotation(hypothesis), uem=uem, detailed=True)
    total = comp["total"] or 1.0
    return {
        "der": round(float(comp["diarization error rate"]), 4),
        "missed": round(comp["missed detection"] / total, 4),
        "false_alarm": round(comp["false alarm"] / total, 4),
        "confusion": round(comp["confusion"] / total, 4),
        "scored_s": round(float(comp["total"]), 2),
    }


def read_uem(path: Path) -> dict:
    from pyannote.core import Segment, Timeline

    out: dict = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4:
            out.setdefault(parts[0], []).append(Segment(float(parts[2]), float(parts[3])))
    return {uri: Timeline(segs) for uri, segs in out.items()}


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def wait_ready(client, tries: int = 240, pause_s: float = 0.5) -> bool:
    """Poll the gateway's /readyz (an httpx.Client on its base URL) until it answers 200."""
    import httpx

    for _ in range(tries):
        try:
            if client.get("/readyz").status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(pause_s)
    return False


def percentile(xs: list[float], q: float) -> float:
    """The q-quantile of xs (0 <= q <= 1), linear between the two nearest ranks."""
    s = sorted(xs)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)
