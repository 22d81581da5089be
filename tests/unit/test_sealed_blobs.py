"""Blobs of a session are sealed with its data key on the local store: the file on disk holds
no plaintext, reads (whole, ranged, as a local copy) give the plaintext back, and once the
key is gone nothing can be read or written."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from shared.blobstore import BlobRangeNotSatisfiable, LocalBlobStore, SealedBlobStore, key_of
from shared.shredding import BLOB_CHUNK, KeyShredded, new_data_key

TEXT = b"the client spoke about her brother and the hospital in lisbon. " * 3000  # ~190 KB, 3 chunks


class FakeKeys:
    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}

    async def get(self, session_id):
        return self.keys.get(str(session_id))

    async def create(self, session_id):
        return self.keys.setdefault(str(session_id), new_data_key())

    def get_blocking(self, session_id):
        return self.keys.get(str(session_id))


@pytest.fixture
def store(tmp_path):
    return SealedBlobStore(LocalBlobStore(tmp_path), FakeKeys())


def session_key(sid, name="segments.json") -> str:
    return f"sessions/{sid}/{name}"


def test_a_sealed_blob_holds_no_plaintext_on_disk_and_reads_back(store):
    sid = uuid.uuid4()
    store.keys.keys[str(sid)] = new_data_key()
    uri = store.put_bytes(session_key(sid), TEXT)
    on_disk = store.inner.path_for(uri).read_bytes()
    assert b"lisbon" not in on_disk and b"brother" not in on_disk
    assert store.get_bytes(uri) == TEXT
    with store.local_copy(uri) as path:
        assert path.read_bytes() == TEXT
    assert store.get_json(store.put_json(session_key(sid, "x.json"), {"w": "lisbon"})) == {"w": "lisbon"}


@pytest.mark.parametrize("byte_range,first,last", [
    ("bytes=0-99", 0, 99),
    (f"bytes={BLOB_CHUNK - 5}-{2 * BLOB_CHUNK + 5}", BLOB_CHUNK - 5, 2 * BLOB_CHUNK + 5),
    (f"bytes={len(TEXT) - 10}-", len(TEXT) - 10, len(TEXT) - 1),
    ("bytes=-7", len(TEXT) - 7, len(TEXT) - 1),
    (f"bytes=5-{10 * len(TEXT)}", 5, len(TEXT) - 1),
])
def test_ranged_reads_decrypt_what_the_player_asks_for(store, byte_range, first, last):
    sid = uuid.uuid4()
    store.keys.keys[str(sid)] = new_data_key()
    uri = store.put_bytes(session_key(sid, "audio.wav"), TEXT)
    obj = store.open(uri, byte_range)
    body = b"".join(obj.chunks())
    assert body == TEXT[first:last + 1] and obj.size == len(body)
    assert obj.content_range == f"bytes {first}-{last}/{len(TEXT)}"
    whole = store.open(uri)
    assert b"".join(whole.chunks()) == TEXT and whole.content_range is None


def test_a_range_past_the_end_is_not_satisfiable(store):
    sid = uuid.uuid4()
    store.keys.keys[str(sid)] = new_data_key()
    uri = store.put_bytes(session_key(sid), b"abc")
    with pytest.raises(BlobRangeNotSatisfiable):
        store.open(uri, "bytes=3-")


def test_streamed_upload_is_sealed_and_creates_the_key_only_where_allowed(store):
    sid = uuid.uuid4()

    async def chunks():
        for i in range(0, len(TEXT), 10_000):
            yield TEXT[i:i + 10_000]

    with pytest.raises(KeyShredded):  # a worker never creates a key: no key means deleted
        asyncio.run(store.put_stream(session_key(sid, "audio.wav"), chunks()))
    store.create_keys = True  # the gateway's upload
    stored = asyncio.run(store.put_stream(session_key(sid, "audio.wav"), chunks()))
    assert stored.size == len(TEXT)
    assert b"lisbon" not in store.inner.path_for(stored.uri).read_bytes()
    assert store.get_bytes(stored.uri) == TEXT


def test_without_its_key_a_blob_can_be_neither_read_nor_written(store):
    sid = uuid.uuid4()
    store.keys.keys[str(sid)] = new_data_key()
    uri = store.put_bytes(session_key(sid), TEXT)
    del store.keys.keys[str(sid)]  # DELETE destroyed it
    with pytest.raises(KeyShredded):
        store.get_bytes(uri)
    with pytest.raises(KeyShredded):
        store.put_bytes(session_key(sid, "late.json"), b"{}")
    store.keys.keys[str(sid)] = new_data_key()  # even a new key for the same id opens nothing
    with pytest.raises(KeyShredded):
        store.get_bytes(uri)
    with pytest.raises(ValueError):
        store.put_bytes("elsewhere/file.json", b"{}")
    assert key_of(uri).startswith(f"sessions/{sid}/")


def test_a_blob_written_before_sealing_is_read_as_it_is_while_its_session_has_a_key(store):
    sid = uuid.uuid4()
    uri = store.inner.put_bytes(session_key(sid, "audio.wav"), TEXT)  # an upload from before this change
    store.keys.keys[str(sid)] = new_data_key()  # the migration gave the session a key
    assert store.get_bytes(uri) == TEXT
    obj = store.open(uri, "bytes=10-19")
    assert b"".join(obj.chunks()) == TEXT[10:20] and obj.content_range == f"bytes 10-19/{len(TEXT)}"
    del store.keys.keys[str(sid)]
    with pytest.raises(KeyShredded):
        store.get_bytes(uri)
