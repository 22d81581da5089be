"""Offline notes carry the session's plan: agreed actions and interventions used, each with
the verbatim sentence and time where it happened (issue 14, item 2)."""

from __future__ import annotations

from bench.risk_blind import to_segments
from services.notes.offline import build_offline_notes


def _notes(*turns: tuple[str, str]):
    segs = to_segments([{"speaker": sp, "role": "THERAPIST" if sp == "T" else "CLIENT", "text": t} for sp, t in turns])
    return segs, build_offline_notes(segs, [])


def _assert_grounded(item, segs):
    seg = next(s for s in segs if item.evidence in s.text)
    assert seg.start <= item.start < item.end <= seg.end


def test_therapist_assignment_and_client_commitment_are_items_with_evidence_times():
    segs, notes = _notes(
        ("T", "For this week, try the wind-down routine we talked about."),
        ("C", "Okay."),
        ("T", "What about the walk in the morning?"),
        ("C", "I could do that. I'll walk the dog before work on Tuesday and Friday."),
    )
    evidence = [a.evidence for a in notes.action_items]
    assert "For this week, try the wind-down routine we talked about." in evidence
    assert "What about the walk in the morning?" in evidence  # taken up by the client
    assert "I'll walk the dog before work on Tuesday and Friday." in evidence
    assert "I could do that." not in evidence  # acceptance only: no item of its own
    for a in notes.action_items:
        _assert_grounded(a, segs)


def test_suggestion_question_not_taken_up_is_not_an_item():
    _segs, notes = _notes(("T", "What about the walk in the morning?"), ("C", "No, I hate mornings."))
    assert notes.action_items == []


def test_therapist_own_next_step_is_owned_by_the_therapist():
    _segs, notes = _notes(("T", "I'll also email you the breathing worksheet tonight."), ("C", "Thanks."))
    [item] = notes.action_items
    assert item.owner == "therapist"
    _segs, notes = _notes(("T", "I'd like to speak with each of you separately in a moment."))
    assert notes.action_items == []


def test_interventions_with_evidence_and_therapist_only_types():
    segs, notes = _notes(
        ("T", "That's really common with panic. Your body goes into fight or flight."),
        ("C", "That makes sense, actually."),
        ("T", "It makes complete sense that you'd want to leave."),
        ("T", "So let's build a ladder of steps, starting with one stop with a friend."),
    )
    by_name = {s.name: s for s in notes.strategies}
    assert {"psychoeducation", "validation", "exposure"} <= set(by_name)
    # the client's "that makes sense" is not validation: the evidence is the therapist's
    assert by_name["validation"].evidence == "It makes complete sense that you'd want to leave."
    for s in notes.strategies:
        _assert_grounded(s, segs)


def test_no_plan_language_no_items():
    _segs, notes = _notes(("T", "How was the week?"), ("C", "Busy. I'll go to work tomorrow as usual."))
    assert notes.action_items == []
    assert notes.strategies == []


def test_dev_sessions_plan_recall():
    """Regression on the author's DEV sessions (tuning data, so optimistic)."""
    from bench.notes_blind import load_dev, score_session, summarise

    summary = summarise([score_session(s) for s in load_dev()])
    assert summary["action_item_recall"] >= 0.9 and summary["intervention_recall"] >= 0.9
    assert summary["invented_items"] == 0
