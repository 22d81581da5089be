"""The local stack: PostgreSQL database + migrations, a local Tansu broker when
TB_KAFKA_BOOTSTRAP_SERVERS is unset, and every service as its own OS process with
prefixed logs. ``python -m devtools.stack`` is what `make run` runs; the end-to-end
tests use the same Stack class."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.db.bootstrap import prepare_database
from devtools.localbroker import LocalBroker, ensure_topics, free_ports, wait_for_port
from shared.private_files import open_private, private_dir, write_private
from shared.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("gateway", "transcriber", "diarizer", "joiner", "notes", "progress")
COLORS = ("36", "33", "35", "32", "34", "31", "96", "93")


TARGETS_FILE = ROOT / "var" / "prometheus" / "targets.json"


def available_services() -> list[str]:
    return [s for s in SERVICES if (ROOT / "services" / s / "main.py").exists()]


def replicas(settings: Settings, name: str) -> int:
    """TB_REPLICAS_<SERVICE> for the worker services; one gateway and one progress service."""
    return getattr(settings, f"replicas_{name}", 1)


def process_labels(settings: Settings, names: list[str]) -> list[tuple[str, str]]:
    """(service, label) per process: ``transcriber`` for one replica, ``transcriber-1``,
    ``transcriber-2``... for several, each its own process in the service's consumer group."""
    out = []
    for name in names:
        n = replicas(settings, name)
        out += [(name, name if n == 1 else f"{name}-{i}") for i in range(1, n + 1)]
    return out


def partitions_for(settings: Settings, names: list[str]) -> int:
    """Enough partitions that every replica of every service gets work."""
    return max([settings.kafka_topic_partitions, *(replicas(settings, n) for n in names)])


def metrics_ports(labels: list[str]) -> dict[str, int]:
    """A free port per worker process for its /metrics (one TB_METRICS_PORT for all would
    collide on one machine). The gateway serves /metrics on its own HTTP port."""
    workers = [label for label in labels if label != "gateway"]
    return dict(zip(workers, free_ports(len(workers))))


def metrics_env(ports: dict[str, int], label: str) -> dict[str, str]:
    return {"TB_METRICS_PORT": str(ports[label])} if label in ports else {}


def scrape_targets(gateway: str, ports: dict[str, int], host: str = "127.0.0.1") -> list[dict]:
    """Prometheus file-based service discovery entries: one target per process, labelled
    with its service (the label the dashboards and alerts group by)."""
    targets = [{"targets": [gateway], "labels": {"service": "gateway"}}]
    targets += [{"targets": [f"{host}:{port}"], "labels": _scrape_labels(label)} for label, port in sorted(ports.items())]
    return targets


def _scrape_labels(label: str) -> dict[str, str]:
    service = label.split("-")[0]  # transcriber-2: a replica of the transcriber
    return {"service": service} if service == label else {"service": service, "replica": label}


def write_targets(targets: list[dict], path: Path = TARGETS_FILE) -> Path:
    """Write atomically: Prometheus re-reads the file when it changes and must never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.tmp")
    partial.write_text(json.dumps(targets, indent=2) + "\n")
    partial.replace(path)
    return path


def gateway_scrape_address(settings: Settings) -> str:
    host = "127.0.0.1" if settings.gateway_host in ("0.0.0.0", "::", "") else settings.gateway_host
    return f"{host}:{settings.gateway_port}"


def exit_reason(returncode: int) -> str:
    """"exit code 1" or "signal SIGKILL": what a crash log line says about the death."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


@dataclass
class Backoff:
    """Restart delays like a Kubernetes restart policy: doubling from ``initial_s`` up to
    ``cap_s``; a process that stayed up ``reset_after_s`` starts from the bottom again."""

    initial_s: float = 1.0
    cap_s: float = 30.0
    reset_after_s: float = 60.0
    restarts: int = 0

    def next_delay(self, uptime_s: float) -> float:
        if uptime_s >= self.reset_after_s:
            self.restarts = 0
        delay = min(self.cap_s, self.initial_s * 2 ** self.restarts)
        self.restarts += 1
        return delay


