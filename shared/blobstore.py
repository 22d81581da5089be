"""Blob storage behind one small interface. Audio and oversized event payloads live
here; events carry a ``blob://<key>`` URI, never bytes. Local directory by default;
an S3-compatible store plugs in behind the same protocol."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

SCHEME = "blob://"


class BlobStore(Protocol):
    def path_for(self, uri: str) -> Path: ...
    async def put_stream(self, key: str, chunks: AsyncIterator[bytes], max_bytes: int | None = None) -> "StoredBlob": ...
    def put_bytes(self, key: str, data: bytes) -> str: ...
    def get_bytes(self, uri: str) -> bytes: ...
    def delete(self, uri: str) -> bool: ...
    def delete_prefix(self, prefix: str) -> int: ...
    def exists(self, uri: str) -> bool: ...


class BlobTooLarge(Exception):
    pass


class StoredBlob:
    def __init__(self, uri: str, size: int, sha256: str, path: Path) -> None:
        self.uri, self.size, self.sha256, self.path = uri, size, sha256, path


class LocalBlobStore:
    """Files under a root directory. Writes go to a temp name and are renamed into place,
    so a reader never sees a half-written blob."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _key_of(self, uri: str) -> str:
        if not uri.startswith(SCHEME):
            raise ValueError(f"not a blob uri: {uri!r}")
        key = uri[len(SCHEME):]
        if ".." in Path(key).parts or key.startswith("/"):
            raise ValueError("invalid blob key")
        return key

    def path_for(self, uri: str) -> Path:
        return self.root / self._key_of(uri)

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes], max_bytes: int | None = None) -> StoredBlob:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        digest, size = hashlib.sha256(), 0
        try:
            with open(tmp, "wb") as fh:
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
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        tmp.write_bytes(data)
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


def session_prefix(session_id) -> str:
    return f"sessions/{session_id}/"
