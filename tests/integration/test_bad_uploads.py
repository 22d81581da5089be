"""Bad uploads against a running gateway (uvicorn, real port, with_broker=False; the outbox
row is what would reach the bus). Each answers 4xx with a JSON `detail` saying what was
wrong, and leaves nothing behind: no blob under blob_dir/sessions/, no sessions row, no
outbox row."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from shared.db.tables import outbox, sessions
from tests.integration.test_gateway_authz import DATA, LiveGateway, add_therapist

LIMIT = 2_000_000


def _flac_bytes(tmp_path: Path) -> bytes:
    return (DATA / "jfk.flac").read_bytes()


def cases(tmp_path: Path) -> list[tuple[str, dict, int, str]]:
    """(name, request kwargs, expected status, words expected in detail)"""
    wav = (DATA / "pyannote_sample.wav").read_bytes()
    big = wav[:44] + b"\0" * (LIMIT + 10)  # a valid-looking WAV header, over the limit
    return [
        ("empty file", {"files": {"file": ("empty.wav", b"", "audio/wav")}}, 422, "empty"),
        ("text named .wav", {"files": {"file": ("notes.wav", b"hello, this is just text\n" * 20, "audio/wav")}},
         415, "not a recognised audio"),
        ("truncated wav", {"files": {"file": ("half.wav", wav[: len(wav) // 2], "audio/wav")}}, 422, "truncated"),
        ("header-only wav", {"files": {"file": ("header.wav", wav[:44], "audio/wav")}}, 422, ""),
        ("over the limit", {"files": {"file": ("big.wav", big, "audio/wav")}}, 413, "limit"),
        ("txt extension", {"files": {"file": ("notes.txt", b"hello", "text/plain")}}, 415, ".txt"),
        ("exe extension", {"files": {"file": ("setup.exe", b"MZ\x90\x00" + b"\0" * 100, "application/octet-stream")}},
         415, ".exe"),
        ("no extension", {"files": {"file": ("recording", wav, "audio/wav")}}, 415, "not accepted"),
        ("missing file field", {"data": {"num_speakers": "2"}}, 422, "file"),
        ("wrong field name", {"files": {"audio": ("a.wav", wav, "audio/wav")}}, 422, "file"),
        ("flac named .mp3", {"files": {"file": ("talk.mp3", _flac_bytes(tmp_path), "audio/mpeg")}}, 415, "flac"),
        ("bad speaker count", {"files": {"file": ("a.wav", wav, "audio/wav")}, "data": {"num_speakers": "0"}},
         422, "num_speakers"),
        ("min > max speakers", {"files": {"file": ("a.wav", wav, "audio/wav")},
                                "data": {"min_speakers": "4", "max_speakers": "2"}}, 422, "min_speakers"),
        ("unknown patient", {"files": {"file": ("a.wav", wav, "audio/wav")},
                             "data": {"patient_id": "00000000-0000-0000-0000-000000000001"}}, 404, "patient"),
    ]


@pytest.fixture(scope="module")
def gw(settings):
    with LiveGateway(settings, upload_max_bytes=LIMIT, upload_rate_per_minute=1000) as gateway:
        gateway.therapist = gateway.call(add_therapist(gateway))
        yield gateway


def _counts(gw: LiveGateway) -> tuple[int, int]:
    async def q():
        async with gw.state.session_factory() as db:
            n_sessions = (await db.execute(select(func.count()).select_from(sessions)
                                           .where(sessions.c.therapist_id == gw.therapist))).scalar_one()
            n_outbox = (await db.execute(select(func.count()).select_from(outbox)
                                         .where(outbox.c.topic == "audio.uploaded"))).scalar_one()
            return n_sessions, n_outbox
    return gw.call(q())


def _blobs(gw: LiveGateway) -> list[Path]:
    root = Path(gw.settings.blob_dir) / "sessions"
    return sorted(p for p in root.rglob("*")) if root.exists() else []


def test_bad_uploads_are_rejected_and_leave_nothing(gw, tmp_path):
    token = gw.token(gw.therapist)
    before_blobs = _blobs(gw)
    before = _counts(gw)
    failures = []
    with gw.client(token) as client:
        for name, kwargs, status, words in cases(tmp_path):
            response = client.post("/api/sessions/upload", **kwargs)
            body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
            detail = body.get("detail")
            text = detail if isinstance(detail, str) else str(detail)
            ok = (response.status_code == status and 400 <= response.status_code < 500 and detail
                  and words.lower() in text.lower())
            if not ok:
                failures.append((name, response.status_code, response.text[:300]))
            after_blobs = _blobs(gw)
            if after_blobs != before_blobs:
                failures.append((name, "left blobs", [str(p) for p in after_blobs if p not in before_blobs]))
            if _counts(gw) != before:
                failures.append((name, "left rows", _counts(gw), before))
    assert not failures, failures


def test_a_good_upload_still_works(gw):
    """Control: the same gateway accepts the real recording (so rejections are not blanket)."""
    token = gw.token(gw.therapist)
    before = _counts(gw)
    with gw.client(token) as client, open(DATA / "pyannote_sample.wav", "rb") as fh:
        response = client.post("/api/sessions/upload", files={"file": ("sample.wav", fh, "audio/wav")},
                               data={"num_speakers": "2"})
    assert response.status_code == 202, response.text
    assert _counts(gw) == (before[0] + 1, before[1] + 1)
    session_id = response.json()["id"]
    assert (Path(gw.settings.blob_dir) / "sessions" / session_id / "audio.wav").exists()


def test_request_over_limit_is_refused_before_reading(gw):
    """A Content-Length far over the limit is refused by the middleware with the same JSON shape."""
    token = gw.token(gw.therapist)
    big = b"\0" * (LIMIT + 2 * 1024 * 1024)
    with gw.client(token) as client:
        response = client.post("/api/sessions/upload", files={"file": ("big.wav", big, "audio/wav")})
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
