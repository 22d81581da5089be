"""``make chaos``: the fault-injection suite. 20+ sessions of mixed length go through a
private, supervised stack (tests/chaos/harness.py) on a private PostgreSQL cluster and
its own broker while faults are injected one after another: kill -9 of each of the six
services, a broker restart (memory storage: every record lost), a PostgreSQL crash and
restart, an LLM endpoint that is slow / 429s / 500s / drops connections, malformed and
oversized records and a handler that keeps failing (each must reach <topic>.dlq through
the runtime's dispatch), and duplicate storms (one event 10 times). It prints a table
and writes bench/results/chaos.json: sessions started / processed / failed with reason,
duplicate rows, lost events, time to recover per fault.

Not part of `make test` (it is not a pytest module and takes 10-20 minutes)."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import text

from shared.db.engine import create_engine, create_session_factory
from shared.settings import Settings
from tests.chaos.harness import TERMINAL, FaultStack
from tests.chaos.infra import FakeLLM, PrivatePostgres, recordings
from tests.integration.test_faults import send_raw

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "chaos.json"
SOURCES = [ROOT / "samples" / "two_speakers.wav", ROOT / "tests" / "data" / "ami_dev00.wav",
           ROOT / "tests" / "data" / "ami_dev01.wav"]
LENGTHS_S = [10, 30, 15, 45, 20]
SERVICES = ["gateway", "transcriber", "diarizer", "joiner", "notes", "progress"]


async def _scalar(db_url: str, sql: str, **params):
    engine = create_engine(Settings(database_url=db_url, env="development"))
    try:
        async with create_session_factory(engine)() as db:
            return (await db.execute(text(sql), params)).scalar()
    finally:
        await engine.dispose()


def scalar(db_url: str, sql: str, **params):
    return asyncio.run(_scalar(db_url, sql, **params))


class Chaos:
    def __init__(self, sessions: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.n_sessions, self.seed = sessions, seed
        self.sids: list[str] = []
        self.faults: list[dict] = []
        self.dlq_expected: list[dict] = []  # what must be in the DLQ: key, services
        self.upload_retries = 0
        self.t_start = time.monotonic()

    # --- set-up ------------------------------------------------------------------
    def start(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="tb-chaos-"))
        self.pg = PrivatePostgres().start()
        self.llm = FakeLLM().start()
        self.files = recordings(self.tmp / "audio", SOURCES, [LENGTHS_S[i % len(LENGTHS_S)] for i in range(self.n_sessions)])
        base = {"TB_DATABASE_URL": self.pg.url, "TB_JWT_SECRET": secrets.token_urlsafe(48),
                "TB_BLOB_DIR": str(self.tmp / "blobs")}
        extra = {"TB_LLM_BASE_URL": self.llm.base_url, "TB_LLM_RETRY_INITIAL_S": "0.5", "TB_LLM_RETRY_MAX_S": "4",
                 "TB_LLM_TIMEOUT_S": "30"}
        self.fs = FaultStack("chaos", base, extra).start()
        self.progress(f"stack up in {time.monotonic() - self.t_start:.0f} s")

    def stop(self) -> None:
        for step in (lambda: self.fs.stop(drop=False), self.llm.stop, self.pg.stop,
                     lambda: shutil.rmtree(self.tmp, ignore_errors=True)):
            try:
                step()
            except Exception as exc:
                self.progress(f"cleanup step failed: {type(exc).__name__}")

    def progress(self, line: str) -> None:
        print(f"[chaos {time.monotonic() - self.t_start:6.0f} s] {line}", flush=True)

    # --- sessions ------------------------------------------------------------------
    def upload_next(self, count: int) -> None:
        for _ in range(count):
            if len(self.sids) >= self.n_sessions:
                return
            path = self.files[len(self.sids)]
            deadline = time.monotonic() + 180
            while True:
                try:
                    self.sids.append(self.fs.upload(path))
                    break
                except Exception:  # gateway or database restarting: an operator would retry too
                    self.upload_retries += 1
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1)
                    self._relogin()

    def _relogin(self) -> None:
        try:
            self.fs.api.login()
        except Exception:
            pass

    def unfinished(self) -> int:
        if not self.sids:
            return 0
        ids = ",".join(f"'{s}'" for s in self.sids)
        return scalar(self.fs.db_url, f"SELECT count(*) FROM session_status WHERE session_id IN ({ids}) "
                                      "AND status NOT IN ('processed','failed')") or 0

    def progressed_since(self, wall: datetime) -> bool:
        latest = scalar(self.fs.db_url, "SELECT max(updated_at) FROM session_status")
        return latest is not None and latest > wall

    # --- faults ------------------------------------------------------------------------
    def record(self, name: str, started: float, recovered: bool, detail: str = "") -> None:
        recovery = round(time.monotonic() - started, 1) if recovered else None
        self.faults.append({"fault": name, "at_s": round(started - self.t_start, 1), "recovery_s": recovery,
                            "recovered": recovered, "detail": detail})
        self.progress(f"{name}: {'recovered in %.1f s' % recovery if recovered else 'NOT recovered'} {detail}")

    def wait_for(self, check, timeout_s: float = 180.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if check():
                    return True
            except Exception:
                pass
            time.sleep(0.5)
        return False

    def kill(self, label: str) -> None:
        before, started = self.fs.started_count(label), time.monotonic()
        code = self.fs.stack.kill(label)
        # Back means started again: models loaded, partitions assigned (minutes on a loaded machine).
        ok = self.wait_for(lambda: self.fs.started_count(label) > before, 900)
        if ok and label == "gateway":
            ok = self.wait_for(lambda: self.fs.api.client.get("/readyz").status_code == 200)
        self.record(f"kill -9 {label}", started, ok, f"exit {code}")

    def wait_progress_after(self, wall: datetime) -> bool:
        """Recovered: the read model moved after the fault (or nothing was left to move)."""
        return self.wait_for(lambda: self.unfinished() == 0 or self.progressed_since(wall), 240)

    def broker_restart(self) -> None:
        restarts, started, wall = self.fs.supervisor.broker_restarts, time.monotonic(), datetime.now(timezone.utc)
        self.fs.broker.process.kill()
        ok = self.wait_for(lambda: self.fs.supervisor.broker_restarts > restarts, 60) and self.wait_progress_after(wall)
        self.record("broker restart (records lost)", started, ok, f"{self.unfinished()} sessions in flight")

    def postgres_restart(self) -> None:
        started, wall = time.monotonic(), datetime.now(timezone.utc)
        self.pg.restart()
        ok = self.wait_for(lambda: self.fs.api.client.get("/readyz").status_code == 200, 120)
        ok = ok and self.wait_progress_after(wall)
        self.record("postgres crash + restart", started, ok, f"{self.unfinished()} sessions in flight")

    def duplicate_storm(self) -> None:
        started = time.monotonic()
        sid = self.rng.choice(self.sids)
        rows = asyncio.run(_outbox_rows(self.fs.db_url, sid, ["audio.uploaded", "transcript.merged"]))
        for topic, payload, headers in rows:
            for _ in range(10):
                asyncio.run(send_raw(self.fs.bootstrap, topic, payload.encode(), headers, key=sid))
        self.record("duplicate storm (10x)", started, True, f"{len(rows)} events x 10")

    def poison(self) -> None:
        """Malformed, oversized and keeps-failing records: each must reach <topic>.dlq."""
        from tests.chaos.poison import inject

        started = time.monotonic()
        self.dlq_expected += asyncio.run(inject(self.fs.bootstrap))
        self.record("malformed / oversized / failing records", started, True, f"{len(self.dlq_expected)} records")

    def plan(self) -> list:
        faults = [lambda label=label: self.kill(label) for label in SERVICES]
        faults += [self.broker_restart, self.postgres_restart, self.poison]
        self.rng.shuffle(faults)
        faults.insert(self.rng.randrange(2, len(faults)), self.duplicate_storm)
        return faults

    def run(self) -> dict:
        self.start()
        try:
            plan = self.plan()
            per_fault = max(1, -(-self.n_sessions // len(plan)))
            for fault in plan:
                self.upload_next(per_fault)
                time.sleep(self.rng.uniform(3, 12))  # a random moment in the sessions' work
                fault()
            self.upload_next(self.n_sessions)
            self.progress(f"{len(self.sids)} sessions uploaded; waiting for them to finish")
            details = self.fs.wait_finished(self.sids, timeout_s=1800)
            self.wait_for(lambda: scalar(self.fs.db_url, "SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0, 60)
            return self.report(details)
        finally:
            self.stop()

    # --- the report ----------------------------------------------------------------------
    def report(self, details: dict[str, dict]) -> dict:
        from tests.chaos.poison import check_dlq

        audit = self.fs.audit(self.sids)
        statuses = {sid: (details.get(sid) or {}).get("status") for sid in self.sids}
        failed = [{"session": sid, "error": details[sid].get("error")} for sid in self.sids if statuses[sid] == "failed"]
        unfinished = [sid for sid in self.sids if statuses[sid] not in TERMINAL]
        notes_errors = sum(1 for sid in self.sids if (details.get(sid) or {}).get("notes_error"))
        llm_ok = self.llm.calls.get("ok", 0) + self.llm.calls.get("slow", 0)
        llm_runs = scalar(self.fs.db_url, "SELECT count(*) + coalesce(sum(attempts - 1), 0) FROM notes_runs WHERE backend='llm'")
        dlq = check_dlq(self.fs.bootstrap, self.dlq_expected)
        return {
            "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "seed": self.seed,
            "elapsed_s": round(time.monotonic() - self.t_start, 1),
            "audio_lengths_s": sorted({LENGTHS_S[i % len(LENGTHS_S)] for i in range(self.n_sessions)}),
            "sessions": {"started": len(self.sids), "processed": sum(s == "processed" for s in statuses.values()),
                         "failed": failed, "unfinished": unfinished, "processed_with_notes_error": notes_errors},
            "duplicates": {**audit["duplicates"], "llm_calls": max(0, llm_ok - (llm_runs or 0))},
            "lost_events": {"unsent_outbox_rows": audit["unsent_events"], "sessions_never_finished": len(unfinished),
                            "dlq_records_missing": dlq["missing"]},
            "faults": self.faults, "dlq": dlq, "llm_endpoint_calls": self.llm.calls,
            "upload_retries": self.upload_retries, "supervisor_log": self.fs.lines[-60:],
        }


async def _outbox_rows(db_url: str, sid: str, topics: list[str]) -> list[tuple[str, str, dict]]:
    engine = create_engine(Settings(database_url=db_url, env="development"))
    try:
        async with create_session_factory(engine)() as db:
            rows = (await db.execute(text(
                "SELECT DISTINCT ON (topic) topic, payload, headers FROM outbox WHERE key=:sid AND topic = ANY(:topics) "
                "ORDER BY topic, id"), {"sid": sid, "topics": topics})).all()
            return [(r.topic, r.payload, r.headers) for r in rows]
    finally:
        await engine.dispose()


def table(report: dict) -> str:
    s, d, lost = report["sessions"], report["duplicates"], report["lost_events"]
    lines = ["| fault | time to recover | result |", "|---|---|---|"]
    for f in report["faults"]:
        rec = f"{f['recovery_s']} s" if f["recovery_s"] is not None and not f["fault"].startswith(("duplicate", "malformed")) else "-"
        lines.append(f"| {f['fault']} | {rec} | {'ok' if f['recovered'] else 'NOT RECOVERED'} |")
    lines += ["", "| measure | value |", "|---|---|",
              f"| sessions started / processed / failed / unfinished | {s['started']} / {s['processed']} / "
              f"{len(s['failed'])} / {len(s['unfinished'])} |",
              f"| processed with a notes error | {s['processed_with_notes_error']} |",
              "| duplicate rows (transcripts, diarizations, merges, notes, notes runs, LLM calls, status seq) | "
              + " / ".join(str(d[k]) for k in ("transcripts", "diarizations", "merges", "notes", "notes_runs", "llm_calls", "status_seq")) + " |",
              f"| lost events (unsent outbox rows, sessions never finished, DLQ records missing) | "
              f"{lost['unsent_outbox_rows']} / {lost['sessions_never_finished']} / {lost['dlq_records_missing']} |",
              f"| records dead-lettered as expected | {report['dlq']['found']} of {report['dlq']['expected']} |",
              f"| LLM endpoint behaviours served | {', '.join(f'{k} {v}' for k, v in sorted(report['llm_endpoint_calls'].items()))} |",
              f"| wall time | {report['elapsed_s']} s |"]
    for f in s["failed"]:
        lines.append(f"| failed {f['session'][:8]} | {f['error']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args(argv)
    report = Chaos(args.sessions, args.seed).run()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print("\n" + table(report) + f"\n\nwritten: {RESULTS.relative_to(ROOT)}")
    s, lost = report["sessions"], report["lost_events"]
    clean = (s["processed"] == s["started"] and not any(report["duplicates"].values())
             and not any(lost.values()) and all(f["recovered"] for f in report["faults"]))
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
