"""Risk flags and offline notes on the blind sets held out from every choice (set 16 from
round 12, set 15 from round 11, set 13 from round 9: each written by a writer who saw no code and no other set;
never trained on, tuned on or used to choose a threshold). Guards the measured figures
(docs/risk-blind3.md, "Round 9") with a margin, so a change that quietly costs recall or adds
false flags on unseen phrasing fails here. Sets 10-12 (each held out once, then read) and
sets 7 and 8 (tuning sets) keep their figures as guards against regressions. Text level: the
script's lines go straight in."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import notes_blind, risk_blind
from services.notes.intervention_classifier import InterventionClassifier
from services.notes.risk import RiskDetector
from services.notes.risk_classifier import RiskClassifier

DATA = Path(__file__).resolve().parents[1] / "data"
HELD_OUT = DATA / "blind_clinical13"
SET16 = DATA / "blind_clinical16"
SET15 = DATA / "blind_clinical15"
SET14 = DATA / "blind_clinical14"
SET12 = DATA / "blind_clinical12"
SET11 = DATA / "blind_clinical11"
SET10 = DATA / "blind_clinical10"
SET9 = DATA / "blind_clinical9"
SET8 = DATA / "blind_clinical8"
SET7 = DATA / "blind_clinical7"


@pytest.fixture(scope="module")
def shipped_detector(risk_detector) -> RiskDetector:
    """The notes service's default: rules + semantic layer + the shipped classifier weights."""
    assert risk_detector.semantic is not None, "semantic layer failed to load"
    return RiskDetector(semantic=risk_detector.semantic, classifier=RiskClassifier(risk_detector.semantic.encoder))


def test_risk_episodes_on_the_held_out_set(shipped_detector):
    summary = risk_blind.run(risk_blind.load_blind(HELD_OUT), shipped_detector)["summary"]
    # Measured: recall 0.85, 0.70 false flags per session, 3 of 7 high marked high.
    assert summary["episodes"] == 20 and summary["sessions"] == 20
    assert summary["episode_recall"] >= 0.80, summary
    assert summary["false_flags_per_session"] <= 0.85, summary
    assert summary["high_marked_high"] >= 2, summary
    # The rules alone find less on this writer's phrasing (0.60): the learned layers are doing the work.
    rules = risk_blind.run(risk_blind.load_blind(HELD_OUT), RiskDetector(semantic=shipped_detector.semantic))["summary"]
    assert rules["episode_recall"] < summary["episode_recall"]


def test_offline_notes_on_the_held_out_set():
    per = [notes_blind.score_session(s) for s in notes_blind.load_blind(HELD_OUT)]
    summary = notes_blind.summarise(per)
    # Measured: action-item recall 0.804, intervention recall 0.627 (both targets met), nothing invented.
    assert summary["invented_items"] == 0
    assert summary["action_item_recall"] >= 0.75, summary
    assert summary["intervention_recall"] >= 0.58, summary


@pytest.mark.parametrize("folder,risk_floor,notes_floor,option_floor", [
    # Set 16, held out from round 12, not read (docs/risk-blind3.md, Round 12). Measured with the shipped
    # code: recall 0.95 (19 of 20), 0.45 false flags per session, 7 of 7 high; actions 0.779,
    # interventions 0.524; with the intervention layer 0.587 (4 added, all labelled).
    (SET16, (0.90, 0.6, 6), (0.73, 0.48), 0.55),
    # Set 15, scored once after round 11's choices, not read. Measured: recall 0.85 (17 of 20), 0.35 false
    # flags per session, 6 of 7 high; actions 0.871, interventions 0.567; with the layer 0.683.
    (SET15, (0.80, 0.5, 5), (0.82, 0.52), 0.62),
], ids=["set16", "set15"])
def test_sets_held_out_from_the_latest_rounds(shipped_detector, risk_detector, folder, risk_floor, notes_floor, option_floor):
    """The newest writers, each scored once after a round's choices and not read: the shipped
    code's figures guarded with a margin (docs/risk-blind3.md, Rounds 11 and 12); also the
    intervention layer (off by default, TB_NOTES_INTERVENTION_CLASSIFIER), which must add and
    never invent."""
    risk = risk_blind.run(risk_blind.load_blind(folder), shipped_detector)["summary"]
    assert risk["episodes"] == 20 and risk["sessions"] == 20
    recall, false_flags, high = risk_floor
    assert risk["episode_recall"] >= recall and risk["false_flags_per_session"] <= false_flags and risk["high_marked_high"] >= high, risk
    sessions = notes_blind.load_blind(folder)
    notes = notes_blind.summarise([notes_blind.score_session(s) for s in sessions])
    assert notes["invented_items"] == 0 and notes["action_item_recall"] >= notes_floor[0], notes
    assert notes["intervention_recall"] >= notes_floor[1], notes
    layer = InterventionClassifier(risk_detector.semantic.encoder)
    optional = notes_blind.summarise([notes_blind.score_session(s, layer) for s in sessions])
    assert optional["invented_items"] == 0 and optional["intervention_recall"] >= option_floor, optional
    assert optional["intervention_recall"] > notes["intervention_recall"]


