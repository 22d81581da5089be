"""The supervised risk layer (services/notes/risk_classifier.py): shipped weights, determinism,
the rules' veto, and a clear positive / negative written for this test (not from any data set)."""

from __future__ import annotations

import numpy as np
import pytest

from services.notes.risk import RiskDetector, detect_risk
from services.notes.risk_classifier import (
    MEASURED_LEXICON_VETO,
    NONE,
    WEIGHTS,
    RiskClassifier,
    Turn,
    context_texts,
)
from shared.contracts.events import MergedSegment
from shared.contracts.notes import RiskCategory


def _seg(role: str, text: str, start: float, speaker: str | None = None) -> MergedSegment:
    return MergedSegment(start=start, end=start + 4.0, speaker=speaker or ("SPEAKER_00" if role == "THERAPIST" else "SPEAKER_01"),
                         role=role, text=text, words=[])


@pytest.fixture(scope="module")
def classifier(risk_detector) -> RiskClassifier:
    assert risk_detector.semantic is not None, "semantic layer failed to load"
    return RiskClassifier(risk_detector.semantic.encoder)


def test_shipped_weights_load_and_are_small(classifier):
    assert WEIGHTS.exists() and WEIGHTS.stat().st_size < 2_000_000
    assert classifier.classes[0] == NONE and "suicidal_ideation" in classifier.classes
    assert classifier.W.shape == (len(classifier.classes), 3 * 384)
    assert 0.0 < classifier.corroborate < classifier.threshold <= classifier.guarded_threshold < 1.0
    assert all(RiskCategory(c) for c in classifier.classes if c != NONE)


def test_context_is_the_question_and_the_speakers_neighbouring_turns():
    turns = [Turn("T", True, "Have you had thoughts of ending your life?"), Turn("C", False, "Yes. Most nights."),
             Turn("T", True, "Tell me more."), Turn("C", False, "I lie awake planning it.")]
    line, ask, near = context_texts(turns, 1)
    assert line == "Yes. Most nights."
    assert ask == "Have you had thoughts of ending your life? Yes. Most nights."
    assert near == "Yes. Most nights. I lie awake planning it."


def test_predictions_are_deterministic(classifier):
    turns = [Turn("T", True, "How has the week been?"), Turn("C", False, "Long. I barely left the flat.")]
    a, b = classifier.predict(turns), classifier.predict(turns)
    assert [p.turn for p in a] == [1]
    assert a[0].probs == b[0].probs and a[0].severity == b[0].severity and a[0].past == b[0].past
    again = RiskClassifier(classifier.encoder)
    assert np.array_equal(again.W, classifier.W) and again.threshold == classifier.threshold


def test_clear_positive_answer_to_a_question(classifier):
    # An answer with no risk word of its own: the question carries the topic.
    turns = [Turn("T", True, "When the urges come, what do you do with them?"),
             Turn("C", False, "Last night I used the blade from my pencil sharpener on my upper arm again, and it bled through my sleeve.")]
    pred = classifier.predict(turns)[0]
    cat, p = pred.best()
    assert cat == "self_harm", pred.probs
    assert p >= classifier.threshold


def test_clear_negative(classifier):
    turns = [Turn("T", True, "What went well this week?"),
             Turn("C", False, "We took the children to the seaside on Saturday and they built sandcastles all afternoon.")]
    pred = classifier.predict(turns)[0]
    assert pred.probs[NONE] > 0.5, pred.probs
    assert not pred.categories(classifier.threshold)


def test_clear_positive_raises_a_flag_through_the_detector(classifier):
    det = RiskDetector(semantic=None, classifier=classifier)
    segs = [_seg("THERAPIST", "When the urges come, what do you do with them?", 0.0),
            _seg("CLIENT", "Last night I used the blade from my pencil sharpener on my upper arm again, and it bled through my sleeve.", 5.0)]
    flags = det.detect(segs)
    assert [f.category for f in flags] == [RiskCategory.self_harm]
    assert flags[0].evidence_quotes and flags[0].evidence_quotes[0].role == "CLIENT"


