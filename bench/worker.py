"""One measurement in a fresh process: ``python -m bench.worker TASK PARAMS_JSON OUT_PATH``.

Run by bench.common.run_child so that peak RSS (VmHWM of this process) belongs to one
measurement only. Only the code under test is imported here (no pyannote.metrics, no
matplotlib), so the peak is what a service process would need. Quality metrics are
computed by the parent from the turns/text written to OUT_PATH.
"""

from __future__ import annotations

import json
import resource
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _status_mb(field: str) -> float | None:
    """VmRSS (current) or VmHWM (peak so far) of this process, in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _peak_mb() -> float:
    """Peak resident memory of this process's own address space (VmHWM).

    Not ru_maxrss: at exec Linux carries the old address space's peak (the parent's, after
    fork or vfork) into the new process's ru_maxrss, so a parent or any ancestor with a
    larger peak is what every child reports (one run read 635 MB on every input, 30 s or
    30 minutes; a child of a 600 MB parent reads 600 MB with a VmHWM of 11 MB).
    """
    return _status_mb("VmHWM") or round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _load_transcriber():
    from services.transcriber.transcription import WhisperConfig, WhisperTranscriber

    t = WhisperTranscriber(WhisperConfig())
    t.load()
    return t


def _load_diarizer():
    from services.diarizer.diarization import BuiltinDiarizer, DiarizerConfig

    d = BuiltinDiarizer(DiarizerConfig())
    d.load()
    return d


def _decode(path: str):
    from shared.audio import SAMPLE_RATE, decode_audio

    t0 = time.perf_counter()
    audio = decode_audio(path)
    return audio, len(audio) / SAMPLE_RATE, time.perf_counter() - t0


def _transcript(result) -> dict:
    return {
        "text": " ".join(s.text for s in result.segments),
        "segments": len(result.segments),
        "words": sum(len(s.words) for s in result.segments),
        "language": result.language,
    }


def _turns(result) -> dict:
    return {
        "turns": [{"start": t.start, "end": t.end, "speaker": t.speaker} for t in result.turns],
        "speaker_count": result.speaker_count,
        "stats": result.stats,
    }


def _measure(p: dict, load, run, describe) -> dict:
    """Load a model, decode the input, then time ``run(model, audio)`` for ``reps``
    repetitions (wall and CPU seconds), reporting memory after load and at peak."""
    t0 = time.perf_counter()
    model = load()
    load_s = time.perf_counter() - t0
    rss_loaded = _status_mb("VmRSS")
    audio, audio_s, decode_s = _decode(p["audio"])
    times, cpu = [], []
    result = None
    for _ in range(max(1, int(p.get("reps", 1)))):
        c0, t0 = _cpu_s(), time.perf_counter()
        result = run(model, audio)
        times.append(time.perf_counter() - t0)
        cpu.append(_cpu_s() - c0)
    return {
        "audio_s": audio_s, "load_s": load_s, "decode_s": decode_s,
        "processing_s": times, "cpu_s": cpu,
        "rss_after_load_mb": rss_loaded, "peak_rss_mb": _peak_mb(),
        **describe(result),
    }


def task_transcribe(p: dict) -> dict:
    return _measure(p, _load_transcriber, lambda model, audio: model.transcribe(audio, p.get("language")), _transcript)


def task_transcribe_file(p: dict) -> dict:
    """The service's path for a file: one piece when short, else windows cut at pauses
    (``chunked``: force the chunked path; ``one_piece``: force one piece). Per-chunk
    wall times are recorded from the progress ticks."""
    from services.transcriber.chunking import ChunkPolicy

    tr = _load_transcriber()
    rss_loaded = _status_mb("VmRSS")
    policy = ChunkPolicy(**p.get("policy", {}))
    if p.get("one_piece"):
        policy = ChunkPolicy(one_piece_max_s=1e9)
    ticks: list[float] = []
    c0, t0 = _cpu_s(), time.perf_counter()

    def tick(fraction: float, message: str = "") -> None:
        if not message.startswith("transcribed chunk"):
            return
        ticks.append(time.perf_counter())
        if p.get("progress_path"):  # a long run reports as it goes (memory so far, chunks done)
            Path(p["progress_path"]).write_text(json.dumps({
                "message": message, "elapsed_s": round(ticks[-1] - t0, 1), "peak_rss_mb": _peak_mb(),
                "rss_mb": _status_mb("VmRSS"), "chunk_s": [round(b - a, 2) for a, b in zip([t0, *ticks], ticks)]}))

    result = tr.transcribe_file(p["audio"], policy, p.get("language"), tick)
    wall = time.perf_counter() - t0
    chunk_s = [b - a for a, b in zip([t0, *ticks], ticks)]
    return {"audio_s": result.duration_s, "processing_s": [wall], "cpu_s": [_cpu_s() - c0],
            "rss_after_load_mb": rss_loaded, "peak_rss_mb": _peak_mb(), "chunk_s": chunk_s,
            **_transcript(result)}


def task_split_file(p: dict) -> dict:
    """The fan-out splitter alone on a file: level profile, chunk plan, each chunk's 16-bit
    PCM written to a throw-away local blob store (what a replica does before chunks go out)."""
    import tempfile

    from services.transcriber.chunking import ChunkPolicy
    from services.transcriber.handlers import splitter
    from shared.blobstore import LocalBlobStore

    class Blobs(LocalBlobStore):  # the recording is already a local file: no copy
        def with_local_copy(self, uri, fn, *args):
            return fn(uri, *args)

    with tempfile.TemporaryDirectory(prefix="tb-split-") as td:
        c0, t0 = _cpu_s(), time.perf_counter()
        chunks, _ = splitter(Blobs(Path(td)), ChunkPolicy())(p["audio"], "00000000-0000-0000-0000-000000000000")
        wall = time.perf_counter() - t0
    return {"processing_s": [wall], "cpu_s": [_cpu_s() - c0], "peak_rss_mb": _peak_mb(),
            "chunks": len(chunks), "chunk_lengths_s": [round(c.cut_end - c.cut_start, 1) for c in chunks]}


def task_diarize(p: dict) -> dict:
    return _measure(p, _load_diarizer, lambda model, audio: model.diarize(audio, num_speakers=p.get("num_speakers")),
                    _turns)


def task_pipeline_seq(p: dict) -> dict:
    """Both stages one after the other in one process (models loaded beforehand)."""
    tr, di = _load_transcriber(), _load_diarizer()
    audio, audio_s, _ = _decode(p["audio"])
    c0, t0 = _cpu_s(), time.perf_counter()
    tres = tr.transcribe(audio)
    t1 = time.perf_counter()
    dres = di.diarize(audio)
    t2 = time.perf_counter()
    return {
        "mode": "sequential", "audio_s": audio_s,
        "wall_s": t2 - t0, "transcribe_s": t1 - t0, "diarize_s": t2 - t1,
        "cpu_s": _cpu_s() - c0, "peak_rss_mb": _peak_mb(),
        "speaker_count": dres.speaker_count, "words": _transcript(tres)["words"],
    }


def task_pipeline_threads(p: dict) -> dict:
    """Both stages at once on two threads of one process (models loaded beforehand)."""
    tr, di = _load_transcriber(), _load_diarizer()
    audio, audio_s, _ = _decode(p["audio"])
    spans: dict[str, tuple[float, float]] = {}
    out: dict = {}

    def run(name, fn):
        s = time.perf_counter()
        out[name] = fn(audio)
        spans[name] = (s, time.perf_counter())

    threads = [
        threading.Thread(target=run, args=("transcribe", tr.transcribe)),
        threading.Thread(target=run, args=("diarize", di.diarize)),
    ]
    c0, t0 = _cpu_s(), time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    t1 = time.perf_counter()
    return {
        "mode": "threads", "audio_s": audio_s, "wall_s": t1 - t0,
        "transcribe_s": spans["transcribe"][1] - spans["transcribe"][0],
        "diarize_s": spans["diarize"][1] - spans["diarize"][0],
        "cpu_s": _cpu_s() - c0, "peak_rss_mb": _peak_mb(),
        "speaker_count": out["diarize"].speaker_count, "words": _transcript(out["transcribe"])["words"],
    }


def task_stage_wait(p: dict) -> dict:
    """One stage in its own process, as the services run: load, say READY, wait for GO on
    stdin, process. Times are CLOCK_MONOTONIC (shared by all processes on Linux)."""
    stage = p["stage"]
    model = _load_transcriber() if stage == "transcribe" else _load_diarizer()
    audio, audio_s, _ = _decode(p["audio"])
    print("READY", flush=True)
    sys.stdin.readline()
    c0, start = _cpu_s(), time.monotonic()
    if stage == "transcribe":
        res = _transcript(model.transcribe(audio))
    else:
        r = model.diarize(audio)
        res = {"speaker_count": r.speaker_count}
    end = time.monotonic()
    return {"stage": stage, "audio_s": audio_s, "start": start, "end": end,
            "cpu_s": _cpu_s() - c0, "peak_rss_mb": _peak_mb(), **res}


TASKS = {
    "transcribe": task_transcribe,
    "diarize": task_diarize,
    "transcribe_file": task_transcribe_file,
    "split_file": task_split_file,
    "pipeline_seq": task_pipeline_seq,
    "pipeline_threads": task_pipeline_threads,
    "stage_wait": task_stage_wait,
}


def main() -> None:
    task, params, out = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3])
    result = TASKS[task](params)
    result["task"] = task
    out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
