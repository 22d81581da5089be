"""Risk flags and notes through the WHOLE system, from audio: a labelled clinical session set
(``session_*.json`` in the blind schema: tests/data/blind_clinical, /work/blind/clinical2)
is synthesised with one espeak-ng voice per speaker (tests/audio_gen.py), uploaded over
HTTP to a running stack (gateway, transcriber, diarizer, joiner, notes, progress: each its
own process, a fresh database and a local Tansu broker), transcribed, diarized, joined and
turned into offline notes; the notes' risk flags and plan items are then scored against
the labels exactly as bench/risk_blind.py and bench/notes_blind.py score the text level.

Mapping evidence to labelled lines: the generator knows when each scripted line is spoken
(its audio start/end), so a flag's evidence times and an item's evidence time are mapped to
script lines by time, not by text (the ASR's wording may differ). "Invented" items are those
whose evidence quote is not verbatim in the SYSTEM's transcript.

Sessions go shortest first and are uploaded two at a time (transcriber and diarizer work on different sessions
in parallel); results are written after every finished session, so a run stopped early
still reports what it measured (``completed`` in the JSON).

Run: .venv/bin/python -m bench.clinical_system DIR [name] [--limit N] [--seed-offset K]
     -> bench/results/system_<name>.json
With TB_BENCH_DUMP_DIR set, each session's full API detail (the system's transcript, speakers,
roles and notes) is also written there as <id>.json, to read a miss line by line. It holds
transcript text: keep it out of the repo.
The generator's seed (gaps, loudness, noise floor) is the session's rank plus ``--seed-offset``:
the same scripts under another offset measure how much of a figure is the draw of the audio.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import time
import uuid
from pathlib import Path

import httpx

from bench import notes_blind, risk_blind
from bench.common import wait_ready
from shared.contracts.notes import ClinicalNotes, RiskFlag

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
IN_FLIGHT = 2
SESSION_TIMEOUT_S = 3 * 3600


class _Line:
    """A scripted line with its audio times (what the scorers need of a segment)."""

    def __init__(self, start: float, end: float, text: str) -> None:
        self.start, self.end, self.text = start, end, text


def synthesise(session: dict, seed: int):
    from tests.audio_gen import generate_dialogue

    turns = [(ln["speaker"], ln["text"]) for ln in session["lines"]]
    return generate_dialogue(turns, seed=seed, uri=session["id"])


def _labels(path: Path) -> dict:
    raw = json.loads(path.read_text())
    risk = risk_blind.load_blind(path.parent)
    notes = notes_blind.load_blind(path.parent)
    rid = {s["id"]: s for s in risk}
    nid = {s["id"]: s for s in notes}
    return {"raw": raw, "risk": rid[raw["id"]], "notes": nid[raw["id"]]}


def labels_in_run_order(folder: Path) -> list[dict]:
    """The set's labelled sessions, shortest first: on a loaded machine a run cut short still
    measures as many sessions as possible. A session's rank here is its audio seed."""
    labels = (_labels(p) for p in sorted(folder.glob("session_*.json")))
    return sorted(labels, key=lambda lab: sum(len(ln["text"].split()) for ln in lab["raw"]["lines"]))


def score(labels: dict, gen, detail: dict) -> dict:
    lines = [_Line(ln.start, ln.end, ln.text) for ln in gen.lines]
    notes_json = detail.get("extracted_notes") or {}
    flags = [RiskFlag.model_validate(f) for f in notes_json.get("risk_flags", [])]
    risk = risk_blind.score_session(labels["risk"], flags, lines)
    notes = ClinicalNotes.model_validate(notes_json) if notes_json else None
    transcript = detail.get("transcript_text") or ""
    plan = notes_blind.score_notes(labels["notes"], notes, lines, transcript) if notes else None
    return {"id": labels["raw"]["id"], "status": detail.get("status"), "duration_s": round(gen.duration_s, 1),
            "speakers_labelled": len({ln["speaker"] for ln in labels["raw"]["lines"]}),
            "speakers_found": len(detail.get("speakers") or []), "notes_engine": detail.get("notes_engine"),
            "notes_error": detail.get("notes_error"), "risk": risk, "notes": plan}


def _start(env: dict[str, str]):
    from devtools.localbroker import free_port, wait_for_port
    from devtools.stack import Stack, available_services, prepare
    from shared.settings import Settings

    db_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/tb_bench_{uuid.uuid4().hex[:8]}"
    blob_dir = Path(f"/tmp/tb-bench-clinical-{uuid.uuid4().hex[:8]}")
    blob_dir.mkdir(parents=True)
    secret = secrets.token_urlsafe(48)
    settings = Settings(database_url=db_url, kafka_bootstrap_servers="", blob_dir=blob_dir, jwt_secret=secret)
    base_env, broker = asyncio.run(prepare(settings))
    port = free_port()
    env = {**env, **base_env, "TB_JWT_SECRET": secret, "TB_GATEWAY_PORT": str(port), "TB_CREATE_DEMO_USER": "true",
           "TB_LOG_FORMAT": "json", "HF_HUB_OFFLINE": "1", "TB_LLM_BASE_URL": "",
           "TB_JOIN_DIARIZATION_DEADLINE_S": str(SESSION_TIMEOUT_S)}
    log_dir = ROOT / "test-artifacts" / "bench-clinical"
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(env=env, log_dir=log_dir, echo=False)
    for name in available_services():
        stack.start_service(name)
    wait_for_port("127.0.0.1", port, timeout_s=180)
    return stack, broker, settings, f"http://127.0.0.1:{port}", db_url


