"""Faults on a private, supervised stack (real PostgreSQL, its own real Tansu broker, every
service a process): a malformed record reaches <topic>.dlq through the runtime's dispatch,
a worker killed with SIGKILL or stopped with SIGTERM mid-stage comes back and the session
still ends processed once, and a broker restart (memory storage: every record lost) is
recovered by the reconciler's re-drive. The wider suite is tests/chaos (``make chaos``)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from tests.chaos.harness import FaultStack
from tests.conftest import ROOT
from tests.helpers import read_topic

SAMPLE = ROOT / "samples" / "two_speakers.wav"
# Six service processes (models included) start on a shared, loaded machine: minutes.
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def faults(service_env):
    stack = FaultStack("faults", service_env).start()
    yield stack
    stack.stop()


def stage_running(detail: dict, stage: str) -> bool:
    return (detail.get("stages") or {}).get(stage, {}).get("state") == "running"


def assert_once(faults: FaultStack, sid: str) -> None:
    report = faults.audit([sid])
    assert report["sessions"][sid]["transcripts"] == 1 and report["sessions"][sid]["notes"] == 1, report
    assert all(count == 0 for count in report["duplicates"].values()), report


async def send_raw(bootstrap: str, topic: str, value: bytes, headers: dict[str, str], key: str | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, max_request_size=8 * 2**20)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=(key or str(uuid.uuid4())).encode(),
                                     headers=[(k, v.encode()) for k, v in headers.items()])
    finally:
        await producer.stop()


def test_malformed_records_reach_the_dlq_through_dispatch_and_block_nothing(faults):
    asyncio.run(send_raw(faults.bootstrap, "audio.uploaded", b"{not json", {"ce_id": "bad-1"}))
    asyncio.run(send_raw(faults.bootstrap, "audio.uploaded", json.dumps({"session_id": "nope"}).encode(),
                         {"ce_id": "bad-2", "ce_type": "audio.uploaded"}))
    deadline, services = time.monotonic() + 120, set()
    while time.monotonic() < deadline and services != {"transcriber", "diarizer", "progress"}:
        records = asyncio.run(read_topic(faults.bootstrap, "audio.uploaded.dlq"))
        headers = [dict((k, v.decode()) for k, v in r.headers) for r in records]
        services = {h["dlq_service"] for h in headers if h.get("ce_id") in ("bad-1", "bad-2")}
        time.sleep(1)
    assert services == {"transcriber", "diarizer", "progress"}
    assert all(h["dlq_error_kind"] == "permanent" and h["dlq_original_topic"] == "audio.uploaded" for h in headers)
    assert {r.value for r in records} >= {b"{not json"}, "the DLQ keeps the original bytes"
    sid = faults.upload(SAMPLE)  # the partitions are not blocked
    assert faults.wait_finished([sid], timeout_s=900)[sid]["status"] == "processed"


def cli(capsys, *argv: str) -> tuple[int, str]:
    from services.gateway.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    return exited.value.code, capsys.readouterr().out


def test_dlq_command_lists_shows_and_replays(faults, capsys):
    bootstrap = ("--bootstrap", faults.bootstrap)
    asyncio.run(send_raw(faults.bootstrap, "audio.uploaded", b"{not json", {"ce_id": "bad-cli"}))
    deadline, listed = time.monotonic() + 120, []
    while time.monotonic() < deadline and len(listed) < 3:
        code, out = cli(capsys, "dlq", "list", "--topic", "audio.uploaded", "--json", *bootstrap)
        listed = [r for r in json.loads(out) if r["event_id"] == "bad-cli"]
        time.sleep(1)
    assert code == 0 and {r["service"] for r in listed} == {"transcriber", "diarizer", "progress"}
    ref = listed[0]["ref"]
    code, out = cli(capsys, "dlq", "show", ref, *bootstrap)
    shown = json.loads(out)
    assert code == 0 and shown["error_kind"] == "permanent" and "payload" not in shown, "no payload by default"
    assert json.loads(cli(capsys, "dlq", "show", ref, "--payload", *bootstrap)[1])["payload"] == "{not json"
    before = len([r for r in asyncio.run(read_topic(faults.bootstrap, "audio.uploaded")) if r.value == b"{not json"])
    code, out = cli(capsys, "dlq", "replay", ref, *bootstrap)
    assert code == 0 and out.split() == [ref]
    replayed = [r for r in asyncio.run(read_topic(faults.bootstrap, "audio.uploaded")) if r.value == b"{not json"]
    assert len(replayed) == before + 1
    assert "dlq_service" not in dict(replayed[-1].headers), "replayed with the original headers"
    assert cli(capsys, "dlq", "show", "audio.uploaded.dlq:0:999999", *bootstrap)[0] == 4


def test_kill9_of_the_transcriber_mid_stage(faults):
    sid = faults.upload(SAMPLE)
    running = faults.wait([sid], lambda d: stage_running(d, "transcription") or d["status"] in ("processed", "failed"), 300)
    assert stage_running(running[sid], "transcription"), running[sid]["status"]
    assert faults.stack.kill("transcriber") == -signal.SIGKILL
    detail = faults.wait_finished([sid], timeout_s=900)[sid]
    assert ("transcriber", "signal SIGKILL") in faults.stack.crashes
    assert faults.stack.processes["transcriber"].poll() is None, "the supervisor started it again"
    assert detail["status"] == "processed", detail.get("error")
    assert_once(faults, sid)


def test_sigterm_of_a_worker_mid_session_then_restart(faults, tmp_path):
    # Ten minutes (the 30 s sample twenty times), so diarization runs for seconds and the
    # poll sees it running on a quiet machine too (30 s diarized between two polls).
    import numpy as np
    import soundfile as sf

    audio, rate = sf.read(SAMPLE, dtype="float32")
    long_sample = tmp_path / "ten_minutes.wav"
    sf.write(long_sample, np.tile(audio, 20), rate)
    sid = faults.upload(long_sample)
    running = faults.wait([sid], lambda d: stage_running(d, "diarization") or d["status"] in ("processed", "failed"), 300)
    assert stage_running(running[sid], "diarization")
    process = faults.stack.processes["diarizer"]
    faults.stack.stop_service("diarizer", sig=signal.SIGTERM, timeout=30)  # a rolling restart's stop
    assert process.returncode == 0, "a clean exit within the grace period"
    faults.stack.start_service("diarizer")
    detail = faults.wait_finished([sid], timeout_s=900)[sid]
    assert detail["status"] == "processed", detail.get("error")
    assert "Speaker identification unavailable" not in (detail.get("message") or ""), "diarization finished too"
    assert_once(faults, sid)


def test_broker_restart_loses_every_record_and_the_reconciler_redrives(faults):
    sids = [faults.upload(SAMPLE) for _ in range(2)]
    faults.wait(sids[:1], lambda d: stage_running(d, "transcription") or d["status"] in ("processed", "failed"), 300)
    restarts = faults.supervisor.broker_restarts
    faults.broker.process.kill()  # memory storage: topics, records and offsets are gone
    details = faults.wait_finished(sids, timeout_s=900)
    assert faults.supervisor.broker_restarts == restarts + 1
    assert [details[s]["status"] for s in sids] == ["processed", "processed"], [details[s].get("error") for s in sids]
    for sid in sids:
        assert_once(faults, sid)
    assert faults.audit(sids)["unsent_events"] == 0