class _ConstEncoder:
    """Every text embeds to the same unit vector."""

    def encode(self, sentences, **_kw):
        v = np.zeros((len(sentences), 384), dtype=np.float32)
        v[:, 0] = 1.0
        return v


def _always_si() -> RiskClassifier:
    """A classifier that gives suicidal ideation p~1 to every turn."""
    classes = np.array([NONE, "suicidal_ideation"])
    W = np.zeros((2, 3 * 384), dtype=np.float32)
    W[1, 0] = W[1, 384] = W[1, 768] = 10.0
    return RiskClassifier(_ConstEncoder(), weights={
        "classes": classes, "W": W, "b": np.zeros(2, np.float32), "sev_classes": np.array(["low", "moderate", "high"]),
        "Ws": np.zeros((3, 3 * 384), np.float32), "bs": np.array([0.0, 1.0, 0.0], np.float32),
        "Wt": np.zeros((1, 3 * 384), np.float32), "bt": np.array([-5.0], np.float32),
        "threshold": np.float32(0.6), "guarded_threshold": np.float32(0.7), "corroborate": np.float32(0.3)})


def test_rule_detected_distractor_vetoes_the_classifier():
    det = RiskDetector(semantic=None, classifier=_always_si())
    # The rules suppress these (negated, third party, idiom): the classifier may not flag them.
    for text in ("I would never kill myself.", "My friend said she wanted to die.", "This commute is killing me."):
        assert det.detect([_seg("CLIENT", text, 0.0)]) == [], text
    # Control: the same classifier does flag a sentence the rules have no opinion on.
    flags = det.detect([_seg("CLIENT", "Some days everything feels grey and heavy from the moment I wake up.", 0.0)])
    assert [f.category for f in flags] == [RiskCategory.suicidal_ideation]
    assert "classifier" in flags[0].rationale
    assert flags[0].severity.value == "moderate"  # from its severity head


def test_rules_keep_their_severity_and_the_lexicon_only_default_is_unchanged():
    segs = [_seg("CLIENT", "I have been thinking about killing myself.", 0.0)]
    rules = detect_risk(segs)
    with_clf = RiskDetector(semantic=None, classifier=_always_si()).detect(segs)
    assert [(f.category, f.severity) for f in with_clf] == [(f.category, f.severity) for f in rules]
    assert RiskDetector(semantic=None).classifier is None


def test_setting_default_matches_the_documented_decision():
    from shared.settings import RISK_CLASSIFIER_DEFAULT, Settings

    assert Settings.model_fields["risk_classifier"].default is RISK_CLASSIFIER_DEFAULT


def _never_risk(weak_veto: float | None, lexicon_veto: float | None = None, none_logit: float = 10.0) -> RiskClassifier:
    """A classifier that gives every turn P(no risk) ~1 (``none_logit`` lowers it), optionally
    with the weak-opener veto and the lexicon veto."""
    classes = np.array([NONE, "suicidal_ideation"])
    W = np.zeros((2, 3 * 384), dtype=np.float32)
    W[0, 0] = W[0, 384] = W[0, 768] = none_logit
    weights = {
        "classes": classes, "W": W, "b": np.zeros(2, np.float32), "sev_classes": np.array(["low", "moderate", "high"]),
        "Ws": np.zeros((3, 3 * 384), np.float32), "bs": np.zeros(3, np.float32),
        "Wt": np.zeros((1, 3 * 384), np.float32), "bt": np.array([-5.0], np.float32),
        "threshold": np.float32(0.7), "guarded_threshold": np.float32(0.8), "corroborate": np.float32(0.3)}
    if weak_veto is not None:
        weights["weak_veto"] = np.float32(weak_veto)
    return RiskClassifier(_ConstEncoder(), weights=weights, lexicon_veto=lexicon_veto)


