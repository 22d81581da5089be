"""The sealed blob store over both backends (local directory, S3 via moto in server mode):
an upload streamed in is ciphertext where it is stored, and whole, ranged and local-copy
reads give back the original bytes; without the session's key nothing reads."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from shared.blobstore import SealedBlobStore, session_prefix
from shared.shredding import BLOB_CHUNK, KeyShredded
from tests.conftest import DATA
from tests.integration.test_s3_blobstore import _chunks, s3_endpoint, store  # noqa: F401  (fixtures)
from tests.unit.test_sealed_blobs import FakeKeys


@pytest.fixture
def sealed(store):  # noqa: F811
    return SealedBlobStore(store, FakeKeys(), create_keys=True)


def test_an_upload_is_sealed_at_rest_and_reads_back_on_either_backend(sealed):
    audio = (DATA / "jfk.flac").read_bytes()
    sid = uuid.uuid4()
    stored = asyncio.run(sealed.put_stream(f"{session_prefix(sid)}audio.flac", _chunks(audio)))
    assert stored.size == len(audio)
    at_rest = sealed.inner.get_bytes(stored.uri)
    assert at_rest[:4] == b"TBE1" and audio[1000:1064] not in at_rest
    assert sealed.get_bytes(stored.uri) == audio
    first, last = 3 * BLOB_CHUNK - 100, 5 * BLOB_CHUNK + 100
    obj = sealed.open(stored.uri, f"bytes={first}-{last}")
    assert b"".join(obj.chunks()) == audio[first:last + 1]
    assert obj.content_range == f"bytes {first}-{last}/{len(audio)}"
    with sealed.local_copy(stored.uri) as path:
        assert path.read_bytes() == audio and path.suffix == ".flac"
    sealed.keys.keys.clear()  # DELETE destroyed the key
    with pytest.raises(KeyShredded):
        sealed.get_bytes(stored.uri)
