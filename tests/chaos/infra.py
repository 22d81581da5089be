"""What the chaos suite starts besides the stack: a PRIVATE PostgreSQL cluster (initdb +
pg_ctl on its own port and socket directory, never the machine's shared server), a fake
OpenAI-compatible LLM endpoint that is slow, rate-limits, errors and drops connections,
and recordings of mixed length."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socketserver
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from devtools.localbroker import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PrivatePostgres:
    """A throw-away cluster. As root, initdb and the server run as the ``postgres`` user."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="tb-chaos-pg-"))
        self.data, self.socket_dir, self.port = self.root / "data", self.root / "sock", free_port()
        self.log = self.root / "server.log"

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run([*prefix, *argv], check=check, capture_output=True, text=True, timeout=120)

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> "PrivatePostgres":
        self.socket_dir.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.socket_dir, "postgres")
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        return self._pg_ctl("start")

    def _pg_ctl(self, action: str, *extra: str) -> "PrivatePostgres":
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", action, *extra)
        return self

    def restart(self) -> None:
        """A crash and a restart: every connection drops, uncommitted work is lost."""
        self._pg_ctl("stop", "-m", "immediate")
        self._pg_ctl("start")

    def stop(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "stop", "-m", "fast", check=False)
        shutil.rmtree(self.root, ignore_errors=True)


# Per request: what the fake LLM does. Never two failures in a row, so the notes
# service's retries (not its circuit breaker) are what gets exercised.
LLM_PATTERN = ("slow", "429", "ok", "500", "ok", "drop", "ok", "ok")


class FakeLLM:
    def __init__(self, slow_s: float = 4.0) -> None:
        self.port, self.slow_s = free_port(), slow_s
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()
        self._n = 0
        self._server: socketserver.ThreadingTCPServer | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _next(self) -> str:
        with self._lock:
            behaviour = LLM_PATTERN[self._n % len(LLM_PATTERN)]
            self._n += 1
            self.calls[behaviour] = self.calls.get(behaviour, 0) + 1
            return behaviour

    def start(self) -> "FakeLLM":
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # no request lines on the console
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                behaviour = fake._next()
                if behaviour == "drop":
                    self.connection.shutdown(2)
                    self.close_connection = True
                    return
                if behaviour in ("429", "500"):
                    self._reply(int(behaviour), {"error": {"message": "injected", "type": "server_error"}})
                    return
                if behaviour == "slow":
                    time.sleep(fake.slow_s)
                from shared.contracts.notes import ClinicalNotes

                self._reply(200, {"id": "chaos", "object": "chat.completion", "created": int(time.time()), "model": "chaos",
                                  "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                      "role": "assistant", "content": ClinicalNotes().model_dump_json()}}],
                                  "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}})

            def _reply(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()


def recordings(out_dir: Path, sources: list[Path], lengths_s: list[int]) -> list[Path]:
    """One wav per length, tiled from the source recordings (real speech, two speakers)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    audio = []
    for source in sources:
        data, rate = sf.read(source, dtype="float32", always_2d=False)
        audio.append((data if data.ndim == 1 else data.mean(axis=1), rate))
    paths = []
    for i, length in enumerate(lengths_s):
        data, rate = audio[i % len(audio)]
        need = int(length * rate)
        tiled = np.tile(data, need // len(data) + 1)[:need]
        path = out_dir / f"chaos_{i:02d}_{length}s.wav"
        sf.write(path, tiled, rate)
        paths.append(path)
    return paths