def test_weak_veto_drops_screening_openers_the_classifier_reads_as_no_risk_but_not_the_lexicon():
    screening = [_seg("THERAPIST", "Have you had any thoughts of ending your life?", 0.0),
                 _seg("CLIENT", "Yes, sometimes.", 5.0)]
    assert RiskDetector(semantic=None).detect(screening), "the rules flag an affirmative screening answer"
    assert RiskDetector(semantic=None, classifier=_never_risk(None)).detect(screening), "no veto in the weights: kept"
    assert RiskDetector(semantic=None, classifier=_never_risk(0.9)).detect(screening) == []
    explicit = [_seg("CLIENT", "I have been thinking about killing myself every night.", 0.0)]
    assert [f.category for f in RiskDetector(semantic=None, classifier=_never_risk(0.9)).detect(explicit)] == \
        [RiskCategory.suicidal_ideation]


def test_lexicon_veto_needs_the_classifier_all_but_certain_of_no_risk():
    """Round 10 (measured, off by default): a lexicon match is dropped only at P(no risk) >=
    lexicon_veto, stricter than the weak openers' 0.8."""
    explicit = [_seg("CLIENT", "I have been thinking about killing myself every night.", 0.0)]
    assert RiskDetector(semantic=None, classifier=_never_risk(None, lexicon_veto=0.9)).detect(explicit) == []
    assert RiskDetector(semantic=None, classifier=_never_risk(None, lexicon_veto=None)).detect(explicit), "veto off: kept"
    unsure = _never_risk(None, lexicon_veto=0.9, none_logit=0.6)  # P(no risk) ~0.86
    p_none = unsure.predict([Turn("S", False, explicit[0].text)])[0].probs["none"]
    assert 0.8 <= p_none < 0.9
    assert RiskDetector(semantic=None, classifier=unsure).detect(explicit), "below the lexicon veto: kept"


def test_the_measured_lexicon_veto_never_drops_plain_disclosures(classifier):
    """The lexicon veto is off in the shipped detector; with the real weights and the measured
    0.9, first-person disclosures of every category stay flagged."""
    assert classifier.lexicon_veto is None
    detector = RiskDetector(semantic=None, classifier=RiskClassifier(classifier.encoder, lexicon_veto=MEASURED_LEXICON_VETO))
    disclosures = {
        RiskCategory.self_harm: "I cut my arm again last night, deeper than before.",
        RiskCategory.suicidal_ideation: "I've been planning to kill myself, I've saved up my tablets.",
        RiskCategory.harm_to_others: "I'm going to stab him when he comes home on Friday, I've got the knife ready.",
        RiskCategory.substance_use: "I've been drinking two bottles of vodka a day and I can't stop.",
        RiskCategory.abuse_or_violence: "My husband hit me again on Saturday and I'm scared to go home.",
    }
    for category, text in disclosures.items():
        flags = detector.detect([_seg("THERAPIST", "How has the week been?", 0.0), _seg("CLIENT", text, 4.0)])
        assert category in {f.category for f in flags}, text


def test_an_operator_threshold_moves_the_solo_and_guarded_thresholds_together(classifier):
    stricter = RiskClassifier(classifier.encoder, threshold=0.8)
    assert stricter.threshold == 0.8
    assert stricter.guarded_threshold - stricter.threshold == pytest.approx(classifier.guarded_threshold - classifier.threshold, abs=1e-6)
    assert stricter.corroborate == classifier.corroborate  # corroboration is not the operator's dial
    assert RiskClassifier(classifier.encoder, threshold=0.97).guarded_threshold == 0.99


def test_the_notes_service_passes_the_operator_threshold(risk_detector):
    from services.notes.main import build_risk_detector
    from shared.settings import Settings

    detector = build_risk_detector(Settings(risk_classifier_threshold=0.85))
    assert detector.classifier is not None and detector.classifier.threshold == 0.85
    with pytest.raises(ValueError):
        Settings(risk_classifier_threshold=0.2)  # below any measured operating point: refused at start-up
