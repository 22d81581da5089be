"""Issue 14 item 4 on fakes: the enrolled-voice matcher (services/diarizer/voices.py), its
threshold and confidence, speaker centroids (diarization.speaker_centroids), roles for
1, 2, 3 and 4 speakers with and without an enrolment (services/joiner/roles.py), the
enrolment poller (services/diarizer/handlers.enrol_pending) and the merged transcript."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest

from services.diarizer.diarization import DiarizationError, SpeechFeatures, speaker_centroids, voice_embedding
from services.diarizer.handlers import NO_EMBEDDING_MODEL, EnrolmentDeps, enrol_pending
from services.diarizer.voices import (
    Enrolment,
    MatchConfig,
    embedding_from_bytes,
    embedding_to_bytes,
    match_confidence,
    match_enrolled,
)
from services.joiner.join import build_merged
from services.joiner.roles import CLIENT, THERAPIST, client_roles, infer_roles
from shared.contracts.events import (
    DiarizationReady,
    Engine,
    MergedSegment,
    SpeakerTurn,
    TranscriptReady,
    TranscriptSegment,
    VoiceMatch,
    Word,
)
from shared.stage import pending_timing

RNG = np.random.default_rng(0)
CFG = MatchConfig(threshold=0.8, full=0.92, margin_full=0.15)


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def near(base: np.ndarray, similarity: float) -> np.ndarray:
    """A unit vector with exactly ``similarity`` cosine to ``base``."""
    other = RNG.normal(size=base.shape)
    other -= other.dot(base) * base
    other = unit(other)
    return unit(similarity * base + np.sqrt(1 - similarity**2) * other)


THERAPIST_VOICE = unit(RNG.normal(size=256))
ENROLMENT = Enrolment(therapist_id=uuid.uuid4(), display_name="Dr Ada Byron", embedding=THERAPIST_VOICE)


# --- the matcher ---------------------------------------------------------------------------------
def test_the_speaker_above_the_threshold_is_matched_with_its_name():
    centroids = {"SPEAKER_00": near(THERAPIST_VOICE, 0.55), "SPEAKER_01": near(THERAPIST_VOICE, 0.9),
                 "SPEAKER_02": near(THERAPIST_VOICE, 0.6)}
    match = match_enrolled(centroids, ENROLMENT, CFG)
    assert match is not None and match.speaker == "SPEAKER_01"
    assert match.display_name == "Dr Ada Byron" and match.therapist_id == ENROLMENT.therapist_id
    assert match.similarity == pytest.approx(0.9, abs=1e-3)
    assert 0.9 < match.confidence < 0.99
    assert set(match.similarities) == set(centroids)


def test_no_speaker_above_the_threshold_is_no_match():
    centroids = {"SPEAKER_00": near(THERAPIST_VOICE, 0.79), "SPEAKER_01": near(THERAPIST_VOICE, 0.5)}
    assert match_enrolled(centroids, ENROLMENT, CFG) is None


def test_no_enrolment_or_no_centroids_is_no_match():
    assert match_enrolled({"SPEAKER_00": THERAPIST_VOICE}, None, CFG) is None
    assert match_enrolled({}, ENROLMENT, CFG) is None


@pytest.mark.parametrize("threshold", [0.7, 0.8, 0.9])
def test_the_threshold_is_the_boundary(threshold):
    cfg = MatchConfig(threshold=threshold)
    assert match_enrolled({"S": near(THERAPIST_VOICE, threshold + 0.01)}, ENROLMENT, cfg) is not None
    assert match_enrolled({"S": near(THERAPIST_VOICE, threshold - 0.01)}, ENROLMENT, cfg) is None


def test_confidence_grows_with_similarity_and_lead_and_is_capped():
    assert match_confidence(0.80, None, CFG) == 0.5
    assert match_confidence(0.86, None, CFG) < match_confidence(0.9, None, CFG) < match_confidence(0.92, None, CFG)
    assert match_confidence(0.99, None, CFG) == 0.99
    # two speakers both similar: the lead decides
    assert match_confidence(0.95, 0.94, CFG) < 0.6
    assert match_confidence(0.95, 0.60, CFG) == 0.99


def test_embedding_bytes_round_trip_and_bad_lengths():
    assert np.allclose(embedding_from_bytes(embedding_to_bytes(THERAPIST_VOICE)), THERAPIST_VOICE, atol=1e-6)
    with pytest.raises(ValueError):
        embedding_from_bytes(b"\0" * 12)


# --- centroids from the diarizer's windows ---------------------------------------------------------
def _features(window_specs: list[tuple[int, int, np.ndarray]], seconds: float) -> SpeechFeatures:
    windows = [(s, e, 0) for s, e, _ in window_specs]
    emb = np.stack([v for _, _, v in window_specs])
    n = int(seconds * 16000)
    return SpeechFeatures(n, np.zeros(1), [(0, n)], [(0, n // 160)], windows, emb, 150)


def test_centroids_use_windows_inside_one_speakers_turns():
    a, b = unit(RNG.normal(size=256)), unit(RNG.normal(size=256))
    mixed = unit(a + b)
    feat = _features([(0, 150, a), (75, 225, a), (250, 400, mixed), (400, 550, b), (475, 625, b)], 7.0)
    turns = [SpeakerTurn(start=0, end=3.2, speaker="SPEAKER_00"), SpeakerTurn(start=3.2, end=7.0, speaker="SPEAKER_01")]
    cents = speaker_centroids(feat, turns)
    assert set(cents) == {"SPEAKER_00", "SPEAKER_01"}
    assert float(cents["SPEAKER_00"] @ a) == pytest.approx(1.0, abs=1e-5)  # the mixed window is left out
    assert float(cents["SPEAKER_01"] @ b) == pytest.approx(1.0, abs=1e-5)


def test_voice_embedding_is_the_unit_mean_and_needs_speech():
    a = unit(RNG.normal(size=256))
    assert float(voice_embedding(np.stack([a, a])) @ a) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(DiarizationError):
        voice_embedding(np.zeros((0, 256), dtype=np.float32))


# --- roles for 1, 2, 3, 4 speakers ---------------------------------------------------------------
QUESTIONS = ["How have you been this week?", "What do you think was going on for you?",
             "Can you tell me more about that?", "How did that make you feel?",
             "I'd like you to keep a journal this week. Could you try that?"]
ANSWERS = ["I have been tired and I keep thinking about work and my mother.",
           "I think I was just worried, I always worry when I am alone at night.",
           "My job is hard and I feel I am failing at it most of the time.",
           "I guess I felt angry with myself and then I could not sleep."]
NEUTRAL = ["The weather was fine on the weekend.", "We went to the shop on Saturday.",
           "The train was late again in the morning.", "Dinner was at seven as usual."]


def _session(n_speakers: int, therapist: str = "SPEAKER_00", rounds: int = 6) -> list[MergedSegment]:
    """A therapist who asks, and ``n_speakers - 1`` clients who answer in turn."""
    labels = [f"SPEAKER_{i:02d}" for i in range(n_speakers)]
    clients = [label for label in labels if label != therapist]
    segs, t = [], 0.0
    for r in range(rounds):
        segs.append(MergedSegment(start=t, end=t + 3, speaker=therapist, text=QUESTIONS[r % len(QUESTIONS)]))
        t += 3.5
        for c in clients:
            segs.append(MergedSegment(start=t, end=t + 6, speaker=c, text=ANSWERS[(r + len(c)) % len(ANSWERS)]))
            t += 6.5
    return segs


def _match(label: str, confidence: float = 0.97) -> VoiceMatch:
    return VoiceMatch(speaker=label, therapist_id=ENROLMENT.therapist_id, display_name="Dr Ada Byron",
                      similarity=0.9, confidence=confidence)


def test_client_role_names():
    assert client_roles(["a"]) == [CLIENT]
    assert client_roles(["a", "b", "c"]) == ["CLIENT 1", "CLIENT 2", "CLIENT 3"]


def test_one_speaker_gets_no_role_without_enrolment_and_therapist_with_it():
    segs = [MergedSegment(start=0, end=5, speaker="SPEAKER_00", text=QUESTIONS[0])]
    assert infer_roles(segs)["SPEAKER_00"][0] is None
    assert infer_roles(segs, enrolled=_match("SPEAKER_00"))["SPEAKER_00"] == (THERAPIST, 0.97)


def test_two_speakers_heuristic_and_enrolled():
    segs = _session(2)
    roles = infer_roles(segs)
    assert roles["SPEAKER_00"][0] == THERAPIST and roles["SPEAKER_01"][0] == CLIENT
    # the enrolment wins over the cues: the answering speaker is the enrolled therapist
    enrolled = infer_roles(segs, enrolled=_match("SPEAKER_01", 0.93))
    assert enrolled["SPEAKER_01"] == (THERAPIST, 0.93) and enrolled["SPEAKER_00"] == (CLIENT, 0.93)


@pytest.mark.parametrize("n", [3, 4])
def test_three_and_four_speakers_give_numbered_clients(n):
    segs = _session(n, therapist="SPEAKER_01")
    roles = infer_roles(segs)
    assert roles["SPEAKER_01"][0] == THERAPIST
    clients = [label for label in dict.fromkeys(s.speaker for s in segs) if label != "SPEAKER_01"]
    assert [roles[c][0] for c in clients] == [f"CLIENT {i}" for i in range(1, n)]


@pytest.mark.parametrize("n", [3, 4])
def test_enrolment_decides_the_therapist_among_many(n):
    segs = _session(n, therapist="SPEAKER_00")
    roles = infer_roles(segs, enrolled=_match(f"SPEAKER_{n - 1:02d}"))
    assert roles[f"SPEAKER_{n - 1:02d}"] == (THERAPIST, 0.97)
    others = [label for label in dict.fromkeys(s.speaker for s in segs) if label != f"SPEAKER_{n - 1:02d}"]
    assert [roles[c][0] for c in others] == [f"CLIENT {i}" for i in range(1, n)]


def test_indistinct_speakers_are_never_forced_into_roles():
    segs, t = [], 0.0
    for i in range(16):
        segs.append(MergedSegment(start=t, end=t + 3, speaker=f"SPEAKER_0{i % 4}", text=NEUTRAL[(i // 4) % 4]))
        t += 3.5
    assert all(role is None for role, _ in infer_roles(segs).values())


def test_a_match_on_a_speaker_without_words_falls_back_to_the_heuristics():
    segs = _session(2)
    roles = infer_roles(segs, enrolled=_match("SPEAKER_07"))
    assert roles["SPEAKER_00"][0] == THERAPIST and "SPEAKER_07" not in roles


def test_minor_speakers_are_not_numbered_clients_with_an_enrolment():
    segs = _session(3, therapist="SPEAKER_00")
    end = segs[-1].end
    segs.append(MergedSegment(start=end + 1, end=end + 1.5, speaker="SPEAKER_03", text="Bye."))
    roles = infer_roles(segs, enrolled=_match("SPEAKER_00"))
    assert roles["SPEAKER_03"][0] is None
    assert roles["SPEAKER_01"][0] == "CLIENT 1" and roles["SPEAKER_02"][0] == "CLIENT 2"


# --- the merged transcript carries the name ---------------------------------------------------------
def test_merged_transcript_names_the_enrolled_therapist():
    sid = uuid.uuid4()
    segs = _session(3, therapist="SPEAKER_02", rounds=2)
    tsegs = [TranscriptSegment(start=s.start, end=s.end, text=s.text,
                               words=[Word(start=s.start + i * 0.3, end=s.start + i * 0.3 + 0.25, word=" " + w)
                                      for i, w in enumerate(s.text.split())]) for s in segs]
    transcript = TranscriptReady(session_id=sid, language="en", duration_s=segs[-1].end, segments=tsegs,
                                 engine=Engine(backend="fake"), timing=pending_timing())
    diar = DiarizationReady(session_id=sid, turns=[SpeakerTurn(start=s.start, end=s.end, speaker=s.speaker) for s in segs],
                            speaker_count=3, engine=Engine(backend="fake"), timing=pending_timing(),
                            therapist_match=_match("SPEAKER_02", 0.95))
    merged = build_merged(sid, transcript, tsegs, diar, 1, [])
    info = {s.label: s for s in merged.speakers}
    assert info["SPEAKER_02"].role == THERAPIST and info["SPEAKER_02"].display_name == "Dr Ada Byron"
    assert info["SPEAKER_02"].role_confidence == 0.95
    assert info["SPEAKER_00"].role == "CLIENT 1" and info["SPEAKER_01"].role == "CLIENT 2"
    assert info["SPEAKER_00"].display_name is None
    assert "CLIENT 2:" in merged.full_text and "THERAPIST:" in merged.full_text


def test_diarization_ready_without_a_match_still_parses():
    raw = {"session_id": str(uuid.uuid4()), "turns": [], "speaker_count": 0, "engine": {"backend": "x"},
           "timing": pending_timing().model_dump(mode="json"), "schema_version": 1}
    assert DiarizationReady.model_validate(raw).therapist_match is None


# --- the enrolment poller ------------------------------------------------------------------------
class FakeSample:
    def __init__(self, therapist_id, audio):
        self.therapist_id, self.request_id, self._audio = therapist_id, uuid.uuid4(), audio

    def audio(self):
        return self._audio


class FakeVoiceStore:
    def __init__(self, samples, replaced=()):
        self.samples, self.replaced, self.finished = list(samples), set(replaced), []

    async def pending(self):
        return list(self.samples)

    async def finish(self, sample, embedding, model, error=None):
        self.samples.remove(sample)
        if sample.request_id in self.replaced:
            return False
        self.finished.append((sample.therapist_id, embedding, model, error))
        return True


async def _inline(fn, *args):
    return fn(*args)


def test_enrol_pending_stores_embeddings_and_reports_unusable_samples():
    good, silent, stale = (FakeSample(uuid.uuid4(), np.ones(10)), FakeSample(uuid.uuid4(), np.zeros(10)),
                           FakeSample(uuid.uuid4(), np.ones(10)))
    store = FakeVoiceStore([good, silent, stale], replaced={stale.request_id})

    def embed(audio):
        if not audio.any():
            raise DiarizationError("no speech found in the sample")
        return THERAPIST_VOICE

    done = asyncio.run(enrol_pending(EnrolmentDeps(store=store, run_blocking=_inline, embed=embed, model="m")))
    assert done == 1
    by_id = {t: (e, m, err) for t, e, m, err in store.finished}
    assert by_id[good.therapist_id][0] is THERAPIST_VOICE and by_id[good.therapist_id][2] is None
    assert by_id[silent.therapist_id][0] is None and "no speech" in by_id[silent.therapist_id][2]
    assert stale.therapist_id not in by_id and not store.samples


def test_enrol_pending_without_an_embedding_model_fails_the_request_with_the_remedy():
    sample = FakeSample(uuid.uuid4(), np.ones(10))
    store = FakeVoiceStore([sample])
    assert asyncio.run(enrol_pending(EnrolmentDeps(store=store, run_blocking=_inline, embed=None, model=None))) == 0
    assert store.finished == [(sample.therapist_id, None, None, NO_EMBEDDING_MODEL)]


# --- the diarizer stage names the match in diarization.ready ---------------------------------------
class _Result:
    def __init__(self, centroids):
        self.turns = [SpeakerTurn(start=0, end=1, speaker="SPEAKER_00"), SpeakerTurn(start=1, end=2, speaker="SPEAKER_01")]
        self.speaker_count = 2
        self.centroids = centroids


def _stage_deps(centroids, enrolment):
    from services.diarizer.handlers import DiarizationDeps

    looked_up = []

    async def enrolled(owner_id):
        looked_up.append(owner_id)
        return enrolment

    deps = DiarizationDeps(run_blocking=_inline, load_audio=lambda uri: np.zeros(32000, dtype=np.float32),
                           diarize=lambda audio, n, lo, hi, progress: _Result(centroids), engine=Engine(backend="builtin"),
                           enrolment=enrolled, match_config=CFG)
    return deps, looked_up


def _upload():
    from shared.contracts.events import AudioRef, AudioUploaded

    return AudioUploaded(session_id=uuid.uuid4(), owner_id=ENROLMENT.therapist_id,
                         audio=AudioRef(uri="blob://x", sha256="0", bytes=1, content_type="audio/wav", duration_s=2.0))


def test_diarize_upload_names_the_owners_enrolled_voice():
    from services.diarizer.handlers import diarize_upload

    deps, looked_up = _stage_deps({"SPEAKER_00": near(THERAPIST_VOICE, 0.4), "SPEAKER_01": near(THERAPIST_VOICE, 0.95)},
                                  ENROLMENT)
    event = _upload()
    ready, _ = asyncio.run(diarize_upload(event, lambda f, m="": None, deps))
    assert looked_up == [event.owner_id]
    assert ready.therapist_match.speaker == "SPEAKER_01" and ready.therapist_match.display_name == "Dr Ada Byron"
    assert ready.therapist_match.confidence == 0.99


def test_diarize_upload_without_enrolment_or_centroids_has_no_match():
    from services.diarizer.handlers import diarize_upload

    deps, _ = _stage_deps({"SPEAKER_00": THERAPIST_VOICE}, None)
    assert asyncio.run(diarize_upload(_upload(), lambda f, m="": None, deps))[0].therapist_match is None
    deps, looked_up = _stage_deps({}, ENROLMENT)  # e.g. the pyannote backend: no centroids
    assert asyncio.run(diarize_upload(_upload(), lambda f, m="": None, deps))[0].therapist_match is None
    assert looked_up == []


def test_the_default_threshold_separates_the_measured_espeak_voices():
    """ADR 0010: the enrolled voice's own centroid measured 0.986, another espeak-ng voice
    in the same session 0.847; the default threshold (0.90) lies between them."""
    cfg = MatchConfig()
    assert match_enrolled({"A": near(THERAPIST_VOICE, 0.847)}, ENROLMENT, cfg) is None
    match = match_enrolled({"A": near(THERAPIST_VOICE, 0.847), "B": near(THERAPIST_VOICE, 0.986)}, ENROLMENT, cfg)
    assert match.speaker == "B" and match.confidence == pytest.approx(0.952, abs=0.005)
