"""The supervised intervention layer (services/notes/intervention_classifier.py): the shipped
weights, the mechanism on a toy encoder (adds, never removes; therapist turns only; family
work only with two clients; verbatim evidence), and the real weights on lines written for
this test (not from any data set)."""

from __future__ import annotations

import numpy as np
import pytest

from services.notes.intervention_classifier import (
    STRATEGY_OF,
    WEIGHTS,
    InterventionClassifier,
    TherapistTurn,
    context_texts,
    normalise_label,
)
from services.notes.offline import build_offline_notes
from shared.contracts.events import MergedSegment

CLASSES = sorted(STRATEGY_OF)


class KeywordEncoder:
    """Dimension 0: "pebble" in the text; 1: "together"; 2: always on."""

    def encode(self, sentences, **kw):
        out = np.zeros((len(sentences), 384), dtype=np.float32)
        for i, s in enumerate(sentences):
            out[i, 0] = "pebble" in s.lower()
            out[i, 1] = "together" in s.lower()
            out[i, 2] = 1.0
        return out


def _toy() -> InterventionClassifier:
    W = np.zeros((len(CLASSES), 768), dtype=np.float32)
    b = np.full(len(CLASSES), -8.0, dtype=np.float32)
    W[CLASSES.index("mindfulness/grounding"), 0] = 20.0  # the line block: "pebble" -> grounding
    W[CLASSES.index("family work"), 1] = 20.0  # "together" -> family work
    return InterventionClassifier(KeywordEncoder(), weights={"classes": np.array(CLASSES), "W": W, "b": b,
                                                              "threshold": np.float32(0.8)})


def _segs(*turns: tuple[str, str]) -> list[MergedSegment]:
    speaker = {"T": "SPEAKER_00", "C": "SPEAKER_01", "C2": "SPEAKER_02"}
    return [MergedSegment(start=i * 8.0, end=i * 8.0 + 6.0, speaker=speaker[w], role="THERAPIST" if w == "T" else "CLIENT",
                          text=t, words=[]) for i, (w, t) in enumerate(turns)]


def test_labels_are_normalised_like_the_scorer():
    assert normalise_label("Safety_Planning") == "safety planning"
    assert normalise_label("behavioral activation") == "behavioural activation"
    assert normalise_label("mindfulness_grounding") == normalise_label("Grounding") == "mindfulness/grounding"
    assert all(name and category for name, category in STRATEGY_OF.values())


def test_context_is_the_previous_turn_and_the_therapist_turn():
    turns = [TherapistTurn("C", False, "I froze at the door."), TherapistTurn("T", True, "That makes sense.")]
    assert context_texts(turns, 1) == ("That makes sense.", "I froze at the door. That makes sense.")
    assert context_texts(turns, 0) == ("I froze at the door.", "I froze at the door.")


def test_adds_a_missed_technique_with_its_verbatim_sentence_and_never_removes_one():
    segs = _segs(("C", "My chest goes tight on the bus."),
                 ("T", "Let's try something now. Hold this pebble and notice its weight."),
                 ("C", "Okay."),
                 ("T", "Could you try box breathing on the bus this week?"))
    base = build_offline_notes(segs, [])
    with_clf = build_offline_notes(segs, [], interventions=_toy())
    assert {s.name for s in base.strategies} <= {s.name for s in with_clf.strategies}
    added = [s for s in with_clf.strategies if s.name not in {b.name for b in base.strategies}]
    assert [s.name for s in added] == ["grounding"]
    assert added[0].evidence == "Hold this pebble and notice its weight." and added[0].start is not None
    assert "intervention classifier" in added[0].context and added[0].category == "mindfulness"


def test_client_turns_never_count_and_family_work_needs_two_clients():
    toy = _toy()
    solo = _segs(("C", "I keep a pebble in my pocket."), ("T", "Let's think about this together."), ("C", "Sure."))
    assert [s.name for s in build_offline_notes(solo, [], interventions=toy).strategies if s.name in ("grounding", "family work")] == []
    family = _segs(("C", "She never listens."), ("C2", "He never asks."), ("T", "Could you two plan one evening together?"))
    names = [s.name for s in build_offline_notes(family, [], interventions=toy).strategies]
    assert "family work" in names and "grounding" not in names


def test_no_roles_no_classifier_hits():
    segs = [MergedSegment(start=0.0, end=5.0, speaker="SPEAKER_00", role=None, text="Hold this pebble.", words=[])]
    assert build_offline_notes(segs, [], interventions=_toy()).strategies == []


@pytest.fixture(scope="module")
def shipped(risk_detector) -> InterventionClassifier:
    assert risk_detector.semantic is not None, "semantic layer failed to load"
    return InterventionClassifier(risk_detector.semantic.encoder)


def test_shipped_weights_load_and_are_small(shipped):
    assert WEIGHTS.exists() and WEIGHTS.stat().st_size < 1_000_000
    assert shipped.classes == CLASSES and shipped.W.shape == (len(CLASSES), 768)
    assert 0.5 <= shipped.threshold < 1.0


def test_shipped_weights_read_a_shown_technique_and_ignore_small_talk(shipped):
    turns = [TherapistTurn("C", False, "I keep thinking everyone at work thinks I'm useless."),
             TherapistTurn("T", True, "What's the evidence for that thought, and what's the evidence against it?"),
             TherapistTurn("C", False, "The car park was full again this morning."),
             TherapistTurn("T", True, "Was it? The one by the station?")]
    p = shipped.probabilities(_features(shipped, turns))
    j = shipped.classes.index("cognitive restructuring")
    assert p[0, j] > p[1, j]  # the restructuring question outranks small talk
    assert p[1].max() < shipped.threshold  # small talk raises nothing


def _features(clf: InterventionClassifier, turns: list[TherapistTurn]) -> np.ndarray:
    from services.notes.intervention_classifier import features

    return features(clf.encoder, turns, [1, 3])


def test_the_notes_service_loads_the_layer_only_when_asked(risk_detector):
    from services.notes.main import build_intervention_classifier
    from services.notes.risk import RiskDetector
    from shared.settings import Settings

    assert Settings().notes_intervention_classifier is False  # measured, not on by default (round 11)
    assert build_intervention_classifier(Settings(), risk_detector) is None
    on = build_intervention_classifier(Settings(notes_intervention_classifier=True), risk_detector)
    assert on is not None and on.encoder is risk_detector.semantic.encoder  # one MiniLM per process
    assert build_intervention_classifier(Settings(notes_intervention_classifier=True), RiskDetector(semantic=None)) is None
