"""`make observe`: a real Prometheus (Debian's `prometheus` package) scraping the local
stack that `make run` started, through the file-based service discovery file the stack
writes (var/prometheus/targets.json), with the project's alert rules loaded. The
end-to-end metrics test starts Prometheus with the same functions."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from devtools.stack import ROOT, TARGETS_FILE

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
JOB = "therapybridge"  # TBServiceDown matches up{job=~"therapybridge.*"}
INSTALL_HINT = "Prometheus is not installed: `sudo apt-get install prometheus` (Debian's package; it brings promtool)"


def prometheus_binary(name: str = "prometheus") -> str | None:
    return shutil.which(name)


def local_config(targets_file: Path, rules: Path = RULES, scrape_interval: str = "5s") -> dict:
    """Scrape every target in the stack's file_sd file; Prometheus re-reads it when the
    stack restarts with new ports."""
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval,
                   "external_labels": {"system": "therapybridge"}},
        "rule_files": [str(rules)],
        "scrape_configs": [{
            "job_name": JOB,
            "metrics_path": "/metrics",
            "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "5s"}],
        }],
    }


def start_prometheus(config: dict, work_dir: Path, port: int, log_path: Path | None = None) -> subprocess.Popen:
    """Start Prometheus with ``config`` and its data under ``work_dir``; returns the process."""
    binary = prometheus_binary()
    if binary is None:
        raise FileNotFoundError(INSTALL_HINT)
    work_dir.mkdir(parents=True, exist_ok=True)
    config_path = work_dir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    output = open(log_path, "ab") if log_path else subprocess.DEVNULL
    return subprocess.Popen(
        [binary, f"--config.file={config_path}", f"--storage.tsdb.path={work_dir / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=7d"],
        stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
    )


def wait_until_ready(base_url: str, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prometheus exited with code {proc.returncode}")
        try:
            if httpx.get(f"{base_url}/-/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"prometheus at {base_url} not ready after {timeout_s:.0f} s")


def main() -> None:
    if prometheus_binary() is None:
        sys.exit(INSTALL_HINT)
    port = int(os.environ.get("TB_PROMETHEUS_PORT", "9090"))
    if not TARGETS_FILE.exists():
        print(f">>> {TARGETS_FILE.relative_to(ROOT)} does not exist yet: start the stack with `make run`; "
              "Prometheus picks the targets up when it appears", flush=True)
    work_dir = TARGETS_FILE.parent
    proc = start_prometheus(local_config(TARGETS_FILE), work_dir, port)
    # Prometheus runs in its own session (Ctrl-C reaches only us): pass SIGTERM on too.
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base_url, proc)
        print(f">>> Prometheus on {base_url} (targets: {base_url}/targets, alerts: {base_url}/alerts); "
              f"config {work_dir.relative_to(ROOT)}/prometheus.yml; Ctrl-C stops it", flush=True)
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=15)


if __name__ == "__main__":
    main()