def _login(client: httpx.Client, settings) -> dict:
    wait_ready(client)
    r = client.post("/api/auth/token", data={"username": settings.demo_email, "password": settings.demo_password})
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _done(detail: dict) -> bool:
    return bool(detail.get("extracted_notes") or detail.get("notes_error") or detail.get("status") == "failed")


def run(folder: Path, name: str, limit: int | None = None, seed_offset: int = 0) -> dict:
    labels = labels_in_run_order(folder)[:limit]
    t0 = time.monotonic()
    synth_s = 0.0
    stack, broker, settings, base_url, db_url = _start(dict(os.environ))
    out = RESULTS / f"system_{name}.json"
    per: list[dict] = []
    try:
        with httpx.Client(base_url=base_url, timeout=120) as client:
            headers = _login(client, settings)
            pending = list(enumerate(labels))  # synthesised just before upload: a cut-short run wastes none
            flying: dict[str, tuple] = {}
            started: dict[str, float] = {}
            while pending or flying:
                while pending and len(flying) < IN_FLIGHT:
                    seed, lab = pending.pop(0)
                    t_syn = time.monotonic()
                    gen = synthesise(lab["raw"], seed=seed_offset + seed)
                    synth_s += time.monotonic() - t_syn
                    n = len({ln["speaker"] for ln in lab["raw"]["lines"]})
                    with open(gen.wav, "rb") as fh:
                        r = client.post("/api/sessions/upload", headers=headers, data={"num_speakers": str(n), "notes_backend": "offline"},
                                        files={"file": (f"{lab['raw']['id']}.wav", fh, "audio/wav")})
                    r.raise_for_status()
                    flying[r.json()["id"]] = (lab, gen)
                    started[r.json()["id"]] = time.monotonic()
                time.sleep(3)
                for sid in list(flying):
                    try:
                        r = client.get(f"/api/sessions/{sid}", headers=headers)
                        if r.status_code == 401:  # the access token expired during a long run: sign in again
                            headers = _login(client, settings)
                            continue
                        r.raise_for_status()
                        detail = r.json()
                    except httpx.HTTPError:  # a busy gateway dropped the poll: ask again next round
                        continue
                    if _done(detail) or time.monotonic() - started[sid] > SESSION_TIMEOUT_S:
                        lab, gen = flying.pop(sid)
                        row = score(lab, gen, detail)
                        row["wall_s"] = round(time.monotonic() - started[sid], 1)
                        _dump(row["id"], detail)
                        per.append(row)
                        _write(out, folder, name, per, len(labels), synth_s, t0, seed_offset)
                        print(f"[system] {row['id']}: {row['status']} in {row['wall_s']}s; "
                              f"{len(per)}/{len(labels)} done", flush=True)
    finally:
        stack.stop_all()
        if broker:
            broker.stop()
        from shared.db.bootstrap import drop_database

        asyncio.run(drop_database(db_url))
    return json.loads(out.read_text())


def _dump(session_id: str, detail: dict) -> None:
    folder = os.environ.get("TB_BENCH_DUMP_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{session_id}.json").write_text(json.dumps(detail, indent=1, default=str))


def _write(out: Path, folder: Path, name: str, per: list[dict], total: int, synth_s: float, t0: float,
           seed_offset: int) -> None:
    risk = risk_blind.summarise([p["risk"] for p in per])
    plan = notes_blind.summarise([p["notes"] for p in per if p["notes"]])
    result = {
        "name": name, "set": str(folder), "level": "system: espeak-ng audio -> upload -> transcription -> "
        "diarization -> join -> offline notes (risk safety net with its semantic layer)",
        "seed_offset": seed_offset, "completed": len(per), "sessions_in_set": total, "synthesis_s": round(synth_s, 1),
        "wall_s": round(time.monotonic() - t0, 1), "risk": risk, "notes": plan,
        "failed_or_no_notes": [p["id"] for p in per if not p["notes"]], "sessions": per,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")


def _option(argv: list[str], flag: str) -> tuple[int | None, list[str]]:
    if flag not in argv:
        return None, argv
    i = argv.index(flag)
    return int(argv[i + 1]), argv[:i] + argv[i + 2:]


def main(argv: list[str]) -> None:
    limit, argv = _option(argv, "--limit")
    seed_offset, argv = _option(argv, "--seed-offset")
    folder = Path(argv[0])
    name = argv[1] if len(argv) > 1 else folder.name
    result = run(folder, name, limit, seed_offset or 0)
    print(json.dumps({"completed": result["completed"], "risk": result["risk"], "notes": result["notes"]}, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
