"""Voice enrolment through the real API (uvicorn on a real port, real PostgreSQL), issue 14
item 4: PUT/GET/DELETE /api/therapists/me/voice. Bad samples (too short, too long, not
audio, wrong extension, no file) get a 422 with the reason; only the caller's own
enrolment is visible; the diarizer's store (services/diarizer/voice_store.py) turns the
pending sample into an embedding for exactly that request and keeps no audio; DELETE and
deleting the account leave no embedding behind."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
from sqlalchemy import delete, select

from shared.db.tables import audit_log, therapist_voices, therapists
from services.diarizer.voice_store import VoiceStore
from services.diarizer.voices import embedding_from_bytes
from tests.audio_gen import write_wav
from tests.integration.test_gateway_authz import LiveGateway, add_therapist

PATH = "/api/therapists/me/voice"


@pytest.fixture(scope="module")
def gw(settings):
    with LiveGateway(settings) as gateway:
        yield gateway


def _wav(seconds: float, tmp_path, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    audio = (0.2 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    path = tmp_path / f"s{seconds}-{rate}.wav"
    write_wav(path, audio, rate)
    return path.read_bytes()


def _therapist(gw) -> tuple[uuid.UUID, str]:
    therapist_id = gw.call(add_therapist(gw))
    return therapist_id, gw.token(therapist_id)


def _put(gw, token, data: bytes, name: str = "voice.wav"):
    with gw.client(token) as client:
        return client.put(PATH, files={"file": (name, io.BytesIO(data), "application/octet-stream")})


def _row(gw, therapist_id):
    async def read():
        async with gw.state.session_factory() as db:
            return (await db.execute(select(therapist_voices).where(therapist_voices.c.therapist_id == therapist_id))).first()

    return gw.call(read())


@pytest.mark.parametrize("seconds,code", [(10.0, "too_short"), (19.0, "too_short"), (65.0, "too_long")])
def test_samples_outside_20_to_60_seconds_get_422(gw, tmp_path, seconds, code):
    therapist_id, token = _therapist(gw)
    response = _put(gw, token, _wav(seconds, tmp_path))
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code and "20-60 s" in response.json()["detail"]
    assert _row(gw, therapist_id) is None


@pytest.mark.parametrize("name,data,code", [
    ("voice.wav", b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunkjunk" * 10, "undecodable_audio"),
    ("voice.wav", b"this is not audio at all" * 50, "not_audio"),
    ("voice.txt", b"hello", "unsupported_extension"),
    ("voice.wav", b"", "empty_file"),
])
def test_invalid_samples_get_422_with_a_reason(gw, name, data, code):
    therapist_id, token = _therapist(gw)
    response = _put(gw, token, data, name)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code and response.json()["detail"]
    assert _row(gw, therapist_id) is None


def test_missing_file_is_422(gw):
    _, token = _therapist(gw)
    with gw.client(token) as client:
        response = client.put(PATH, files={"other": ("x.wav", io.BytesIO(b"x"), "audio/wav")})
    assert response.status_code == 422 and response.json()["code"] == "missing_file"


def test_voice_routes_need_a_sign_in(gw, tmp_path):
    with gw.client() as client:
        assert client.get(PATH).status_code == 401
        assert client.delete(PATH).status_code == 401
        assert client.put(PATH, files={"file": ("v.wav", io.BytesIO(_wav(25, tmp_path)), "audio/wav")}).status_code == 401


def test_enrol_embed_read_and_delete(gw, tmp_path):
    therapist_id, token = _therapist(gw)
    other_id, other_token = _therapist(gw)
    with gw.client(token) as client:
        assert client.get(PATH).json() == {"enrolled": False, "status": "none", "sample_s": None, "requested_at": None,
                                           "enrolled_at": None, "model": None, "error": None}
    response = _put(gw, token, _wav(25.0, tmp_path, rate=44100))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "pending" and body["enrolled"] is False and body["sample_s"] == pytest.approx(25.0, abs=0.05)
    row = _row(gw, therapist_id)
    assert len(row.sample_pcm) == pytest.approx(25.0 * 16000 * 2, rel=0.01) and row.embedding is None

    # The diarizer's side: embed the pending request (a fixed vector stands in for the model).
    store = VoiceStore(gw.state.session_factory)
    pending = [p for p in gw.call(store.pending(limit=1000)) if p.therapist_id == therapist_id]
    assert len(pending) == 1 and pending[0].audio().shape == (400000,)
    vec = np.ones(256, dtype=np.float32) / 16.0
    assert gw.call(store.finish(pending[0], vec, "resemblyzer-test")) is True
    row = _row(gw, therapist_id)
    assert row.sample_pcm is None and row.status == "enrolled"  # only the embedding is kept
    assert np.allclose(embedding_from_bytes(row.embedding), vec)
    enrolment = gw.call(store.enrolment(therapist_id))
    assert enrolment.display_name == "Test Therapist" and np.allclose(enrolment.embedding, vec)

    with gw.client(token) as client:
        got = client.get(PATH).json()
    assert got["enrolled"] is True and got["status"] == "enrolled" and got["enrolled_at"] and got["model"] == "resemblyzer-test"
    with gw.client(other_token) as client:  # another therapist sees only their own (none)
        assert client.get(PATH).json()["status"] == "none"
        assert client.delete(PATH).status_code == 404
    assert _row(gw, therapist_id) is not None
    assert gw.call(store.enrolment(other_id)) is None

    with gw.client(token) as client:
        assert client.delete(PATH).status_code == 204
        assert client.get(PATH).json()["status"] == "none"
        assert client.delete(PATH).status_code == 404
    assert _row(gw, therapist_id) is None
    assert gw.call(store.enrolment(therapist_id)) is None

    async def actions():
        async with gw.state.session_factory() as db:
            rows = await db.execute(select(audit_log.c.action).where(audit_log.c.therapist_id == therapist_id))
            return [r.action for r in rows]

    assert gw.call(actions()) == ["voice.enrol", "voice.delete"]


def test_a_replaced_or_deleted_request_is_never_filled_in(gw, tmp_path):
    therapist_id, token = _therapist(gw)
    store = VoiceStore(gw.state.session_factory)
    assert _put(gw, token, _wav(22.0, tmp_path)).status_code == 202
    first = [p for p in gw.call(store.pending(limit=1000)) if p.therapist_id == therapist_id][0]
    assert _put(gw, token, _wav(30.0, tmp_path)).status_code == 202  # enrolled again before the first was embedded
    assert gw.call(store.finish(first, np.ones(256, dtype=np.float32), "m")) is False
    assert _row(gw, therapist_id).status == "pending" and _row(gw, therapist_id).sample_s == pytest.approx(30.0, abs=0.05)
    second = [p for p in gw.call(store.pending(limit=1000)) if p.therapist_id == therapist_id][0]
    with gw.client(token) as client:
        assert client.delete(PATH).status_code == 204
    assert gw.call(store.finish(second, np.ones(256, dtype=np.float32), "m")) is False
    assert _row(gw, therapist_id) is None


def test_deleting_the_account_deletes_the_embedding(gw, tmp_path):
    therapist_id, token = _therapist(gw)
    store = VoiceStore(gw.state.session_factory)
    assert _put(gw, token, _wav(21.0, tmp_path)).status_code == 202
    sample = [p for p in gw.call(store.pending(limit=1000)) if p.therapist_id == therapist_id][0]
    assert gw.call(store.finish(sample, np.ones(256, dtype=np.float32), "m")) is True

    async def drop_account():
        async with gw.state.session_factory() as db, db.begin():
            await db.execute(delete(audit_log).where(audit_log.c.therapist_id == therapist_id))
            await db.execute(delete(therapists).where(therapists.c.id == therapist_id))

    gw.call(drop_account())
    assert _row(gw, therapist_id) is None
