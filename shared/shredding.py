"""Crypto-shredding: patient data in events and blobs is encrypted with a per-session data
key (AES-256-GCM) kept in the ``session_keys`` table. Deleting a session destroys its key,
so every copy of its events (outbox, broker topics, DLQs, consumer logs, database and broker
backups) and of its blobs becomes unreadable, wherever it went. See docs/adr/0006-crypto-shredding.md.

Events: on a topic in ``SEALED_TOPICS`` the whole payload is sealed except ``session_id``
and ``schema_version`` (kept in clear so a record can be routed, keyed and dropped without
the key): ``{"session_id", "schema_version", "sealed": base64(nonce | ciphertext)}``. The
associated data binds the ciphertext to its topic and session, so it cannot be replayed
under another one. Sealing happens once, in ``shared.outbox.enqueue``; opening once, in
``shared.broker.open_message`` (the runtime's parse path): handlers see plain models.

Blobs: a chunked AES-GCM stream (``BLOB_MAGIC``, then chunks of ``BLOB_CHUNK`` plaintext
bytes, each ``nonce | ciphertext | tag``), so a byte range of the plaintext maps to whole
chunks of the ciphertext and the audio player's ranged reads decrypt only what they ask.

A key lookup that finds nothing means the session was deleted: callers fail closed (the
event is dropped, the blob cannot be read)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import time
from collections import OrderedDict
from collections.abc import Iterator
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.contracts.events import Topic
from shared.db.tables import session_keys

# Payloads derived from the recording. diarization.ready carries only timings and speaker
# labels, but how many people spoke when is still about the patient's session: sealed too.
# Left in clear: session.deleted (it must be readable after its key is gone), progress and
# status (percentages and fixed messages), failures (ErrorInfo is PHI-free by contract) and
# the commands, except notes.regenerate: it carries the therapist's corrections (speaker
# names, edited transcript text).
SEALED_TOPICS = frozenset({
    Topic.AUDIO_UPLOADED.value,
    Topic.TRANSCRIPT_READY.value,
    Topic.DIARIZATION_READY.value,
    Topic.TRANSCRIPT_MERGED.value,
    Topic.NOTES_READY.value,
    Topic.NOTES_REGENERATE.value,
    Topic.TRANSCRIPT_CHUNK.value,  # no text, but a pointer into the recording: sealed like audio.uploaded
})
SEALED_FIELD = "sealed"
NONCE_BYTES = 12
TAG_BYTES = 16
BLOB_MAGIC = b"TBE1"
BLOB_CHUNK = 64 * 1024
BLOB_HEADER = len(BLOB_MAGIC) + 4
BLOB_FRAME = NONCE_BYTES + BLOB_CHUNK + TAG_BYTES


class KeyShredded(Exception):
    """The session's data key is gone (the session was deleted): its data cannot be read."""


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def is_sealed_topic(topic: str) -> bool:
    return topic in SEALED_TOPICS


# --- events -----------------------------------------------------------------------------------
def _event_aad(topic: str, session_id: str) -> bytes:
    return f"tb-event|{topic}|{session_id}".encode()


def seal_payload(key: bytes, topic: str, plaintext: bytes) -> bytes:
    """The sealed record value of an event's JSON payload."""
    clear = json.loads(plaintext)
    session_id = str(clear["session_id"])
    nonce = os.urandom(NONCE_BYTES)
    sealed = nonce + AESGCM(key).encrypt(nonce, plaintext, _event_aad(topic, session_id))
    return json.dumps({"session_id": session_id, "schema_version": clear.get("schema_version", 1),
                       SEALED_FIELD: base64.b64encode(sealed).decode()}).encode()


def sealed_session(value: bytes) -> str | None:
    """The session id of a sealed record value; None when the value is not sealed."""
    try:
        outer = json.loads(value)
    except ValueError:
        return None
    if isinstance(outer, dict) and SEALED_FIELD in outer and "session_id" in outer:
        return str(outer["session_id"])
    return None


