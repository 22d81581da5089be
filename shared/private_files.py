"""Files that hold patient data or its traces (audio, payloads, logs, secrets) are
readable by their owner only: folders 0700, files 0600, whatever the process umask.

``Path.mkdir(parents=True)`` gives missing parents the umask's mode, and ``open()``
gives new files 0666 & ~umask (usually world-readable), hence these helpers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path, base: Path | None = None) -> Path:
    """Create ``path`` and every missing folder between ``base`` (or the first existing
    ancestor) and it with mode 0700; an existing ``path`` is narrowed to 0700 too."""
    path = Path(path)
    missing: list[Path] = []
    current = path
    while not current.exists() and current != base and current.parent != current:
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        folder.mkdir(mode=DIR_MODE, exist_ok=True)
        os.chmod(folder, DIR_MODE)  # mkdir's mode is masked by the umask
    if not missing:
        try:
            os.chmod(path, DIR_MODE)
        except PermissionError:  # a mount point owned by someone else: leave it
            pass
    return path


def open_private(path: Path, mode: str = "wb") -> BinaryIO:
    """``open(path, mode)`` for binary write ("wb") or append ("ab"), created 0600; an
    existing file is narrowed to 0600 before anything is written to it."""
    flags = {"wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "ab": os.O_WRONLY | os.O_CREAT | os.O_APPEND}[mode]
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def write_private(path: Path, data: bytes) -> None:
    with open_private(path, "wb") as fh:
        fh.write(data)
