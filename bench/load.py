"""Load: N uploads at once through the whole stack (issue 12, item 5).

Starts the stack as `make run` does (a fresh PostgreSQL database + migrations, a local
Tansu broker, every service as its own OS process, TB_ENV=development, a random JWT
secret), signs in as the demo therapist and uploads ``--uploads`` recordings of
``--min-minutes``..``--max-minutes`` concurrently (one thread per upload). Recordings are
real speech: the public AMI meeting excerpts in tests/data (ami_train/*.wav, ami_dev*.wav)
concatenated and looped from a different starting file per recording, written as 16 kHz
16-bit PCM WAV. While they process: GET /api/sessions sequentially and continuously
(latencies), every service's RSS (psutil, process + children) once a second. Ends when
every session is processed or failed (or ``--timeout-s``); the stack is stopped in every
case.

``python -m bench.load [--uploads 20 --min-minutes 2 --max-minutes 10]`` or
``python -m bench.run --only load`` -> bench/results/load.json, .png
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.common import DATA, LoadSampler, RESULTS, envelope, percentile, wait_ready, write_json

NAME = "load"
DEMO = ("demo@therapybridge.local", "demo-password")
DEFAULTS = {"uploads": 20, "min_minutes": 2.0, "max_minutes": 10.0, "timeout_s": 3600.0, "seed": 12}


def _stats(xs: list[float]) -> dict:
    if not xs:
        return {"n": 0}
    return {"n": len(xs), "p50": round(percentile(xs, 0.5), 1), "p95": round(percentile(xs, 0.95), 1),
            "p99": round(percentile(xs, 0.99), 1), "max": round(max(xs), 1), "mean": round(statistics.fmean(xs), 1)}


# --------------------------------------------------------------------------- recordings
def make_recordings(out_dir: Path, n: int, min_min: float, max_min: float, seed: int) -> list[tuple[Path, float]]:
    import numpy as np
    import soundfile as sf

    sources = sorted((DATA / "ami_train").glob("*.wav")) + sorted(DATA.glob("ami_dev*.wav"))
    clips = []
    for path in sources:
        audio, sr = sf.read(path, dtype="float32", always_2d=True)
        assert sr == 16000, (path, sr)
        clips.append(audio.mean(axis=1))
    rng = random.Random(seed)
    durations = [min_min + (max_min - min_min) * (i / max(1, n - 1)) for i in range(n)]
    rng.shuffle(durations)
    out = []
    for i, minutes in enumerate(durations):
        want = int(minutes * 60 * 16000)
        parts, have, k = [], 0, i
        while have < want:
            clip = clips[k % len(clips)]
            parts.append(clip[: want - have])
            have += len(parts[-1])
            k += 1
        path = out_dir / f"load_{i:02d}_{minutes:.1f}min.wav"
        sf.write(path, np.concatenate(parts), 16000, subtype="PCM_16")
        out.append((path, round(want / 16000, 1)))
    return out


# --------------------------------------------------------------------------- stack
class RunningStack:
    """Database + broker + every service, as devtools.stack.main does; always torn down."""

    def __init__(self, work: Path, env: dict[str, str] | None = None, replicas: dict[str, int] | None = None) -> None:
        self.work = work
        self.extra_env, self.replicas = dict(env or {}), dict(replicas or {})  # e.g. {"transcriber": 2}
        self.stack = None
        self.broker = None
        self.database_url = None
        self.base_url = None

    def __enter__(self) -> "RunningStack":
        from devtools.localbroker import free_port, wait_for_port
        from devtools.stack import Stack, available_services, prepare
        from shared.settings import Settings

        base = (os.environ.get("TB_DATABASE_URL") or os.environ.get("DATABASE_URL")
                or "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres").rsplit("/", 1)[0]
        self.database_url = f"{base}/tb_bench_load_{uuid.uuid4().hex[:8]}"
        jwt_secret = secrets.token_urlsafe(48)
        port = free_port()
        blob_dir = self.work / "blobs"
        blob_dir.mkdir()
        settings = Settings(database_url=self.database_url, blob_dir=blob_dir, jwt_secret=jwt_secret,
                            kafka_bootstrap_servers="")
        try:
            partitions = max([settings.kafka_topic_partitions, *self.replicas.values()])
            env, self.broker = asyncio.run(prepare(settings, broker_log=self.work / "broker.log", partitions=partitions))
            env.update({"TB_JWT_SECRET": jwt_secret, "TB_ENV": "development", "TB_CREATE_DEMO_USER": "true",
                        "TB_LOG_FORMAT": "json", "TB_GATEWAY_PORT": str(port), "TB_GATEWAY_HOST": "127.0.0.1",
                        "HF_HUB_OFFLINE": "1", "PYANNOTE_METRICS_ENABLED": "false", **self.extra_env})
            self.stack = Stack(env=env, log_dir=self.work / "logs", echo=False)
            for name in available_services():
                n = self.replicas.get(name, 1)
                for i in range(1, n + 1):
                    self.stack.start_service(name, name if n == 1 else f"{name}-{i}")
            wait_for_port("127.0.0.1", port, timeout_s=120)
            self.base_url = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=self.base_url, timeout=10) as client:
                wait_ready(client)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def pids(self) -> dict[str, int]:
        out = {label: proc.pid for label, proc in list(self.stack.processes.items()) if proc.poll() is None}
        proc = getattr(self.broker, "process", None)
        if proc is not None and proc.poll() is None:
            out["broker (tansu)"] = proc.pid
        return out

    def __exit__(self, *exc) -> None:
        from shared.db.bootstrap import drop_database

        if self.stack is not None:
            self.stack.stop_all()
        if self.broker is not None:
            self.broker.stop()
        try:
            asyncio.run(drop_database(self.database_url))
        except Exception as err:  # noqa: BLE001 - teardown must go on
            print(f"  [load] dropping the database failed: {type(err).__name__}", flush=True)


class MemorySampler:
    """RSS per service (the process plus all its children) every ``interval_s``."""

    def __init__(self, running: RunningStack, interval_s: float = 1.0) -> None:
        self.running = running
        self.interval_s = interval_s
        self.t0 = time.monotonic()
        self.series: dict[str, list[tuple[float, float]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        import psutil

        t = round(time.monotonic() - self.t0, 1)
        for label, pid in self.running.pids().items():
            try:
                proc = psutil.Process(pid)
                rss = proc.memory_info().rss
                for child in proc.children(recursive=True):
                    try:
                        rss += child.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                continue
            self.series.setdefault(label, []).append((t, round(rss / 2**20, 1)))

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def peaks(self) -> dict[str, float]:
        return {label: max(v for _, v in s) for label, s in self.series.items()}


# --------------------------------------------------------------------------- the run
def _login(client: httpx.Client) -> dict:
    response = client.post("/api/auth/token", data={"username": DEMO[0], "password": DEMO[1]})
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _relogin(client: httpx.Client, headers: dict) -> None:
    """The access token lives 15 minutes and a full run is longer: sign in again in place
    (a 401 is never counted as a latency sample)."""
    headers.update(_login(client))


def _upload(base_url: str, headers: dict, path: Path) -> dict:
    t0 = time.monotonic()
    try:
        with httpx.Client(base_url=base_url, timeout=600) as client, open(path, "rb") as fh:
            response = client.post("/api/sessions/upload", headers=headers,
                                   files={"file": (path.name, fh, "audio/wav")})
        ok = response.status_code in (200, 201, 202)
        return {"file": path.name, "status_code": response.status_code, "upload_s": round(time.monotonic() - t0, 2),
                "id": response.json().get("id") if ok else None,
                "error": None if ok else response.text[:200]}
    except httpx.HTTPError as err:
        return {"file": path.name, "status_code": None, "upload_s": round(time.monotonic() - t0, 2), "id": None,
                "error": type(err).__name__}


def _poll_list(base_url: str, headers: dict, stop: threading.Event, t0: float, out: list) -> None:
    with httpx.Client(base_url=base_url, timeout=60) as client:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                code = client.get("/api/sessions", headers=headers).status_code
            except httpx.HTTPError:
                code = None
            if code == 401:
                _relogin(client, headers)
                continue
            out.append((round(time.monotonic() - t0, 2), round((time.perf_counter() - started) * 1000, 2), code))


def _wait_all(base_url: str, headers: dict, uploads: list[dict], deadline: float, t0: float) -> None:
    pending = {u["id"]: u for u in uploads if u["id"]}
    with httpx.Client(base_url=base_url, timeout=60) as client:
        while pending and time.monotonic() < deadline:
            for sid, u in list(pending.items()):
                try:
                    response = client.get(f"/api/sessions/{sid}", headers=headers)
                    if response.status_code == 401:
                        _relogin(client, headers)
                        continue
                    detail = response.json()
                except (httpx.HTTPError, ValueError):
                    continue
                if detail.get("status") in ("processed", "failed"):
                    u["final_status"] = detail["status"]
                    u["error"] = detail.get("error")
                    u["done_at_s"] = round(time.monotonic() - t0, 1)
                    print(f"  [load] {u['file']}: {detail['status']} at {u['done_at_s']} s", flush=True)
                    pending.pop(sid)
            time.sleep(2)
    for u in pending.values():
        u["final_status"] = "timeout"


def measure(params: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="tb-bench-load-") as td:
        work = Path(td)
        (work / "audio").mkdir()
        recordings = make_recordings(work / "audio", params["uploads"], params["min_minutes"],
                                     params["max_minutes"], params["seed"])
        audio_total = sum(d for _, d in recordings)
        print(f"  [load] {len(recordings)} recordings, {audio_total / 60:.1f} min of audio; starting the stack",
              flush=True)
        with RunningStack(work) as running, MemorySampler(running) as mem:
            with httpx.Client(base_url=running.base_url, timeout=30) as client:
                headers = _login(client)
            stop = threading.Event()
            t0 = time.monotonic()
            latencies: list = []
            idle: list = []
            _poll_list_n(running.base_url, headers, 50, idle)  # before any upload: the baseline
            poller = threading.Thread(target=_poll_list, args=(running.base_url, dict(headers), stop, t0, latencies),
                                      daemon=True)
            poller.start()
            upload_t = round(time.monotonic() - t0, 1)
            with ThreadPoolExecutor(max_workers=len(recordings)) as pool:
                uploads = list(pool.map(lambda r: _upload(running.base_url, headers, r[0]), recordings))
            for u, (_, dur) in zip(uploads, recordings):
                u["audio_s"] = dur
                if not u["id"]:
                    u["final_status"] = "upload_failed"
            print(f"  [load] uploaded: {sum(1 for u in uploads if u['id'])}/{len(uploads)} accepted "
                  f"(slowest {max(u['upload_s'] for u in uploads)} s)", flush=True)
            _wait_all(running.base_url, dict(headers), uploads, t0 + params["timeout_s"], t0)
            wall = round(time.monotonic() - t0 - upload_t, 1)
            stop.set()
            poller.join(timeout=70)
            crashes = list(running.stack.crashes)
        # Session errors are pipeline reasons, not transcript text; ids are random UUIDs.
        for u in uploads:
            u.pop("id", None)
    lat = [ms for _, ms, code in latencies if code == 200]
    errors = sum(1 for *_, code in latencies if code != 200)
    return {
        "recordings": "real speech: AMI meeting excerpts from tests/data looped to length",
        "audio_total_min": round(audio_total / 60, 1),
        "wall_s_from_upload_to_last_done": wall,
        "processed": sum(1 for u in uploads if u.get("final_status") == "processed"),
        "failed": sum(1 for u in uploads if u.get("final_status") != "processed"),
        "sessions": uploads,
        "list_latency_idle_ms": _stats([ms for _, ms, _ in idle]),
        "list_latency_under_load_ms": _stats(lat),
        "list_non_200": errors,
        "list_latency_series": [[t, ms] for t, ms, code in latencies if code == 200],
        "peak_rss_mb": mem.peaks(),
        "rss_series_mb": mem.series,
        "service_crashes": crashes,
    }


def _poll_list_n(base_url: str, headers: dict, n: int, out: list) -> None:
    with httpx.Client(base_url=base_url, timeout=60) as client:
        for _ in range(n):
            started = time.perf_counter()
            code = client.get("/api/sessions", headers=headers).status_code
            out.append((0.0, round((time.perf_counter() - started) * 1000, 2), code))


def run(quick: bool, **overrides) -> dict:
    params = {**DEFAULTS, **({"uploads": 3, "min_minutes": 1.0, "max_minutes": 1.0} if quick else {}), **overrides}
    started = time.time()
    with LoadSampler() as load:
        results = measure(params)
    results["load"] = load.summary()
    r = results
    print(f"  [load] {r['processed']} processed, {r['failed']} failed in {r['wall_s_from_upload_to_last_done']} s; "
          f"GET /api/sessions p50 {r['list_latency_under_load_ms'].get('p50')} ms, "
          f"p99 {r['list_latency_under_load_ms'].get('p99')} ms; peak RSS MB {r['peak_rss_mb']}", flush=True)
    out = envelope(NAME, {**params, "quick": quick,
                          "client": "httpx; one sequential GET /api/sessions loop in the bench process; "
                                    "uploads from 20 threads at once"}, started)
    out["results"] = results
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = result["results"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    for label, series in sorted(r["rss_series_mb"].items()):
        ax1.plot([t for t, _ in series], [v for _, v in series], label=f"{label} (peak {max(v for _, v in series):.0f})")
    ax1.set_xlabel("s since start")
    ax1.set_ylabel("RSS MB (process + children)")
    p = result["parameters"]
    ax1.set_title(f"{p['uploads']} uploads of {p['min_minutes']:g}-{p['max_minutes']:g} min at once", fontsize=10)
    ax1.legend(fontsize=7)
    lat = [ms for _, ms in r["list_latency_series"]]
    s = r["list_latency_under_load_ms"]
    ax2.hist(lat, bins=60, color="tab:blue")
    for q, style in (("p50", "--"), ("p99", "-")):
        if q in s:
            ax2.axvline(s[q], color="k", linestyle=style, label=f"{q} {s[q]:.0f} ms")
    ax2.axvline(500, color="tab:red", label="500 ms target")
    ax2.set_yscale("log")
    ax2.set_xlabel("GET /api/sessions latency, ms")
    ax2.set_title(f"{s['n']} requests during the run", fontsize=10)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary_rows(result: dict) -> list[list[str]]:
    r = result["results"]
    p = result["parameters"]
    s = r["list_latency_under_load_ms"]
    peaks = ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["peak_rss_mb"].items()))
    return [[f"load: {p['uploads']} uploads at once", f"{p['min_minutes']:g}-{p['max_minutes']:g} min, "
             f"{r['audio_total_min']} min total",
             f"{r['processed']} processed / {r['failed']} failed in {r['wall_s_from_upload_to_last_done']} s; "
             f"GET /api/sessions p50 {s.get('p50')} ms, p99 {s.get('p99')} ms; peak RSS MB: {peaks}",
             f"{r['load']['loadavg_before'][0]}"]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--uploads", type=int, default=DEFAULTS["uploads"])
    ap.add_argument("--min-minutes", type=float, default=DEFAULTS["min_minutes"])
    ap.add_argument("--max-minutes", type=float, default=DEFAULTS["max_minutes"])
    ap.add_argument("--timeout-s", type=float, default=DEFAULTS["timeout_s"])
    ap.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    ap.add_argument("--name", default=NAME, help="result file name (default load -> bench/results/load.json)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
    result = run(False, uploads=args.uploads, min_minutes=args.min_minutes, max_minutes=args.max_minutes,
                 timeout_s=args.timeout_s, seed=args.seed)
    write_json(args.name, result)
    plot(result, RESULTS / f"{args.name}.png")
    print(f"  [load] -> bench/results/{args.name}.json, .png", flush=True)
    return 0 if result["results"]["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