def open_payload(key: bytes, topic: str, value: bytes) -> bytes:
    """The event's JSON payload from a sealed record value. Raises KeyShredded when the key
    does not open it (wrong or replaced key, tampered or moved ciphertext)."""
    outer = json.loads(value)
    sealed = base64.b64decode(outer[SEALED_FIELD])
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:],
                                   _event_aad(topic, str(outer["session_id"])))
    except InvalidTag as exc:
        raise KeyShredded("the sealed payload does not open with this key") from exc


# --- blobs ------------------------------------------------------------------------------------
def _blob_aad(blob_key: str, index: int, final: bool) -> bytes:
    # The index and the final flag stop chunks being reordered, dropped or the blob truncated.
    return f"tb-blob|{blob_key}|{index}|{int(final)}".encode()


class BlobSealer:
    """Encrypts one blob as a stream: feed plaintext with ``update``, then ``finish``."""

    def __init__(self, key: bytes, blob_key: str) -> None:
        self._aead, self._blob_key = AESGCM(key), blob_key
        self._buffer = bytearray()
        self._index = 0
        self._started = False

    def _frame(self, chunk, final: bool) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        frame = nonce + self._aead.encrypt(nonce, chunk, _blob_aad(self._blob_key, self._index, final))
        self._index += 1
        return frame

    def _header(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return BLOB_MAGIC + struct.pack(">I", BLOB_CHUNK)

    def update(self, data: bytes) -> bytes:
        out = [self._header()]
        view = memoryview(bytes(self._buffer) + data if self._buffer else data)  # chunks are views: no copies
        position = 0
        # Keep at least one byte back: the last chunk is sealed as final by ``finish``.
        while len(view) - position > BLOB_CHUNK:
            out.append(self._frame(view[position:position + BLOB_CHUNK], final=False))
            position += BLOB_CHUNK
        self._buffer = bytearray(view[position:])
        return b"".join(out)

    def finish(self) -> bytes:
        return self._header() + self._frame(bytes(self._buffer), final=True)


def seal_blob(key: bytes, blob_key: str, data: bytes) -> bytes:
    sealer = BlobSealer(key, blob_key)
    return sealer.update(data) + sealer.finish()


def plaintext_size(sealed_size: int) -> int:
    """The plaintext length of a sealed blob of ``sealed_size`` bytes."""
    body = sealed_size - BLOB_HEADER
    frames, rest = divmod(body, BLOB_FRAME)
    if rest == 0 and frames:  # the final chunk was exactly BLOB_CHUNK long
        return frames * BLOB_CHUNK
    return frames * BLOB_CHUNK + max(rest - NONCE_BYTES - TAG_BYTES, 0)


def chunk_span(first: int, last: int, sealed_size: int) -> tuple[int, int]:
    """The sealed byte range [start, end] (inclusive) holding plaintext bytes first..last."""
    start = BLOB_HEADER + (first // BLOB_CHUNK) * BLOB_FRAME
    end = min(BLOB_HEADER + (last // BLOB_CHUNK + 1) * BLOB_FRAME, sealed_size) - 1
    return start, end


def open_frames(key: bytes, blob_key: str, frames: Iterator[bytes], first_index: int, total_chunks: int) -> Iterator[bytes]:
    """Decrypt consecutive frames (``frames`` yields sealed bytes in any slicing) starting at
    chunk ``first_index`` of a blob of ``total_chunks`` chunks. Raises KeyShredded on a bad tag."""
    aead, index, buffer = AESGCM(key), first_index, bytearray()

    def open_one(frame) -> bytes:
        try:
            return aead.decrypt(frame[:NONCE_BYTES], frame[NONCE_BYTES:],
                                _blob_aad(blob_key, index, index == total_chunks - 1))
        except InvalidTag as exc:
            raise KeyShredded("the blob does not open with this key") from exc

    for piece in frames:
        view = memoryview(bytes(buffer) + piece if buffer else piece)
        position = 0
        while len(view) - position >= BLOB_FRAME and index < total_chunks - 1:
            yield open_one(view[position:position + BLOB_FRAME])
            position += BLOB_FRAME
            index += 1
        buffer = bytearray(view[position:])
    if buffer:
        yield open_one(bytes(buffer))


def total_chunks(sealed_size: int) -> int:
    return max(1, -(-(sealed_size - BLOB_HEADER) // BLOB_FRAME))


def open_blob(key: bytes, blob_key: str, sealed: bytes) -> bytes:
    if not sealed.startswith(BLOB_MAGIC):
        raise KeyShredded("not a sealed blob")
    return b"".join(open_frames(key, blob_key, iter([sealed[BLOB_HEADER:]]), 0, total_chunks(len(sealed))))


# --- the key table ----------------------------------------------------------------------------
async def create_session_key(db: AsyncSession, session_id: UUID, key: bytes | None = None) -> bytes:
    """The session's data key, stored inside the caller's transaction (the upload's) unless it
    already has one (the upload's audio, sealed while it streamed in, created it): returns it."""
    await db.execute(insert(session_keys).values(session_id=session_id, data_key=key or new_data_key())
                     .on_conflict_do_nothing(index_elements=[session_keys.c.session_id]))
    return await session_key(db, session_id)


async def destroy_session_key(db: AsyncSession, session_id: UUID) -> bool:
    """Shred the session: inside the caller's transaction (the deletion's)."""
    result = await db.execute(delete(session_keys).where(session_keys.c.session_id == session_id))
    return bool(result.rowcount)


async def session_key(db: AsyncSession, session_id: UUID | str) -> bytes | None:
    found = await db.execute(select(session_keys.c.data_key).where(session_keys.c.session_id == UUID(str(session_id))))
    row = found.first()
    return bytes(row.data_key) if row else None


class SessionKeys:
    """Per-process key cache for the read paths. Entries expire after ``ttl_s`` (a deleted
    session's key does not outlive its deletion in memory by more than that) and are dropped
    at once when this process sees the session's session.deleted. Absence is never cached."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession], ttl_s: float = 60.0,
                 max_entries: int = 4096) -> None:
        self._session_factory, self._ttl_s, self._max = session_factory, ttl_s, max_entries
        self._cache: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop ``get_blocking`` runs lookups on (the service's, bound at start)."""
        self._loop = loop

    def get_blocking(self, session_id: UUID | str, timeout_s: float = 30.0) -> bytes | None:
        """``get`` from a worker thread (blob reads and writes are blocking calls)."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("SessionKeys.get_blocking before the service started")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError("a blob call blocked the event loop: run it in a thread (run_blocking)")
        return asyncio.run_coroutine_threadsafe(self.get(session_id), loop).result(timeout_s)

    async def create(self, session_id: UUID | str) -> bytes:
        """A new session's key, committed now (before its upload's transaction: its audio is
        sealed while it streams in). Only the gateway's upload path calls this."""
        async with self._session_factory() as db, db.begin():
            key = await create_session_key(db, UUID(str(session_id)))
        self._cache[str(session_id)] = (key, time.monotonic() + self._ttl_s)
        return key

    async def get(self, session_id: UUID | str) -> bytes | None:
        sid, now = str(session_id), time.monotonic()
        hit = self._cache.get(sid)
        if hit and hit[1] > now:
            self._cache.move_to_end(sid)
            return hit[0]
        async with self._session_factory() as db:
            key = await session_key(db, sid)
        if key is None:
            self._cache.pop(sid, None)
            return None
        self._cache[sid] = (key, now + self._ttl_s)
        self._cache.move_to_end(sid)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return key

    def forget(self, session_id: UUID | str) -> None:
        self._cache.pop(str(session_id), None)