def test_set14_held_out_from_round_10_then_read_in_round_11(shipped_detector):
    """Set 14 (a fourteenth writer) was scored once after round 10's decision, then read in
    round 11 for severity (docs/risk-blind3.md, Round 11): now a tuning set."""
    risk = risk_blind.run(risk_blind.load_blind(SET14), shipped_detector)["summary"]
    # Measured: recall 0.905 (19 of 21), 0.15 false flags per session, 7 of 7 high marked high
    # (4 of 7 when held out, before round 11's severity rules).
    assert risk["episodes"] == 21 and risk["sessions"] == 20
    assert risk["episode_recall"] >= 0.85 and risk["false_flags_per_session"] <= 0.3 and risk["high_marked_high"] >= 6, risk
    notes = notes_blind.summarise([notes_blind.score_session(s) for s in notes_blind.load_blind(SET14)])
    # Measured: actions 0.81, interventions 0.559, nothing invented.
    assert notes["invented_items"] == 0 and notes["action_item_recall"] >= 0.76 and notes["intervention_recall"] >= 0.52, notes


@pytest.mark.parametrize("folder,risk_floor,notes_floor", [
    # set: (recall, false flags per session, high marked high), (actions, interventions); measured with round 9:
    # set 12 0.90 / 0.50 / 6, 0.804 / 0.684; set 11 0.85 / 0.40 / 6, 0.841 / 0.667; set 10 1.00 / 0.45 / 6, 0.785 / 0.627.
    (SET12, (0.85, 0.6, 5), (0.76, 0.64)),
    (SET11, (0.80, 0.5, 5), (0.80, 0.62)),
    (SET10, (0.95, 0.6, 5), (0.75, 0.58)),
], ids=["set12", "set11", "set10"])
def test_sets_held_out_once_then_read(shipped_detector, folder, risk_floor, notes_floor):
    """Sets 10-12 were each scored once held out, then read (11 and 12 tuned on in round 9): regression guards."""
    risk = risk_blind.run(risk_blind.load_blind(folder), shipped_detector)["summary"]
    recall, false_flags, high = risk_floor
    assert risk["episode_recall"] >= recall and risk["false_flags_per_session"] <= false_flags and risk["high_marked_high"] >= high, risk
    notes = notes_blind.summarise([notes_blind.score_session(s) for s in notes_blind.load_blind(folder)])
    actions, interventions = notes_floor
    assert notes["invented_items"] == 0 and notes["action_item_recall"] >= actions and notes["intervention_recall"] >= interventions, notes


def test_set9_held_out_from_the_round8_patterns(shipped_detector):
    """Set 9 was scored once after the round-8 patterns, then read: a regression guard only."""
    risk = risk_blind.run(risk_blind.load_blind(SET9), shipped_detector)["summary"]
    # Measured: recall 0.85, 0.85 false flags per session (0.90 before the short-answer rule), 3 of 7 high.
    assert risk["episode_recall"] >= 0.80 and risk["false_flags_per_session"] <= 1.0 and risk["high_marked_high"] >= 2, risk
    notes = notes_blind.summarise([notes_blind.score_session(s) for s in notes_blind.load_blind(SET9)])
    # Measured: actions 0.656, interventions 0.46, nothing invented.
    assert notes["invented_items"] == 0 and notes["action_item_recall"] >= 0.62 and notes["intervention_recall"] >= 0.42, notes


def test_set8_in_sample_since_round_8(shipped_detector):
    """Set 8 was tuned on in round 8: its figures are in-sample and guard against regressions only."""
    risk = risk_blind.run(risk_blind.load_blind(SET8), shipped_detector)["summary"]
    # Measured: recall 0.95, 0.20 false flags per session, 7 of 7 high.
    assert risk["episode_recall"] >= 0.90 and risk["false_flags_per_session"] <= 0.3 and risk["high_marked_high"] >= 7, risk
    notes = notes_blind.summarise([notes_blind.score_session(s) for s in notes_blind.load_blind(SET8)])
    # Measured: actions 0.78, interventions 0.80, nothing invented.
    assert notes["invented_items"] == 0 and notes["action_item_recall"] >= 0.75 and notes["intervention_recall"] >= 0.77, notes


def test_set7_in_sample_since_round_7(shipped_detector):
    """Set 7 was tuned on in round 7: its figures are in-sample and guard against regressions only."""
    risk = risk_blind.run(risk_blind.load_blind(SET7), shipped_detector)["summary"]
    # Measured: recall 1.00, 0.92 false flags per session, 7 of 8 high.
    assert risk["episode_recall"] >= 0.95 and risk["false_flags_per_session"] <= 1.0 and risk["high_marked_high"] >= 7, risk
    notes = notes_blind.summarise([notes_blind.score_session(s) for s in notes_blind.load_blind(SET7)])
    # Measured: actions 0.84, interventions 0.88, nothing invented.
    assert notes["invented_items"] == 0 and notes["action_item_recall"] >= 0.80 and notes["intervention_recall"] >= 0.84, notes
