"""The API description generates a working client: openapi-python-client turns the live
gateway's /openapi.json (with docs/api/openapi-python-client.yaml) into a package that is
imported and used to log in, upload, list, read a processed session and download the
recording and every export format. A recording in which nobody speaks exports empty but
valid documents (200, not 409)."""

from __future__ import annotations

import importlib
import io
import json
import os
import subprocess
import sys
import time
import wave
from pathlib import Path

import pytest

from tests.conftest import DATA, ROOT
from tests.e2e.conftest import DEMO

CONFIG = ROOT / "docs" / "api" / "openapi-python-client.yaml"
TEXT_EXPORTS = ("txt", "vtt", "rttm", "soap", "dap", "birp", "ehr")


@pytest.fixture(scope="module")
def client_package(pipeline, tmp_path_factory):
    """Generate the client from the running gateway's description and import it."""
    api, _, _ = pipeline
    out = tmp_path_factory.mktemp("generated-client")
    spec = out / "openapi.json"
    spec.write_text(api.client.get("/openapi.json").text)
    bin_dir = str(Path(sys.executable).parent)  # the generator formats its output with ruff from the venv
    result = subprocess.run(
        [os.path.join(bin_dir, "openapi-python-client"), "generate", "--path", str(spec), "--config", str(CONFIG),
         "--output-path", str(out / "therapybridge_client"), "--meta", "none"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"]})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Warning" not in output and "Unable to" not in output, output  # every operation generated whole
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module("therapybridge_client")
    finally:
        sys.path.remove(str(out))


def _module(package, dotted: str):
    return importlib.import_module(f"{package.__name__}.{dotted}")


def _login(package, base_url: str):
    models, login = _module(package, "models"), _module(package, "api.auth.login_api_auth_token_post")
    token = login.sync(client=package.Client(base_url=base_url),
                       body=models.BodyLoginApiAuthTokenPost(username=DEMO[0], password=DEMO[1]))
    assert isinstance(token, models.TokenResponse), token
    return package.AuthenticatedClient(base_url=base_url, token=token.access_token, timeout=_timeout())


def _timeout():
    import httpx

    return httpx.Timeout(120.0)


def _upload(package, client, name: str, content: bytes, mime: str):
    models, types = _module(package, "models"), _module(package, "types")
    upload = _module(package, "api.sessions.upload_api_sessions_upload_post")
    accepted = upload.sync(client=client, body=models.UploadApiSessionsUploadPostUploadForm(
        file=types.File(payload=io.BytesIO(content), file_name=name, mime_type=mime)))
    assert isinstance(accepted, models.UploadAccepted), accepted
    return accepted.id


def _wait_done(package, client, sid, timeout_s: float = 420.0):
    """Until the session is finished and its diarization recorded (a slow diarizer may
    arrive after the joiner's deadline merged without it: then rttm is not ready yet)."""
    get_session = _module(package, "api.sessions.get_session_api_sessions_session_id_get")
    types = _module(package, "types")
    deadline = time.monotonic() + timeout_s
    while True:
        detail = get_session.sync(session_id=sid, client=client)
        diarized = detail.diarization not in (None, types.UNSET)
        if (detail.status == "failed" or (detail.status == "processed" and diarized)) or time.monotonic() > deadline:
            return detail
        time.sleep(1.0)


def _export(package, client, sid, fmt: str):
    exporter = _module(package, f"api.exports.export_{fmt.replace('.', '_')}")
    response = exporter.sync_detailed(session_id=sid, client=client)
    assert response.status_code == 200, (fmt, response.status_code, response.content[:200])
    return response.parsed


def test_generated_client_reads_everything(pipeline, client_package):
    api, _, _ = pipeline
    pkg, content = client_package, (DATA / "jfk.flac").read_bytes()
    models, types = _module(pkg, "models"), _module(pkg, "types")
    client = _login(pkg, api.base_url)
    sid = _upload(pkg, client, "jfk.flac", content, "audio/flac")

    detail = _wait_done(pkg, client, sid)
    assert isinstance(detail, models.SessionDetail) and detail.status == "processed", detail.status
    listed = _module(pkg, "api.sessions.list_sessions_api_sessions_get").sync(client=client, limit=100)
    assert isinstance(listed, models.SessionList) and sid in [item.id for item in listed.items]

    for fmt in TEXT_EXPORTS:
        assert isinstance(_export(pkg, client, sid, fmt), str) and _export(pkg, client, sid, fmt).strip(), fmt
    assert "country" in _export(pkg, client, sid, "txt").lower()
    assert _export(pkg, client, sid, "vtt").startswith("WEBVTT")
    transcript = _export(pkg, client, sid, "json")
    assert transcript.to_dict()["session_id"] == str(sid) and transcript.to_dict()["segments"]
    assert _export(pkg, client, sid, "notes.json").to_dict()  # the notes as a JSON document
    srt, docx = _export(pkg, client, sid, "srt"), _export(pkg, client, sid, "docx")
    assert isinstance(srt, types.File) and b"-->" in srt.payload.read()
    assert isinstance(docx, types.File) and docx.payload.read()[:2] == b"PK"  # a zip: the Word document
    pdf = _export(pkg, client, sid, "pdf")
    assert isinstance(pdf, types.File) and pdf.payload.read()[:5] == b"%PDF-"
    audio = _module(pkg, "api.sessions.audio_api_sessions_session_id_audio_get").sync(session_id=sid, client=client)
    assert isinstance(audio, types.File) and audio.payload.read() == content


def _silence(seconds: float = 4.0, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\0\0" * int(seconds * rate))
    return buffer.getvalue()


def test_a_session_without_speech_exports_empty_documents(pipeline, client_package):
    api, _, _ = pipeline
    pkg = client_package
    client = _login(pkg, api.base_url)
    sid = _upload(pkg, client, "silence.wav", _silence(), "audio/wav")
    detail = _wait_done(pkg, client, sid)
    assert detail.transcript_segments == [], detail.status  # transcribed: nobody spoke

    assert _export(pkg, client, sid, "txt").strip() == ""
    assert _export(pkg, client, sid, "vtt").strip() == "WEBVTT"  # a header and no cues
    assert _export(pkg, client, sid, "srt").payload.read().strip() == b""  # no cues
    assert _export(pkg, client, sid, "rttm").strip() == ""  # no turns
    document = json.loads(json.dumps(_export(pkg, client, sid, "json").to_dict()))
    assert document["session_id"] == str(sid) and document["segments"] == []
