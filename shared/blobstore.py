"""Blob storage behind one small interface. Audio and oversized event payloads live
here; events carry a ``blob://<key>`` URI, never bytes. Local directory by default
(``TB_BLOB_BACKEND=local``); an S3-compatible store (AWS S3, MinIO) with
``TB_BLOB_BACKEND=s3``. Pick one with :func:`create_blob_store`.

Every method except ``put_stream`` is blocking (the S3 ones do network I/O): call them
from a worker thread (``ServiceRuntime.run_blocking`` / ``asyncio.to_thread``).
There is no ``path_for`` in the protocol, since an S3 object has no local path: code that
needs a file uses ``local_copy(uri)`` (or ``with_local_copy(uri, fn)`` from a thread)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, ContextManager, Protocol, TypeVar

from shared.private_files import open_private, private_dir, write_private

if TYPE_CHECKING:  # pragma: no cover
    from shared.settings import Settings

SCHEME = "blob://"
T = TypeVar("T")


class BlobStore(Protocol):
    async def put_stream(self, key: str, chunks: AsyncIterator[bytes], max_bytes: int | None = None) -> "StoredBlob": ...
    def put_bytes(self, key: str, data: bytes) -> str: ...
    def put_json(self, key: str, obj: Any) -> str: ...
    def get_bytes(self, uri: str) -> bytes: ...
    def get_json(self, uri: str) -> Any: ...
    def local_copy(self, uri: str) -> ContextManager[Path]: ...
    def with_local_copy(self, uri: str, fn: Callable[..., T], *args: Any) -> T: ...
    def delete(self, uri: str) -> bool: ...
    def delete_prefix(self, prefix: str) -> int: ...
    def exists(self, uri: str) -> bool: ...


class BlobTooLarge(Exception):
    pass


class BlobRangeNotSatisfiable(ValueError):
    """A byte range outside the blob (HTTP 416)."""


class StoredBlob:
    """``path`` is the blob's file for the local store, None for S3 (use ``local_copy``)."""

    def __init__(self, uri: str, size: int, sha256: str, path: Path | None) -> None:
        self.uri, self.size, self.sha256, self.path = uri, size, sha256, path


def _check_key(key: str) -> str:
    if not key or key.startswith("/") or "\\" in key or ".." in PurePosixPath(key).parts:
        raise ValueError("invalid blob key")
    return key


def key_of(uri: str) -> str:
    if not uri.startswith(SCHEME):
        raise ValueError(f"not a blob uri: {uri!r}")
    return _check_key(uri[len(SCHEME):])