@dataclass
class Stack:
    env: dict[str, str]
    log_dir: Path | None = None
    echo: bool = True
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    _threads: list[threading.Thread] = field(default_factory=list)
    # label -> (service, extra_env): what the supervisor restarts; stop_service removes it.
    specs: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    started_at: dict[str, float] = field(default_factory=dict)
    crashes: list[tuple[str, str]] = field(default_factory=list)  # (label, exit reason), in order

    def start_service(self, name: str, instance: str | None = None, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        label = instance or name
        self.specs[label] = (name, dict(extra_env or {}))
        self.started_at[label] = time.monotonic()
        env = {**os.environ, **self.env, **(extra_env or {}), "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}.main"], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.processes[label] = proc
        color = COLORS[len(self.processes) % len(COLORS)]
        log_file = open_private(private_dir(self.log_dir) / f"{label}.log", "ab") if self.log_dir else None

        def pump() -> None:
            for line in iter(proc.stdout.readline, b""):
                if log_file:
                    log_file.write(line)
                    log_file.flush()
                if self.echo:
                    sys.stdout.write(f"\x1b[{color}m{label:>12} |\x1b[0m {line.decode(errors='replace')}")
                    sys.stdout.flush()
            if log_file:
                log_file.close()

        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        self._threads.append(thread)
        return proc

    def stop_service(self, label: str, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        self.specs.pop(label, None)  # stopped on purpose: not restarted
        proc = self.processes.pop(label, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def kill(self, label: str, sig: int = signal.SIGKILL) -> int:
        """Crash a service (fault injection): it stays in ``specs``, so a supervisor restarts it."""
        proc = self.processes[label]
        proc.send_signal(sig)
        return proc.wait(timeout=15)

    def stop_all(self) -> None:
        self.specs.clear()
        for label in list(self.processes):
            proc = self.processes[label]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for label in list(self.processes):
            proc = self.processes.pop(label)
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()


class Supervisor:
    """Keeps the stack's processes up: a service that dies is logged with its exit reason
    and started again after a backoff (per service, capped); the local broker the same,
    and after a broker restart every topic is created again before anything else is
    restarted (memory storage: the new broker has none). Nothing here stops the stack:
    only ``stop`` (Ctrl-C in ``make run``) does."""

    def __init__(self, stack: Stack, broker: LocalBroker | None = None, partitions: int = 4,
                 backoff_initial_s: float = 1.0, backoff_cap_s: float = 30.0, say=None) -> None:
        self.stack, self.broker, self.partitions = stack, broker, partitions
        self._backoff_args = (backoff_initial_s, backoff_cap_s)
        self._backoffs: dict[str, Backoff] = {}
        self._due: dict[str, float] = {}  # label -> when to start it again
        self._broker_started = time.monotonic()
        self._say = say or (lambda line: print(line, flush=True))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.broker_restarts = 0

    def _backoff(self, label: str) -> Backoff:
        return self._backoffs.setdefault(label, Backoff(*self._backoff_args))

    def tick(self) -> None:
        """One pass: notice deaths, restart what is due. The broker first: services
        restarted against a broker without topics would auto-create them wrongly."""
        now = time.monotonic()
        if self.broker is not None and not self._broker_ok(now):
            return
        for label, (name, extra_env) in list(self.stack.specs.items()):
            proc = self.stack.processes.get(label)
            if label in self._due:
                if now >= self._due[label]:
                    del self._due[label]
                    self._say(f">>> restarting {label}")
                    self.stack.start_service(name, label, extra_env)
            elif proc is not None and proc.poll() is not None:
                self._schedule(label, proc.returncode, now - self.stack.started_at.get(label, now))

    def _schedule(self, label: str, returncode: int, uptime_s: float) -> None:
        reason = exit_reason(returncode)
        self.stack.crashes.append((label, reason))
        delay = self._backoff(label).next_delay(uptime_s)
        self._due[label] = time.monotonic() + delay
        self._say(f">>> {label} died ({reason}) after {uptime_s:.0f} s; restart in {delay:.0f} s")

    def _broker_ok(self, now: float) -> bool:
        """False while the broker is down or waiting for its restart."""
        proc = self.broker.process
        if "broker" in self._due:
            if now < self._due["broker"]:
                return False
            del self._due["broker"]
            self.restart_broker()
            return True
        if proc is not None and proc.poll() is not None:
            self.stack.crashes.append(("broker", exit_reason(proc.returncode)))
            delay = self._backoff("broker").next_delay(now - self._broker_started)
            self._due["broker"] = now + delay
            self._say(f">>> broker died ({exit_reason(proc.returncode)}); restart in {delay:.0f} s")
            return False
        return True

    def restart_broker(self) -> None:
        """Same port (clients keep their bootstrap address), then every topic again."""
        self._say(f">>> restarting the broker on {self.broker.bootstrap_servers}")
        self.broker.start()
        asyncio.run(ensure_topics(self.broker.bootstrap_servers, self.partitions))
        self._broker_started = time.monotonic()
        self.broker_restarts += 1
        self._say(">>> broker back, topics created; PostgreSQL re-drives what it lost")

    def start(self, interval_s: float = 0.5) -> "Supervisor":
        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.tick()
                except Exception as exc:  # the supervisor itself must not die of one bad pass
                    self._say(f">>> supervisor pass failed: {type(exc).__name__}")

        self._thread = threading.Thread(target=loop, name="supervisor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


async def prepare(settings: Settings, broker_log: Path | None = None,
                  partitions: int | None = None) -> tuple[dict[str, str], LocalBroker | None]:
    """Database + broker; returns the environment the services need."""
    await prepare_database(settings.database_url)
    broker = None
    bootstrap = settings.kafka_bootstrap_servers
    if not bootstrap:
        broker = LocalBroker(log_path=broker_log).start()
        bootstrap = broker.bootstrap_servers
    await ensure_topics(bootstrap, partitions or settings.kafka_topic_partitions)
    env = {"TB_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "TB_DATABASE_URL": settings.database_url,
           "TB_BLOB_DIR": str(Path(settings.blob_dir).resolve())}
    return env, broker


def local_jwt_secret(state_dir: Path) -> str:
    """The install's signing secret: random on the first `make run`, then kept in the
    local state folder (0600), so sign-ins survive restarts and nothing public signs."""
    path = private_dir(state_dir) / "jwt_secret"
    if not path.exists():
        write_private(path, secrets.token_urlsafe(48).encode())
    os.chmod(path, 0o600)
    return path.read_text().strip()


def follow_progress(client: httpx.Client, session_id: str, headers: dict) -> None:
    with client.stream("GET", f"/api/sessions/{session_id}/status/stream", headers=headers, timeout=None) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:") and '"progress"' in line:
                msg = json.loads(line[5:])
                if "status" in msg:
                    print(f">>> {msg['progress']:3d}% {msg['status']}: {msg['message']}", flush=True)
            if line.startswith("event: complete"):
                break


def print_result(detail: dict, out, show_text: bool) -> None:
    """The sample's result. Its words are printed only to a terminal: redirected output
    ends up in log files, and transcript text never belongs in a log."""
    transcript = detail.get("transcript_text") or ""
    notes = detail.get("extracted_notes") or {}
    out.write("\n================ result ================\n")
    out.write(f"session {detail.get('id')}: {detail.get('status')}, {len(transcript.split())} transcript words, "
              f"{len(notes.get('risk_flags', []))} risk flags\n")
    if show_text:
        out.write("---------------- transcript ----------------\n")
        out.write((transcript or "(no transcript)") + "\n")
        if notes:
            out.write("---------------- notes ----------------\n")
            out.write(f"topics: {', '.join(notes.get('key_topics', [])) or '-'}\n")
            out.write(f"summary: {notes.get('patient_summary', '')}\n")
    else:
        out.write("(output is not a terminal: transcript and notes are not printed; read them on the web page)\n")
    if detail.get("error"):
        out.write(f"error: {detail['error']}\n")
    out.write("=============================================\n\n")
    out.flush()


def demo(base_url: str, settings: Settings, sample: Path) -> None:
    """Sign in as the demo therapist, upload the sample, follow progress, print the result."""
    with httpx.Client(base_url=base_url, timeout=60) as client:
        token = client.post("/api/auth/token", data={"username": settings.demo_email, "password": settings.demo_password})
        token.raise_for_status()
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        with open(sample, "rb") as fh:
            response = client.post("/api/sessions/upload", headers=headers, files={"file": (sample.name, fh, "audio/wav")})
        response.raise_for_status()
        session_id = response.json()["id"]
        print(f"\n>>> uploaded {sample.name} as session {session_id}; following progress...\n", flush=True)
        follow_progress(client, session_id, headers)
        detail = client.get(f"/api/sessions/{session_id}", headers=headers).json()
    print_result(detail, sys.stdout, show_text=sys.stdout.isatty())


def main() -> None:
    run_dir = private_dir(ROOT / "var")
    jwt_secret = os.environ.get("TB_JWT_SECRET") or local_jwt_secret(run_dir)
    settings = load_settings("make run", jwt_secret=jwt_secret)
    partitions = partitions_for(settings, available_services())
    env, broker = asyncio.run(prepare(settings, broker_log=run_dir / "broker.log", partitions=partitions))
    env["TB_JWT_SECRET"] = jwt_secret
    if broker:
        print(f">>> local Tansu broker on {broker.bootstrap_servers} (memory storage)", flush=True)
    env["TB_CREATE_DEMO_USER"] = "true"
    env.setdefault("TB_LOG_FORMAT", os.environ.get("TB_LOG_FORMAT", "console"))
    stack = Stack(env=env, log_dir=run_dir)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    supervisor = Supervisor(stack, broker, partitions,
                            settings.restart_backoff_initial_s, settings.restart_backoff_cap_s).start()
    try:
        labels = process_labels(settings, available_services())
        ports = metrics_ports([label for _, label in labels])
        for name, label in labels:
            stack.start_service(name, label, extra_env=metrics_env(ports, label))
        targets = write_targets(scrape_targets(gateway_scrape_address(settings), ports))
        print(f">>> Prometheus targets (file_sd): {targets.relative_to(ROOT)}; `make observe` scrapes them", flush=True)
        base_url = f"http://{settings.gateway_host}:{settings.gateway_port}"
        wait_for_port(settings.gateway_host, settings.gateway_port, timeout_s=60)
        print(f"\n>>> gateway on {base_url}  (web page: {base_url}/ , API docs: {base_url}/docs)")
        print(f">>> demo therapist: {settings.demo_email} / {settings.demo_password}\n", flush=True)
        if os.environ.get("TB_SKIP_DEMO") != "1":
            demo(base_url, settings, ROOT / "samples" / "two_speakers.wav")
        if os.environ.get("TB_EXIT_AFTER_DEMO") == "1":
            return
        print(">>> running (crashed services are restarted); Ctrl-C stops everything", flush=True)
        stopping.wait()
    except KeyboardInterrupt:
        pass
    finally:
        print("\n>>> stopping services...", flush=True)
        supervisor.stop()
        stack.stop_all()
        if broker:
            broker.stop()
        print(">>> stopped", flush=True)


if __name__ == "__main__":
    main()
