"""The blob-store contract, run over both backends: the local directory and the S3 backend
against a real S3-compatible HTTP server (moto in server mode, on a free port)."""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from pathlib import Path

import pytest

from shared.audio import SAMPLE_RATE, decode_audio
from shared.blobstore import (
    BlobRangeNotSatisfiable,
    BlobTooLarge,
    LocalBlobStore,
    S3BlobStore,
    create_blob_store,
    session_prefix,
)
from shared.settings import Settings
from tests.conftest import DATA

BUCKET = "therapybridge-test"
MiB = 1024 * 1024


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        store = _s3_store(endpoint, "")
        store.client.create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()


def _s3_store(endpoint: str, prefix: str) -> S3BlobStore:
    store = create_blob_store(Settings(
        blob_backend="s3", s3_endpoint_url=endpoint, s3_bucket=BUCKET, s3_region="us-east-1",
        s3_access_key_id="testing", s3_secret_access_key="testing", s3_prefix=prefix,
        s3_part_size_bytes=5 * MiB,
    ))
    assert isinstance(store, S3BlobStore)
    return store


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        store = create_blob_store(Settings(blob_backend="local", blob_dir=tmp_path / "blobs"))
        assert isinstance(store, LocalBlobStore)
        return store
    # A fresh key prefix per test keeps tests apart in the one bucket.
    return _s3_store(request.getfixturevalue("s3_endpoint"), f"t-{uuid.uuid4().hex[:8]}")


async def _chunks(data: bytes, size: int = 64 * 1024):
    for i in range(0, len(data), size):
        yield data[i:i + size]


def _leftovers(store) -> list[str]:
    """Anything the store keeps besides finished blobs: temp files, open multipart uploads."""
    if isinstance(store, LocalBlobStore):
        return [str(p) for p in store.root.rglob("*.part")]
    uploads = store.client.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)
    return [u["Key"] for u in uploads.get("Uploads", [])]


@pytest.mark.parametrize("size", [0, 100_000, 11 * MiB + 123], ids=["empty", "single-put", "multipart"])
async def test_put_stream_stores_bytes_with_size_and_sha256(store, size):
    data = os.urandom(size)
    parts: list[int] = []
    if isinstance(store, S3BlobStore):
        store.client.meta.events.register("before-call.s3.UploadPart", lambda **_: parts.append(1))
    stored = await store.put_stream("sessions/s1/audio.bin", _chunks(data))
    if isinstance(store, S3BlobStore):
        assert len(parts) == (3 if size > 10 * MiB else 0)  # 5 + 5 + 1 MiB, or one plain PUT
    assert stored.uri == "blob://sessions/s1/audio.bin"
    assert stored.size == size
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert store.get_bytes(stored.uri) == data
    assert store.exists(stored.uri)
    assert _leftovers(store) == []


async def test_max_bytes_is_enforced_and_leaves_nothing_behind(store):
    data = os.urandom(12 * MiB)  # past the first 5 MiB part: the S3 multipart upload has begun
    with pytest.raises(BlobTooLarge):
        await store.put_stream("sessions/s2/audio.bin", _chunks(data), max_bytes=7 * MiB)
    assert not store.exists("blob://sessions/s2/audio.bin")
    assert _leftovers(store) == []
    small = await store.put_stream("sessions/s2/small.bin", _chunks(b"x" * 1000), max_bytes=1000)
    assert small.size == 1000  # exactly at the limit is fine


async def test_failing_source_aborts_the_upload(store):
    async def broken():
        yield os.urandom(6 * MiB)
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.put_stream("sessions/s3/audio.bin", broken())
    assert not store.exists("blob://sessions/s3/audio.bin")
    assert _leftovers(store) == []


def test_put_get_json_exists_delete(store):
    uri = store.put_json("sessions/s4/transcript.json", [{"text": "hello", "start": 0.5}])
    assert uri == "blob://sessions/s4/transcript.json"
    assert store.get_json(uri) == [{"text": "hello", "start": 0.5}]
    assert store.exists(uri)
    assert store.put_bytes("sessions/s4/raw.bin", b"\x00\x01") == "blob://sessions/s4/raw.bin"
    assert store.get_bytes("blob://sessions/s4/raw.bin") == b"\x00\x01"
    assert store.delete(uri) is True
    assert not store.exists(uri)
    assert store.delete(uri) is False
    assert store.exists("blob://sessions/s4/raw.bin")