class LocalBlobStore:
    """Files under a root directory. Writes go to a temp name and are renamed into place,
    so a reader never sees a half-written blob. Folders are 0700 and files 0600: they
    hold therapy recordings."""

    def __init__(self, root: Path) -> None:
        self.root = private_dir(Path(root).resolve())

    def _key_of(self, uri: str) -> str:
        return key_of(uri)

    def path_for(self, uri: str) -> Path:
        """Local store only: the blob's real file."""
        return self.root / self._key_of(uri)

    @contextmanager
    def local_copy(self, uri: str) -> Iterator[Path]:
        """The blob as a readable local file: here, its real path (nothing to clean up)."""
        path = self.path_for(uri)
        if not path.is_file():
            raise FileNotFoundError(f"no blob {uri}")
        yield path

    def with_local_copy(self, uri: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(path, *args)`` on a local copy of the blob; blocking, run it in a thread."""
        with self.local_copy(uri) as path:
            return fn(path, *args)

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes], max_bytes: int | None = None) -> StoredBlob:
        target = self.root / _check_key(key)
        private_dir(target.parent, base=self.root)
        tmp = target.with_name(target.name + ".part")
        digest, size = hashlib.sha256(), 0
        try:
            with open_private(tmp) as fh:
                async for chunk in chunks:
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise BlobTooLarge(f"larger than {max_bytes} bytes")
                    digest.update(chunk)
                    fh.write(chunk)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return StoredBlob(SCHEME + key, size, digest.hexdigest(), target)

    def put_bytes(self, key: str, data: bytes) -> str:
        target = self.root / _check_key(key)
        private_dir(target.parent, base=self.root)
        tmp = target.with_name(target.name + ".part")
        write_private(tmp, data)
        os.replace(tmp, target)
        return SCHEME + key

    def put_json(self, key: str, obj: Any) -> str:
        return self.put_bytes(key, json.dumps(obj).encode())

    def get_bytes(self, uri: str) -> bytes:
        return self.path_for(uri).read_bytes()

    def get_json(self, uri: str) -> Any:
        return json.loads(self.get_bytes(uri))

    def exists(self, uri: str) -> bool:
        return self.path_for(uri).exists()

    def delete(self, uri: str) -> bool:
        path = self.path_for(uri)
        existed = path.exists()
        path.unlink(missing_ok=True)
        return existed

    def delete_prefix(self, prefix: str) -> int:
        """Delete every blob under a key prefix (e.g. ``sessions/<id>/``)."""
        base = self.root / prefix
        if not base.exists():
            return 0
        count = sum(1 for p in base.rglob("*") if p.is_file()) if base.is_dir() else 1
        shutil.rmtree(base) if base.is_dir() else base.unlink()
        return count


# --- S3 ------------------------------------------------------------------------------------
MIN_PART_BYTES = 5 * 1024 * 1024  # S3's smallest part (all but the last)
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


def _missing(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code")) in _MISSING


class S3Object:
    """An open object body for streaming (``S3BlobStore.open``): iterate ``chunks()`` from a
    thread (Starlette's StreamingResponse does that for a sync iterator), then ``close()``."""

    def __init__(self, body, size: int, content_range: str | None, total_size: int | None) -> None:
        self.body, self.size, self.content_range, self.total_size = body, size, content_range, total_size

    def chunks(self, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        try:
            yield from self.body.iter_chunks(chunk_size)
        finally:
            self.close()

    def close(self) -> None:
        self.body.close()


class S3BlobStore:
    """Objects in one S3 bucket under an optional key prefix. ``blob://<key>`` maps to
    ``s3://<bucket>/<prefix><key>``. boto3 is synchronous: every method but ``put_stream``
    blocks, and ``put_stream`` runs each network call in a thread. S3 puts are atomic, so a
    reader never sees a half-written object; an oversized or failed stream aborts its
    multipart upload so nothing is left behind."""

    def __init__(self, bucket: str, *, prefix: str = "", endpoint_url: str | None = None, region: str | None = None,
                 access_key_id: str | None = None, secret_access_key: str | None = None,
                 part_size: int = 8 * 1024 * 1024, list_page_size: int = 1000, client: Any = None) -> None:
        if not bucket:
            raise ValueError("S3 blob store needs a bucket (TB_S3_BUCKET)")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.bucket, self.prefix = bucket, prefix
        self.part_size = max(int(part_size), MIN_PART_BYTES)
        self.list_page_size = max(1, min(int(list_page_size), 1000))
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                signature_version="s3v4",
                retries={"max_attempts": 5, "mode": "standard"},
                max_pool_connections=16,
                # MinIO and most S3-compatibles want path-style addressing.
                s3={"addressing_style": "path" if endpoint_url else "auto"},
            )
            client = boto3.session.Session().client(
                "s3", endpoint_url=endpoint_url, region_name=region, aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key, config=config,
            )
        self.client = client

    # keys ------------------------------------------------------------------------------
    def _object_key(self, uri: str) -> str:
        return self.prefix + key_of(uri)

    # writes ----------------------------------------------------------------------------
    async def put_stream(self, key: str, chunks: AsyncIterator[bytes], max_bytes: int | None = None) -> StoredBlob:
        """Stream into the bucket: a single PUT if the whole blob fits in one part, else a
        multipart upload whose parts are uploaded from a thread as they fill."""
        obj_key = self.prefix + _check_key(key)
        digest, size = hashlib.sha256(), 0
        buffer = bytearray()
        upload_id: str | None = None
        parts: list[dict] = []
        try:
            async for chunk in chunks:
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise BlobTooLarge(f"larger than {max_bytes} bytes")
                digest.update(chunk)
                buffer += chunk
                while len(buffer) >= self.part_size:
                    if upload_id is None:
                        created = await asyncio.to_thread(
                            self.client.create_multipart_upload, Bucket=self.bucket, Key=obj_key)
                        upload_id = created["UploadId"]
                    part, buffer = bytes(buffer[:self.part_size]), buffer[self.part_size:]
                    parts.append(await self._upload_part(obj_key, upload_id, len(parts) + 1, part))
            if upload_id is None:
                await asyncio.to_thread(self.client.put_object, Bucket=self.bucket, Key=obj_key, Body=bytes(buffer))
            else:
                if buffer or not parts:
                    parts.append(await self._upload_part(obj_key, upload_id, len(parts) + 1, bytes(buffer)))
                await asyncio.to_thread(
                    self.client.complete_multipart_upload, Bucket=self.bucket, Key=obj_key, UploadId=upload_id,
                    MultipartUpload={"Parts": parts})
        except BaseException:
            if upload_id is not None:
                # Shielded: a cancelled upload still aborts (S3 would otherwise keep the parts).
                await asyncio.shield(asyncio.to_thread(self._abort, obj_key, upload_id))
            raise
        return StoredBlob(SCHEME + key, size, digest.hexdigest(), None)

    async def _upload_part(self, obj_key: str, upload_id: str, number: int, data: bytes) -> dict:
        result = await asyncio.to_thread(
            self.client.upload_part, Bucket=self.bucket, Key=obj_key, UploadId=upload_id, PartNumber=number, Body=data)
        return {"PartNumber": number, "ETag": result["ETag"]}

    def _abort(self, obj_key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=obj_key, UploadId=upload_id)
        except Exception:  # pragma: no cover - best effort; a bucket lifecycle rule cleans up the rest
            pass

    def put_bytes(self, key: str, data: bytes) -> str:
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + _check_key(key), Body=data)
        return SCHEME + key

    def put_json(self, key: str, obj: Any) -> str:
        return self.put_bytes(key, json.dumps(obj).encode())

    # reads -----------------------------------------------------------------------------
    def _get(self, uri: str, **kwargs: Any) -> dict:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._object_key(uri), **kwargs)
        except self.client.exceptions.ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(f"no blob {uri}") from exc
            raise

    def get_bytes(self, uri: str) -> bytes:
        body = self._get(uri)["Body"]
        try:
            return body.read()
        finally:
            body.close()

    def get_json(self, uri: str) -> Any:
        return json.loads(self.get_bytes(uri))

    def open(self, uri: str, byte_range: str | None = None) -> S3Object:
        """Open the object for streaming; ``byte_range`` is an HTTP Range header value,
        passed to S3 as is (an unsatisfiable one raises BlobRangeNotSatisfiable)."""
        try:
            response = self._get(uri, **({"Range": byte_range} if byte_range else {}))
        except self.client.exceptions.ClientError as exc:
            if str((getattr(exc, "response", None) or {}).get("Error", {}).get("Code")) in ("InvalidRange", "416"):
                raise BlobRangeNotSatisfiable(byte_range) from exc
            raise
        content_range = response.get("ContentRange")
        total = int(content_range.rsplit("/", 1)[1]) if content_range and "/" in content_range \
            and content_range.rsplit("/", 1)[1].isdigit() else None
        return S3Object(response["Body"], int(response["ContentLength"]), content_range, total)

    @contextmanager
    def local_copy(self, uri: str) -> Iterator[Path]:
        """Download the object to a temporary file (same suffix, so decoders can guess the
        format), yield its path, and delete it afterwards."""
        obj_key = self._object_key(uri)
        suffix = PurePosixPath(obj_key).suffix
        fd, name = tempfile.mkstemp(prefix="tb-blob-", suffix=suffix)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as fh:
                try:
                    self.client.download_fileobj(self.bucket, obj_key, fh)
                except self.client.exceptions.ClientError as exc:
                    if _missing(exc):
                        raise FileNotFoundError(f"no blob {uri}") from exc
                    raise
            yield path
        finally:
            path.unlink(missing_ok=True)

    def with_local_copy(self, uri: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(path, *args)`` on a local copy of the blob; blocking, run it in a thread."""
        with self.local_copy(uri) as path:
            return fn(path, *args)

    def exists(self, uri: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._object_key(uri))
        except self.client.exceptions.ClientError as exc:
            if _missing(exc):
                return False
            raise
        return True

    # deletes ---------------------------------------------------------------------------
    def delete(self, uri: str) -> bool:
        existed = self.exists(uri)
        if existed:
            self.client.delete_object(Bucket=self.bucket, Key=self._object_key(uri))
        return existed

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under a key prefix (e.g. ``sessions/<id>/``), listing page by
        page and deleting each page in one batch request."""
        _check_key(prefix.rstrip("/") or "")  # refuses "" (the whole store) and ".."
        paginator = self.client.get_paginator("list_objects_v2")
        count = 0
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix,
                                       PaginationConfig={"PageSize": self.list_page_size}):
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if not keys:
                continue
            result = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
            if result.get("Errors"):
                first = result["Errors"][0]
                raise OSError(f"S3 delete failed for {len(result['Errors'])} keys, e.g. {first.get('Key')}: "
                              f"{first.get('Code')} {first.get('Message')}")
            count += len(keys)
        return count


