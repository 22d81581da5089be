"""A private, supervised stack for fault injection: its own database, its own local
Tansu broker (so restarting it disturbs no other test), every service as a process under
devtools.stack.Supervisor, and the audit that counts what a fault may have broken:
sessions not finished, duplicate rows, events never sent. Used by tests/chaos (``make
chaos``) and by the smaller subset in tests/integration/test_faults.py."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text

from devtools.localbroker import LocalBroker, ensure_topics, free_port, wait_for_port
from devtools.stack import Stack, Supervisor, available_services
from shared.db.bootstrap import drop_database, prepare_database
from shared.db.engine import create_engine, create_session_factory
from shared.settings import Settings
from tests.e2e.conftest import Api

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TERMINAL = ("processed", "failed")

# What a stack under faults runs with: re-drives soon after a stall, a join that waits
# for diarization long enough for a killed diarizer to come back, quick restarts.
FAULT_ENV = {
    "TB_STAGE_STALL_S": "6", "TB_REDRIVE_MAX": "20", "TB_STAGE_DEADLINE_S": "900",
    "TB_JOIN_DIARIZATION_DEADLINE_S": "300", "TB_SHUTDOWN_GRACE_S": "10", "TB_RISK_SEMANTIC": "false",
    "TB_CREATE_DEMO_USER": "true", "TB_LOG_FORMAT": "json", "TB_OUTBOX_POLL_INTERVAL_S": "0.1",
    "HF_HUB_OFFLINE": "1",
}


def database_url(base: str) -> str:
    return f"{base.rsplit('/', 1)[0]}/tb_faults_{uuid.uuid4().hex[:10]}"


@dataclass
class FaultStack:
    name: str
    base_env: dict[str, str]  # TB_DATABASE_URL (its server is used, not its database), TB_JWT_SECRET, TB_BLOB_DIR
    extra_env: dict[str, str] = field(default_factory=dict)
    services: list[str] = field(default_factory=available_services)
    db_url: str = ""
    broker: LocalBroker | None = None
    stack: Stack | None = None
    supervisor: Supervisor | None = None
    api: Api | None = None
    lines: list[str] = field(default_factory=list)  # what the supervisor said

    def start(self, own_database: bool = True) -> "FaultStack":
        try:
            return self._start(own_database)
        except BaseException:
            self.stop()  # nothing left running behind a failed start
            raise

    def _start(self, own_database: bool) -> "FaultStack":
        log_dir = ARTIFACTS / self.name
        log_dir.mkdir(parents=True, exist_ok=True)
        for old in log_dir.glob("*.log"):  # started_count reads these: this run's only
            old.unlink()
        self.db_url = database_url(self.base_env["TB_DATABASE_URL"]) if own_database else self.base_env["TB_DATABASE_URL"]
        if own_database:
            asyncio.run(prepare_database(self.db_url))
        self.broker = LocalBroker(log_path=log_dir / "tansu.log").start()
        asyncio.run(ensure_topics(self.broker.bootstrap_servers, 4))
        port = free_port()
        env = {**self.base_env, **FAULT_ENV, **self.extra_env, "TB_DATABASE_URL": self.db_url,
               "TB_KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap_servers, "TB_GATEWAY_PORT": str(port)}
        self.stack = Stack(env=env, log_dir=log_dir, echo=False)
        self.supervisor = Supervisor(self.stack, self.broker, 4, backoff_initial_s=0.5, backoff_cap_s=5.0,
                                     say=self.lines.append).start(interval_s=0.25)
        for service in self.services:
            self.stack.start_service(service)
        self.wait_started({label: 1 for label in self.services})
        if "gateway" in self.services:
            wait_for_port("127.0.0.1", port, timeout_s=120)
            self.api = Api(f"http://127.0.0.1:{port}")
            self._wait_ready()
            self.api.login()
        return self

    @property
    def log_dir(self) -> Path:
        return ARTIFACTS / self.name

    def started_count(self, label: str) -> int:
        """How many times the process has logged service_started (its log survives restarts)."""
        path = self.log_dir / f"{label}.log"
        return path.read_bytes().count(b'"event": "service_started"') if path.exists() else 0

    def wait_started(self, counts: dict[str, int], timeout_s: float = 900.0) -> None:
        """Until every label has started at least ``counts[label]`` times (models loaded,
        partitions assigned): the moment a fault test may begin."""
        deadline = time.monotonic() + timeout_s
        while any(self.started_count(label) < n for label, n in counts.items()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"not started: {[l for l, n in counts.items() if self.started_count(l) < n]}")
            time.sleep(0.5)

    def _wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.api.client.get("/readyz").status_code == 200:
                    return
            except Exception:
                pass
            time.sleep(0.5)
        raise TimeoutError("the gateway never became ready")

    def stop(self, drop: bool = True) -> None:
        if self.supervisor:
            self.supervisor.stop()
        if self.stack:
            self.stack.stop_all()
        if self.broker:
            self.broker.stop()
        if drop and self.db_url and self.db_url != self.base_env["TB_DATABASE_URL"]:
            asyncio.run(drop_database(self.db_url))

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap_servers

    def upload(self, path: Path) -> str:
        response = self.api.upload(path)
        response.raise_for_status()
        return response.json()["id"]

    def status(self, sid: str) -> dict:
        return self.api.get(sid)

    def wait(self, sids: list[str], until, timeout_s: float) -> dict[str, dict]:
        """Poll until ``until(detail)`` for every session (or the timeout); the last details."""
        deadline = time.monotonic() + timeout_s
        details: dict[str, dict] = {}
        pending = list(sids)
        while pending and time.monotonic() < deadline:
            for sid in list(pending):
                try:
                    details[sid] = self.api.get(sid)
                except Exception:  # the gateway itself may be restarting
                    continue
                if until(details[sid]):
                    pending.remove(sid)
            if pending:
                time.sleep(0.5)
        return details

    def wait_finished(self, sids: list[str], timeout_s: float = 600.0) -> dict[str, dict]:
        return self.wait(sids, lambda d: d.get("status") in TERMINAL, timeout_s)

    def audit(self, sids: list[str]) -> dict:
        return asyncio.run(audit(self.db_url, sids))


DUPLICATES_SQL = {
    # Events a stage produced more than once (copies sent again by a re-drive share the
    # ce_id, so they are one event): the rows a duplicate run would have written.
    "transcripts": "SELECT count(DISTINCT headers->>'ce_id') FROM outbox WHERE topic='transcript.ready' AND key=:sid",
    "diarizations": "SELECT count(DISTINCT headers->>'ce_id') FROM outbox WHERE topic='diarization.ready' AND key=:sid",
    "merges": "SELECT count(DISTINCT headers->>'ce_id') FROM outbox WHERE topic='transcript.merged' AND key=:sid",
    "notes": "SELECT count(DISTINCT headers->>'ce_id') FROM outbox WHERE topic IN ('notes.ready','notes.failed') AND key=:sid",
    "notes_runs": "SELECT count(*) FROM notes_runs WHERE session_id=CAST(:sid AS uuid)",
}


async def audit(db_url: str, sids: list[str]) -> dict:
    """Per session: duplicates (each count above 1 is one), status seq gaps or repeats,
    and the session's events still unsent in the outbox (lost if the stack is idle)."""
    engine = create_engine(Settings(database_url=db_url, env="development"))
    report = {"duplicates": {k: 0 for k in DUPLICATES_SQL} | {"status_seq": 0}, "unsent_events": 0, "sessions": {}}
    try:
        async with create_session_factory(engine)() as db:
            for sid in sids:
                row: dict = {}
                for what, sql in DUPLICATES_SQL.items():
                    count = (await db.execute(text(sql), {"sid": sid})).scalar() or 0
                    row[what] = count
                    report["duplicates"][what] += max(0, count - 1)
                seqs = [r[0] for r in (await db.execute(text(
                    "SELECT seq FROM status_history WHERE session_id=CAST(:sid AS uuid) ORDER BY seq"), {"sid": sid}))]
                bad_seq = len(seqs) != len(set(seqs)) or (seqs and seqs != list(range(1, len(seqs) + 1)))
                report["duplicates"]["status_seq"] += int(bool(bad_seq))
                report["sessions"][sid] = row
            report["unsent_events"] = (await db.execute(text(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL"))).scalar()
    finally:
        await engine.dispose()
    return report