def test_local_copy_yields_a_readable_file_that_is_removed_afterwards(store):
    data = os.urandom(300_000)
    uri = store.put_bytes("sessions/s5/audio.flac", data)
    with store.local_copy(uri) as path:
        assert isinstance(path, Path) and path.read_bytes() == data
        assert path.suffix == ".flac"
        kept = path
    if isinstance(store, LocalBlobStore):
        assert kept == store.path_for(uri) and kept.exists()  # the real file, untouched
    else:
        assert not kept.exists()  # the temporary download is gone
    assert store.with_local_copy(uri, lambda p, n: p.read_bytes()[:n], 4) == data[:4]


def test_local_copy_is_removed_when_the_body_raises(store):
    uri = store.put_bytes("sessions/s6/audio.wav", b"RIFF....")
    with pytest.raises(RuntimeError):
        with store.local_copy(uri) as path:
            kept = path
            raise RuntimeError("decode failed")
    assert kept.exists() == isinstance(store, LocalBlobStore)


def test_delete_prefix_removes_every_key_under_it(store):
    sid, other = uuid.uuid4(), uuid.uuid4()
    for i in range(30):
        store.put_bytes(f"{session_prefix(sid)}part-{i:02d}.bin", b"p%d" % i)
    store.put_bytes(f"{session_prefix(sid)}nested/deeper.json", b"{}")
    keep = store.put_bytes(f"{session_prefix(other)}audio.wav", b"keep")
    neighbour = store.put_bytes(f"sessions/{sid}x/audio.wav", b"keep")  # shares the string prefix only

    batches: list[int] = []
    if isinstance(store, S3BlobStore):
        store.list_page_size = 7  # force pagination: 31 keys -> 5 pages, 5 batch deletes
        store.client.meta.events.register(
            "before-call.s3.DeleteObjects", lambda **_: batches.append(1))

    assert store.delete_prefix(session_prefix(sid)) == 31
    assert not store.exists(f"blob://{session_prefix(sid)}part-00.bin")
    assert not store.exists(f"blob://{session_prefix(sid)}nested/deeper.json")
    assert store.exists(keep) and store.exists(neighbour)
    assert store.delete_prefix(session_prefix(sid)) == 0
    if isinstance(store, S3BlobStore):
        assert len(batches) == 5


def test_missing_key_is_file_not_found(store):
    uri = "blob://sessions/nobody/audio.wav"
    with pytest.raises(FileNotFoundError):
        store.get_bytes(uri)
    with pytest.raises(FileNotFoundError):
        store.get_json(uri)
    with pytest.raises(FileNotFoundError):
        with store.local_copy(uri):
            pass
    with pytest.raises(FileNotFoundError):
        store.with_local_copy(uri, decode_audio)
    assert store.exists(uri) is False
    assert store.delete(uri) is False


def test_invalid_keys_are_refused(store):
    for uri in ("blob://../etc/passwd", "blob:///abs", "s3://bucket/key"):
        with pytest.raises(ValueError):
            store.get_bytes(uri)
    with pytest.raises(ValueError):
        store.put_bytes("sessions/../../escape", b"x")


async def test_real_audio_decodes_through_local_copy(store):
    data = (DATA / "jfk.flac").read_bytes()
    stored = await store.put_stream("sessions/jfk/audio.flac", _chunks(data))
    audio = store.with_local_copy(stored.uri, decode_audio)
    assert 10.5 < len(audio) / SAMPLE_RATE < 11.5  # the JFK clip is 11 s
    assert audio.dtype.name == "float32" and float(abs(audio).max()) > 0.1


def test_s3_open_streams_whole_and_ranged(s3_endpoint):
    store = _s3_store(s3_endpoint, "ranges")
    data = os.urandom(1000)
    uri = store.put_bytes("sessions/r/audio.wav", data)
    whole = store.open(uri)
    assert whole.size == 1000 and b"".join(whole.chunks(128)) == data
    part = store.open(uri, "bytes=100-199")
    assert part.size == 100 and part.content_range == "bytes 100-199/1000" and part.total_size == 1000
    assert b"".join(part.chunks()) == data[100:200]
    with pytest.raises(BlobRangeNotSatisfiable):
        store.open(uri, "bytes=5000-")
    with pytest.raises(FileNotFoundError):
        store.open("blob://sessions/r/missing.wav")


def test_unknown_backend_and_missing_bucket_are_rejected():
    with pytest.raises(ValueError):
        create_blob_store(Settings(blob_backend="gcs"))
    with pytest.raises(ValueError):
        create_blob_store(Settings(blob_backend="s3", s3_bucket=None))
