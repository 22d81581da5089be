"""Deletion leaves nothing anywhere (crypto-shredding, docs/adr/0006-crypto-shredding.md):
a real recording goes through the whole stack; before DELETE its words are readable
through the API and in the database's read model (so the search below can find them);
after DELETE a data-only ``pg_dump`` of the database, every record of every topic of the
broker (every partition, from the beginning, DLQs included) and every file of the blob
folder hold none of them."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

DATA = Path(__file__).resolve().parents[1] / "data"
RECORDING = DATA / "ami_dev00.wav"  # 30 s of a real meeting, uploaded by no other e2e test


def pg_dump(database_url: str) -> str:
    """The whole database as text, data only (what a backup would hold)."""
    url = re.sub(r"^postgresql\+\w+://", "postgresql://", database_url)
    done = subprocess.run(["pg_dump", "--data-only", "--no-owner", "--dbname", url],
                          capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


async def read_every_topic(bootstrap: str) -> list[bytes]:
    """Key, value and headers of every record on every topic, every partition, from the start."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20)
    await consumer.start()
    try:
        topics = await consumer.topics()
        tps = [TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found, idle_since = [], time.monotonic()
        while time.monotonic() - idle_since < 3.0:
            batch = await consumer.getmany(timeout_ms=300, max_records=2000)
            records = [r for recs in batch.values() for r in recs]
            if records:
                idle_since = time.monotonic()
            for r in records:
                found.append(b"|".join([r.key or b"", r.value or b"", *(v for _, v in r.headers or [])]))
        assert tps, "the broker should have topics"
        return found
    finally:
        await consumer.stop()


def table_rows(dump: str, table: str) -> str:
    """The rows of one table in a data-only dump (its COPY block)."""
    match = re.search(rf"^COPY public\.{table} .*?FROM stdin;\n(.*?)^\\\.$", dump, re.S | re.M)
    assert match, f"no {table} in the dump"
    return match.group(1)


def blob_bytes(blob_dir: Path) -> list[bytes]:
    return [p.read_bytes() for p in Path(blob_dir).rglob("*") if p.is_file()]


def words_in(haystack: bytes, words: list[str]) -> set[str]:
    lowered = haystack.lower()
    return {w for w in words if w.encode() in lowered}


def everything(settings_env: dict) -> tuple[bytes, bytes, bytes]:
    dump = pg_dump(settings_env["TB_DATABASE_URL"]).encode()
    topics = b"\n".join(asyncio.run(read_every_topic(settings_env["TB_KAFKA_BOOTSTRAP_SERVERS"])))
    blobs = b"\n".join(blob_bytes(Path(settings_env["TB_BLOB_DIR"])))
    return dump, topics, blobs


def test_deleted_session_leaves_no_word_in_the_database_the_broker_or_the_blobs(pipeline):
    api, _, env = pipeline
    baseline = b"\n".join(everything(env)).lower()  # words other sessions already put there do not count

    response = api.upload(RECORDING)
    assert response.status_code == 202, response.text
    sid = response.json()["id"]
    detail = api.wait(sid, lambda d: d["status"] in ("processed", "failed"), timeout_s=400)
    assert detail["status"] == "processed", (detail["status"], detail["error"])
    text = " ".join(seg["text"] for seg in detail["transcript_segments"])
    candidates = sorted({w for w in re.findall(r"[a-z]{6,}", text.lower()) if w.encode() not in baseline})
    assert len(candidates) >= 5, f"need 5+ distinctive transcript words, got {len(candidates)}"
    words = candidates[:12]

    # The recording is sealed at rest and served decrypted (with ranges) to its therapist.
    [stored] = (Path(env["TB_BLOB_DIR"]) / "sessions" / sid).glob("audio.*")
    original = RECORDING.read_bytes()
    assert original[:64] not in stored.read_bytes() and stored.read_bytes()[:4] == b"TBE1"
    ranged = api.client.get(f"/api/sessions/{sid}/audio", headers={**api.headers, "Range": "bytes=100000-100999"})
    assert ranged.status_code == 206 and ranged.content == original[100000:101000]

    dump, topics, _ = everything(env)
    assert words_in(dump, words) == set(words), "before DELETE the read model holds the transcript in clear"
    assert words_in(topics, words) == set(), "event payloads on the broker are sealed even before DELETE"
    assert sid in table_rows(dump.decode(), "session_keys")

    assert api.client.delete(f"/api/sessions/{sid}", headers=api.headers).status_code == 204
    assert api.client.get(f"/api/sessions/{sid}", headers=api.headers).status_code == 404

    # Every service forgets the session when session.deleted reaches it: wait for that, then look.
    deadline = time.monotonic() + 120
    while words_in(pg_dump(env["TB_DATABASE_URL"]).encode(), words) and time.monotonic() < deadline:
        time.sleep(1.0)
    dump, topics, blobs = everything(env)
    assert words_in(dump, words) == set(), "a database table still holds the deleted session's words"
    assert words_in(topics, words) == set(), "a topic still holds the deleted session's words"
    assert words_in(blobs, words) == set(), "a blob still holds the deleted session's words"
    assert not (Path(env["TB_BLOB_DIR"]) / "sessions" / sid).exists()
    assert sid not in table_rows(dump.decode(), "session_keys"), "its data key is destroyed"
