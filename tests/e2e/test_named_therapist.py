"""A named therapist through every service (issue 14 item 4): a therapist enrols their
voice (espeak-ng voice reading sentences that are not in the session), then uploads a
generated 3-speaker session and a 2-speaker session, each speaker with a distinct
espeak-ng voice. The speaker with the therapist's voice must be labelled with the
therapist's name and role THERAPIST with a confidence, the others CLIENT 1 / CLIENT 2
(or CLIENT with two speakers); renaming works for 3 speakers and the notes and the
transcript use the names; deleting the enrolment leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import httpx
import pytest

from tests.audio_gen import VOICE_PALETTE, generate_dialogue, long_session, short_dialogue
from tests.e2e.conftest import Api
from tests.e2e.test_full_pipeline import word_speaker_accuracy
from tests.voice_samples import enrolment_sample

NAME = "Dr Ada Byron"
PASSWORD = "a-long-test-password-4711"
THERAPIST_VOICE, CLIENT_VOICE, PARTNER_VOICE = VOICE_PALETTE[2], VOICE_PALETTE[1], VOICE_PALETTE[3]
VOICE = "/api/therapists/me/voice"
# Three sessions through every service on a shared 2-core machine: slow, not timed.
pytestmark = pytest.mark.timeout(3000)


@pytest.fixture(scope="module")
def named(pipeline):
    """A new therapist (admin command line), signed in, with an enrolled voice."""
    api0, _, env = pipeline
    email = f"named-{uuid.uuid4().hex[:8]}@example.test"
    subprocess.run([sys.executable, "-m", "services.gateway.admin", "create-therapist", email, "--name", NAME,
                    "--password-stdin"], input=PASSWORD, text=True, env=env, check=True, capture_output=True)
    api = Api(api0.base_url)
    api.login(email, PASSWORD)
    api.email = email  # sessions on a loaded machine outlast an access token: _process signs in again
    sample = enrolment_sample(THERAPIST_VOICE)
    assert 20 <= sample.duration_s <= 60
    with open(sample.wav, "rb") as fh:
        response = api.client.put(VOICE, headers=api.headers, files={"file": ("me.wav", fh, "audio/wav")})
    assert response.status_code == 202, response.text
    deadline = time.monotonic() + 300
    while (state := api.client.get(VOICE, headers=api.headers).json())["status"] == "pending":
        assert time.monotonic() < deadline, "the diarizer never embedded the sample"
        time.sleep(1)
    assert state["enrolled"] is True and state["enrolled_at"], state
    return api


def _process(api: Api, gen) -> dict:
    response = api.upload(gen.wav)
    assert response.status_code == 202, response.text
    deadline = time.monotonic() + 1800
    while True:  # sign in again when the access token (TB_JWT_ACCESS_TTL_S) runs out meanwhile
        api.login(api.email, PASSWORD)
        try:
            detail = api.wait(response.json()["id"], lambda d: d["status"] in ("processed", "failed"), timeout_s=600)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 401 or time.monotonic() > deadline:
                raise
            continue
        if detail["status"] in ("processed", "failed") or time.monotonic() > deadline:
            break
    assert detail["status"] == "processed", (detail["status"], detail["error"])
    return detail


def test_three_speakers_therapist_named_and_numbered_clients(named):
    named.login(named.email, PASSWORD)
    script = long_session(1.5, 3, seed=21)
    gen = generate_dialogue(script, voices={"therapist": THERAPIST_VOICE, "client": CLIENT_VOICE,
                                            "partner": PARTNER_VOICE}, seed=21)
    detail = _process(named, gen)
    accuracy, mapping = word_speaker_accuracy(detail["transcript_segments"], gen.lines)
    print(f"\n3 speakers: word speaker accuracy {accuracy:.3f}, mapping {mapping}, speakers {detail['speakers']}")
    assert accuracy >= 0.9
    total = sum(s["talk_time_s"] for s in detail["speakers"])
    major = [s for s in detail["speakers"] if s["talk_time_s"] >= 0.05 * total]  # in order of first appearance
    minor = [s for s in detail["speakers"] if s not in major]  # a stray cluster, if any: no role
    assert sorted(mapping[s["label"]] for s in major) == ["client", "partner", "therapist"]
    assert all(s["role"] is None for s in minor)
    speakers = {s["label"]: s for s in detail["speakers"]}
    therapist = next(s["label"] for s in major if mapping[s["label"]] == "therapist")
    assert speakers[therapist]["role"] == "THERAPIST" and speakers[therapist]["display_name"] == NAME
    assert 0.5 < speakers[therapist]["role_confidence"] <= 0.99
    clients = [s for s in major if s["label"] != therapist]
    assert [s["role"] for s in clients] == ["CLIENT 1", "CLIENT 2"]
    assert all(s["display_name"] is None for s in clients)
    assert f"{NAME}:" in detail["transcript_text"] and "CLIENT 2:" in detail["transcript_text"]

    # The therapist names the clients; the transcript and the notes use the names.
    sid = detail["id"]
    names = {clients[0]["label"]: "Sam", clients[1]["label"]: "Alex"}
    patch = named.client.patch(f"/api/sessions/{sid}/speakers", headers=named.headers, json={"names": names})
    assert patch.status_code == 200, patch.text
    renamed = {s["label"]: s for s in patch.json()["speakers"]}
    assert renamed[clients[0]["label"]]["display_name"] == "Sam" and renamed[clients[0]["label"]]["role"] == "CLIENT 1"
    assert renamed[therapist]["display_name"] == NAME
    text = patch.json()["transcript_text"]
    assert "Sam:" in text and "Alex:" in text and f"{NAME}:" in text
    quotes = patch.json()["extracted_notes"]["significant_quotes"]
    named_quotes = [q for q in quotes if q.get("speaker") in names]
    assert named_quotes, quotes
    assert all(q["speaker_name"] == names[q["speaker"]] for q in named_quotes)
    bad = named.client.patch(f"/api/sessions/{sid}/speakers", headers=named.headers,
                             json={"roles": {therapist: "<b>DOCTOR</b>"}})
    assert bad.status_code == 422  # roles are names (THERAPIST, CLIENT 2, PARENT, ...), never markup
    swapped = named.client.patch(f"/api/sessions/{sid}/speakers", headers=named.headers,
                                 json={"roles": {clients[0]["label"]: "CLIENT 2", clients[1]["label"]: "CLIENT 1"}})
    roles = {s["label"]: s["role"] for s in swapped.json()["speakers"]}
    assert roles[clients[0]["label"]] == "CLIENT 2" and roles[clients[1]["label"]] == "CLIENT 1"


def test_two_speakers_therapist_named_and_client(named):
    named.login(named.email, PASSWORD)
    gen = generate_dialogue(short_dialogue(), voices={"therapist": THERAPIST_VOICE, "client": PARTNER_VOICE}, seed=22)
    detail = _process(named, gen)
    _, mapping = word_speaker_accuracy(detail["transcript_segments"], gen.lines)
    print(f"\n2 speakers: mapping {mapping}, speakers {detail['speakers']}")
    speakers = {s["label"]: s for s in detail["speakers"]}
    total = sum(s["talk_time_s"] for s in detail["speakers"])
    major = [s["label"] for s in detail["speakers"] if s["talk_time_s"] >= 0.05 * total]
    assert sorted(mapping[label] for label in major) == ["client", "therapist"]
    therapist = next(label for label in major if mapping[label] == "therapist")
    client = next(label for label in major if mapping[label] == "client")
    assert speakers[therapist]["role"] == "THERAPIST" and speakers[therapist]["display_name"] == NAME
    assert speakers[therapist]["role_confidence"] > 0.5
    assert speakers[client]["role"] == "CLIENT" and speakers[client]["display_name"] is None


def test_deleting_the_enrolment_stops_the_naming(named):
    named.login(named.email, PASSWORD)
    assert named.client.delete(VOICE, headers=named.headers).status_code == 204
    assert named.client.get(VOICE, headers=named.headers).json()["status"] == "none"
    gen = generate_dialogue(short_dialogue(), voices={"therapist": THERAPIST_VOICE, "client": PARTNER_VOICE}, seed=22)
    detail = _process(named, gen)
    assert all(s["display_name"] is None for s in detail["speakers"])  # heuristics only now
    assert "THERAPIST" in {s["role"] for s in detail["speakers"]}