def create_blob_store(settings: "Settings") -> BlobStore:
    """The blob store the settings select: ``local`` (TB_BLOB_DIR) or ``s3`` (TB_S3_*)."""
    backend = settings.blob_backend.lower().strip()
    if backend == "local":
        return LocalBlobStore(settings.blob_dir)
    if backend == "s3":
        return S3BlobStore(
            settings.s3_bucket or "",
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url or None,
            region=settings.s3_region or None,
            access_key_id=settings.s3_access_key_id or None,
            secret_access_key=settings.s3_secret_access_key or None,
            part_size=settings.s3_part_size_bytes,
        )
    raise ValueError(f"unknown blob backend {settings.blob_backend!r}: use 'local' or 's3'")


def session_prefix(session_id) -> str:
    return f"sessions/{session_id}/"


# --- sealed (crypto-shredding) ----------------------------------------------------------------
class SealedObject:
    """A decrypting stream over a byte range of a sealed blob (``SealedBlobStore.open``):
    the same shape as S3Object (``size``, ``content_range``, ``chunks()``, ``close()``)."""

    def __init__(self, frames: Iterator[bytes], skip: int, size: int, content_range: str | None,
                 total_size: int) -> None:
        self._frames, self._skip = frames, skip
        self.size, self.content_range, self.total_size = size, content_range, total_size

    def chunks(self, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        skip, left = self._skip, self.size
        for plain in self._frames:
            piece = plain[skip:skip + left]
            skip = max(0, skip - len(plain))
            left -= len(piece)
            if piece:
                yield piece
            if left <= 0:
                break

    def close(self) -> None:
        close = getattr(self._frames, "close", None)
        if close:
            close()


def _byte_range(byte_range: str | None, total: int) -> tuple[int, int] | None:
    """(first, last) of an HTTP ``bytes=`` range over ``total`` bytes; None: the whole blob."""
    if not byte_range:
        return None
    first, _, last = byte_range.removeprefix("bytes=").partition("-")
    if not first:  # a suffix: the last N bytes
        first, last = str(max(0, total - int(last))), ""
    start, end = int(first), min(int(last) if last else total - 1, total - 1)
    if start >= total or start > end:
        raise BlobRangeNotSatisfiable(byte_range)
    return start, end


class SealedBlobStore:
    """Any blob store, with every blob under ``sessions/<id>/`` encrypted with that session's
    data key (shared/shredding.py): sealed on write, opened on read. A session without a key
    was deleted, so its blobs can be neither written nor read (KeyShredded); a key outside
    ``sessions/`` is refused. Blocking methods look the key up through ``keys.get_blocking``:
    call them from a worker thread, as every blob call already is."""

    def __init__(self, inner: BlobStore, keys: Any, create_keys: bool = False) -> None:
        self.inner, self.keys = inner, keys
        self.create_keys = create_keys  # the gateway: an upload's audio creates its session's key

    # keys ------------------------------------------------------------------------------
    @staticmethod
    def _session_of(blob_key: str) -> str:
        import uuid

        parts = PurePosixPath(_check_key(blob_key)).parts
        if len(parts) < 3 or parts[0] != "sessions":
            raise ValueError("a sealed blob lives under sessions/<id>/")
        return str(uuid.UUID(parts[1]))

    def _key(self, blob_key: str) -> bytes:
        from shared.shredding import KeyShredded

        key = self.keys.get_blocking(self._session_of(blob_key))
        if key is None:
            raise KeyShredded("the session's data key is gone")
        return key

    # writes ----------------------------------------------------------------------------
    async def put_stream(self, key: str, chunks: AsyncIterator[bytes], max_bytes: int | None = None) -> StoredBlob:
        """Seal while streaming; ``size`` and ``sha256`` describe the plaintext (the upload)."""
        from shared.shredding import BlobSealer, KeyShredded

        session_id = self._session_of(key)
        data_key = await self.keys.get(session_id)
        if data_key is None and self.create_keys:
            data_key = await self.keys.create(session_id)
        if data_key is None:
            raise KeyShredded("the session's data key is gone")
        sealer, digest, size = BlobSealer(data_key, key), hashlib.sha256(), 0

        async def sealed() -> AsyncIterator[bytes]:
            nonlocal size
            async for chunk in chunks:
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise BlobTooLarge(f"larger than {max_bytes} bytes")
                digest.update(chunk)
                yield await asyncio.to_thread(sealer.update, chunk)  # AES off the event loop
            yield sealer.finish()

        stored = await self.inner.put_stream(key, sealed())
        return StoredBlob(stored.uri, size, digest.hexdigest(), stored.path)

    def put_bytes(self, key: str, data: bytes) -> str:
        from shared.shredding import seal_blob

        return self.inner.put_bytes(key, seal_blob(self._key(key), key, data))

    def put_json(self, key: str, obj: Any) -> str:
        return self.put_bytes(key, json.dumps(obj).encode())

    # reads -----------------------------------------------------------------------------
    def get_bytes(self, uri: str) -> bytes:
        from shared.shredding import open_blob

        blob_key = key_of(uri)
        data_key, stored = self._key(blob_key), self.inner.get_bytes(uri)
        return open_blob(data_key, blob_key, stored) if self._sealed(stored) else stored

    @staticmethod
    def _sealed(head: bytes) -> bool:
        """Blobs written before sealing (or by hand) are read as they are, once the session's
        key shows it is not deleted; sealed ones start with the magic (no audio format does)."""
        from shared.shredding import BLOB_MAGIC

        return head[:len(BLOB_MAGIC)] == BLOB_MAGIC

    def get_json(self, uri: str) -> Any:
        return json.loads(self.get_bytes(uri))

    def _sealed_size(self, uri: str) -> int:
        if isinstance(self.inner, LocalBlobStore):
            path = self.inner.path_for(uri)
            if not path.is_file():
                raise FileNotFoundError(f"no blob {uri}")
            return path.stat().st_size
        try:
            head = self.inner.client.head_object(Bucket=self.inner.bucket, Key=self.inner._object_key(uri))
        except self.inner.client.exceptions.ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(f"no blob {uri}") from exc
            raise
        return int(head["ContentLength"])

    def _sealed_bytes(self, uri: str, start: int, end: int) -> Iterator[bytes]:
        if isinstance(self.inner, LocalBlobStore):
            with open(self.inner.path_for(uri), "rb") as fh:
                fh.seek(start)
                left = end + 1 - start
                while left > 0 and (piece := fh.read(min(256 * 1024, left))):
                    left -= len(piece)
                    yield piece
            return
        yield from self.inner.open(uri, f"bytes={start}-{end}").chunks()

    def open(self, uri: str, byte_range: str | None = None) -> SealedObject:
        """Open for streaming, decrypting only the chunks a byte range (``bytes=a-b``) covers."""
        from shared.shredding import BLOB_CHUNK, chunk_span, open_frames, plaintext_size, total_chunks

        blob_key = key_of(uri)
        data_key, sealed_size = self._key(blob_key), self._sealed_size(uri)
        if not self._sealed(b"".join(self._sealed_bytes(uri, 0, 3))):
            return self._open_unsealed(uri, byte_range, sealed_size)
        total = plaintext_size(sealed_size)
        wanted = _byte_range(byte_range, total) if total else None
        first, last = wanted or (0, max(total - 1, 0))
        start, end = chunk_span(first, last, sealed_size)
        frames = open_frames(data_key, blob_key, self._sealed_bytes(uri, start, end), first // BLOB_CHUNK,
                             total_chunks(sealed_size))
        content_range = f"bytes {first}-{last}/{total}" if wanted else None
        return SealedObject(frames, first % BLOB_CHUNK, (last - first + 1) if total else 0, content_range, total)

    def _open_unsealed(self, uri: str, byte_range: str | None, total: int) -> SealedObject:
        wanted = _byte_range(byte_range, total) if total else None
        first, last = wanted or (0, max(total - 1, 0))
        pieces = self._sealed_bytes(uri, first, last) if total else iter(())
        content_range = f"bytes {first}-{last}/{total}" if wanted else None
        return SealedObject(pieces, 0, (last - first + 1) if total else 0, content_range, total)

    @contextmanager
    def local_copy(self, uri: str) -> Iterator[Path]:
        """The blob decrypted into a private temporary file (same suffix), deleted afterwards."""
        suffix = PurePosixPath(key_of(uri)).suffix
        fd, name = tempfile.mkstemp(prefix="tb-blob-", suffix=suffix)  # 0600
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as fh:
                for piece in self.open(uri).chunks():
                    fh.write(piece)
            yield path
        finally:
            path.unlink(missing_ok=True)

    def with_local_copy(self, uri: str, fn: Callable[..., T], *args: Any) -> T:
        with self.local_copy(uri) as path:
            return fn(path, *args)

    def exists(self, uri: str) -> bool:
        return self.inner.exists(uri)

    def delete(self, uri: str) -> bool:
        return self.inner.delete(uri)

    def delete_prefix(self, prefix: str) -> int:
        return self.inner.delete_prefix(prefix)
