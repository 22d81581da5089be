"""The local stack's restart policy: capped doubling backoff, reset after a good run, and
a crash described by its exit code or signal."""

from __future__ import annotations

import signal
import subprocess
import sys

from devtools.stack import Backoff, Stack, Supervisor, exit_reason


def test_backoff_doubles_up_to_the_cap_and_resets_after_a_good_run():
    backoff = Backoff(initial_s=1.0, cap_s=5.0, reset_after_s=60.0)
    assert [backoff.next_delay(uptime_s=2) for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff.next_delay(uptime_s=61) == 1.0


def test_exit_reason_names_the_signal_or_the_code():
    assert exit_reason(-signal.SIGKILL) == "signal SIGKILL"
    assert exit_reason(1) == "exit code 1"
    assert exit_reason(0) == "exit code 0"


def test_a_dead_process_is_restarted_after_its_backoff_and_one_stopped_on_purpose_is_not(monkeypatch):
    started: list[str] = []
    stack = Stack(env={}, echo=False)

    def fake_start(name, instance=None, extra_env=None):
        label = instance or name
        stack.specs[label] = (name, dict(extra_env or {}))
        stack.started_at[label] = 0.0
        stack.processes[label] = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
        stack.processes[label].wait()
        started.append(label)
        return stack.processes[label]

    monkeypatch.setattr(stack, "start_service", fake_start)
    lines: list[str] = []
    supervisor = Supervisor(stack, None, backoff_initial_s=0.0, backoff_cap_s=0.0, say=lines.append)
    stack.start_service("joiner")
    supervisor.tick()  # notices the death, schedules the restart
    assert stack.crashes == [("joiner", "exit code 3")] and "joiner died (exit code 3)" in lines[0]
    supervisor.tick()  # due now: restarted
    assert started == ["joiner", "joiner"]
    stack.specs.pop("joiner")  # what stop_service does
    supervisor.tick()
    supervisor.tick()
    assert started == ["joiner", "joiner"]
