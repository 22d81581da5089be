"""Upload validation: extension allow-list, magic bytes, and a real decode probe.
Plain domain code; the route streams the body to disk and calls these."""

from __future__ import annotations

from pathlib import Path

from shared.audio import AudioDecodeError, AudioProbe, probe_audio


class UploadRejected(Exception):
    def __init__(self, status_code: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.status_code, self.code, self.reason = status_code, code, reason


CONTENT_TYPES = {
    "wav": "audio/wav", "mp3": "audio/mpeg", "m4a": "audio/mp4", "flac": "audio/flac",
    "ogg": "audio/ogg", "webm": "audio/webm", "mp4": "audio/mp4",
}


def check_extension(filename: str | None, allowed: set[str]) -> str:
    if not filename:
        raise UploadRejected(422, "missing_filename", "the uploaded file has no name")
    ext = Path(filename).suffix.lower().lstrip(".")
    if ext not in allowed:
        raise UploadRejected(
            415, "unsupported_extension",
            f"'.{ext or '?'}' files are not accepted; allowed: {', '.join(sorted(allowed))}",
        )
    return ext


def sniff_container(head: bytes) -> str | None:
    """Identify the container from its first bytes (None: unknown)."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0):
        return "mp3"
    return None


# Which sniffed containers each extension may hold (m4a/mp4 share ISO-BMFF; webm is Matroska).
COMPATIBLE = {
    "wav": {"wav"}, "flac": {"flac"}, "ogg": {"ogg"}, "webm": {"webm"},
    "mp3": {"mp3"}, "m4a": {"mp4"}, "mp4": {"mp4"},
}


def check_magic(ext: str, head: bytes) -> None:
    if not head:
        raise UploadRejected(422, "empty_file", "the uploaded file is empty")
    kind = sniff_container(head)
    if kind is None:
        raise UploadRejected(415, "not_audio", f"the file's content is not a recognised audio format (named .{ext})")
    if kind not in COMPATIBLE.get(ext, set()):
        raise UploadRejected(415, "extension_mismatch", f"the file is named .{ext} but its content is {kind}")


def check_decodes(path: Path, max_duration_s: float, max_bytes: int | None = None) -> AudioProbe:
    try:
        return probe_audio(path, max_duration_s=max_duration_s, max_bytes=max_bytes)
    except AudioDecodeError as exc:
        status = 413 if exc.code in ("too_long", "too_large") else 422
        raise UploadRejected(status, exc.code, exc.reason) from exc
