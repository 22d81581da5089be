"""Offline notes, second round (issue 14 item 2): agreed actions in the forms clients actually
agree them, and interventions shown rather than named. Sentences are made up for the tests."""

from __future__ import annotations

import pytest

from bench.risk_blind import to_segments
from services.notes.offline import build_offline_notes


def _notes(*turns: tuple[str, str]):
    roles = {"T": "THERAPIST"}
    segs = to_segments([{"speaker": sp, "role": roles.get(sp, "CLIENT"), "text": t} for sp, t in turns])
    return segs, build_offline_notes(segs, [])


def _evidence(notes) -> list[str]:
    return [a.evidence for a in notes.action_items]


def _grounded(notes, segs) -> None:
    text = "\n".join(s.text for s in segs)
    for item in list(notes.action_items) + list(notes.strategies):
        assert item.evidence and item.evidence in text  # nothing invented


def test_open_verb_commitment_answering_the_therapist_is_an_action():
    segs, notes = _notes(("T", "If it helps, I can write a short note for the surgery."),
                         ("C", "That would help. I'll ring the surgery this afternoon."))
    assert "I'll ring the surgery this afternoon." in _evidence(notes)
    _grounded(notes, segs)


def test_narrative_future_is_not_an_action():
    _segs, notes = _notes(("T", "How did the weekend go?"), ("C", "I'll be honest, it was rough. I'll probably fail the exam."))
    assert notes.action_items == []


def test_conditional_plan_and_plan_with_a_time():
    _segs, notes = _notes(("T", "What will you do when it gets heated?"),
                          ("C", "If I'm at a six I'll go out to the garage."),
                          ("T", "And you?"), ("C2", "I'm keeping my keys with me from now on."))
    ev = _evidence(notes)
    assert "If I'm at a six I'll go out to the garage." in ev
    assert "I'm keeping my keys with me from now on." in ev


def test_answer_to_a_plan_question_is_the_plan_only_when_concrete():
    _segs, notes = _notes(("T", "So this week?"), ("C", "Cooking with him in the kitchen four times, no googling."))
    assert "Cooking with him in the kitchen four times, no googling." in _evidence(notes)
    _segs, notes = _notes(("T", "So this week?"), ("C", "Probably nothing."))
    assert notes.action_items == []


def test_instruction_taken_up_and_suggestion_between_clients():
    _segs, notes = _notes(("T", "If he stops sleeping, call the crisis team."), ("C", "We will. Thank you."))
    assert "If he stops sleeping, call the crisis team." in _evidence(notes)
    _segs, notes = _notes(("T", "Any ideas for time together?"), ("C", "Lily, what about nails on Wednesday?"),
                          ("C2", "Okay. Yeah. That'd be nice."))
    assert "Lily, what about nails on Wednesday?" in _evidence(notes)


def test_plan_before_an_acceptance_in_the_same_turn():
    _segs, notes = _notes(("T", "What would you two enjoy?"), ("C", "Saturday pancakes. Just the two of us. I can do that."))
    assert "Saturday pancakes." in _evidence(notes)


def test_therapist_own_next_steps_including_asking_consent():
    _segs, notes = _notes(("T", "After that, I'll call the crisis team and walk you over."),
                          ("T", "Would it be okay if I spoke to your keyworker?"), ("C", "Yeah, go for it."))
    owners = {a.evidence: a.owner for a in notes.action_items}
    assert owners.get("After that, I'll call the crisis team and walk you over.") == "therapist"
    assert "Would it be okay if I spoke to your keyworker?" in owners


def _names(*turns):
    segs, notes = _notes(*turns)
    _grounded(notes, segs)
    return {s.name for s in notes.strategies}


def test_psychoeducation_shown_not_named():
    assert "psychoeducation" in _names(("T", "That pattern is really common after a loss."), ("C", "Okay."))
    assert "psychoeducation" in _names(("T", "Those three a.m. thoughts are a symptom, not a verdict."), ("C", "Right."))
    assert "psychoeducation" in _names(("T", "The brain stores the danger signal and fires the alarm."), ("C", "Huh."))
    assert "psychoeducation" not in _names(("C", "That's really common for me."), ("T", "Tell me more."))  # client words


def test_validation_reflection_and_mi_questions():
    assert "validation" in _names(("T", "So what I'm hearing is that it feels unfair."), ("C", "Yes."))
    assert "validation" in _names(("T", "It sounds like a big piece of you went with the job."), ("C", "Yeah."))
    assert "motivational interviewing" in _names(("T", "Is that what you want him to feel toward you?"), ("C", "No."))


def test_restructuring_safety_planning_and_problem_solving_shown():
    assert "thought records / cognitive restructuring" in _names(("T", "Is it possible the same is true for you?"), ("C", "Maybe."))
    assert "safety planning" in _names(("T", "Can we talk about getting the gun out of the house?"), ("C", "Okay."))
    assert "problem solving" in _names(("T", "What if we set some ground rules for the meeting?"), ("C", "Fine."))


def test_sleep_hygiene_breathing_and_relapse_prevention_shown():
    assert "sleep hygiene" in _names(("T", "Lights off by midnight, phone in the kitchen."), ("C", "Okay."))
    assert "breathing exercises" in _names(("T", "Breathe in for four, hold, out for six."), ("C", "Okay."))
    assert "relapse prevention" in _names(("T", "So those are your red flags."), ("C", "Yeah."))
    assert "relapse prevention" not in _names(("C", "The cravings are bad."), ("T", "Tell me more."))


def _strategy_names(*turns: tuple[str, str]) -> set[str]:
    segs, notes = _notes(*turns)
    _grounded(notes, segs)
    return {s.name for s in notes.strategies}


def test_means_restriction_is_its_own_intervention_and_still_safety_planning():
    names = _strategy_names(("C", "The tablets are in the bathroom cabinet."),
                            ("T", "Could your brother hold onto the tablets for now, out of the flat?"))
    assert "means restriction" in names
    names = _strategy_names(("T", "Is there somewhere they could be locked away tonight, a gun safe at your dad's?"))
    assert {"means restriction", "safety planning"} <= names
    # The client's own talk of a cabinet is not the therapist restricting means.
    assert "means restriction" not in _strategy_names(("C", "Could you hold onto the tablets for me? I lost the keys."),
                                                      ("T", "How has the week been?"))


def test_relaxation_shown_not_named():
    names = _strategy_names(("T", "Let's try it now. Let your shoulders drop and breathe out slowly, longer than the in-breath."))
    assert "relaxation" in names


def test_psychoeducation_by_naming_and_explaining_a_pattern():
    for line in ("That pattern has a name: boom and bust.",
                 "What you're describing sounds like panic, and it's very treatable.",
                 "Skipping meals all day is one of the things that keeps the bingeing going.",
                 "When we've been scared for a long time, the body stays on alert."):
        assert "psychoeducation" in _strategy_names(("C", "I don't know why it happens."), ("T", line)), line
    assert "psychoeducation" not in _strategy_names(("T", "How was the drive in today?"), ("C", "Fine, thanks."))


def test_shown_moves_for_problem_solving_activation_and_distress_tolerance():
    assert "problem solving" in _strategy_names(("T", "If you broke it into the smallest possible piece, what would it be?"))
    assert "behavioral activation" in _strategy_names(("T", "What would be a small, doable version of that this week?"))
    assert "distress tolerance" in _strategy_names(("T", "Some people squeeze ice or take a cold shower to take the edge off."))
    assert "motivational interviewing" in _strategy_names(("T", "On a scale of nought to ten, how ready are you to cut down?"))


def test_round7_suggestion_about_a_named_person_taken_up_in_other_words():
    # Round 7 (issue 14): a proposal about someone else in the room or outside it, agreed
    # without an "okay" first; made-up sentences in the shapes set 7 showed.
    _segs, notes = _notes(("T", "Could Marta come over tomorrow?"), ("C", "Tomorrow. She'd do that."))
    assert "Could Marta come over tomorrow?" in _evidence(notes)
    _segs, notes = _notes(("T", "What if the shop phone went to your nephew after eight?"), ("C", "Rafi can do it. He's up late."))
    assert "What if the shop phone went to your nephew after eight?" in _evidence(notes)
    # Lower-case "could it" is not a named person: a question, nobody agreed to anything.
    _segs, notes = _notes(("T", "So could it go wrong again?"), ("C", "Tomorrow. She'd do that."))
    assert notes.action_items == []


def test_round7_therapist_imperatives_and_family_requests_are_set_items():
    _segs, notes = _notes(("T", "Save the number under your gym's name."), ("C", "Doing it now."))
    assert "Save the number under your gym's name." in _evidence(notes)
    _segs, notes = _notes(("T", "I'd like the whole family to walk together twice this week."), ("C", "Hm."))
    assert "I'd like the whole family to walk together twice this week." in _evidence(notes)
    _segs, notes = _notes(("T", "I'd like the family to know you're doing well."), ("C", "Hm."))
    assert notes.action_items == []  # "like ... to know" is a wish, not a task


def _strategies(*turns: tuple[str, str]) -> set[str]:
    return {s.name for s in _notes(*turns)[1].strategies}


def test_round7_techniques_shown_only_count_from_the_therapist():
    assert "behavioral activation" in _strategies(("T", "Could you go to the pool two mornings this week?"))
    assert "behavioral activation" not in _strategies(("T", "How was it?"), ("C", "I'm starting next Monday at the depot."))
    assert "problem solving" in _strategies(("T", "Has anyone told you about the carers' allowance?"))
    assert "psychoeducation" in _strategies(("T", "Panic can feel a lot like a heart attack."))
    assert "means restriction" in _strategies(("T", "Would you leave them here with me today?"))
    assert "means restriction" not in _strategies(("T", "And then?"), ("C", "I left them here with me. I mean with her."))


@pytest.mark.timeout(120)  # a hang, not a slow run: catastrophic backtracking would never end
def test_hostile_one_sentence_turns_against_the_round7_patterns_finish_and_invent_nothing():
    # One "sentence" of tens of thousands of words, shaped to make the round-7 patterns
    # (bounded repeats before "could <Name>", "there are ... services", "... can do it") backtrack.
    for hostile in ("a, " * 30000 + "could Dale come", "there are " + "big " * 20000 + "x", "I " + "can " * 20000 + "do it"):
        segs, notes = _notes(("T", hostile), ("C", hostile))
        _grounded(notes, segs)


# --- round 8 (issue 14): shapes sets 1-8 show; made-up sentences -------------------------------


def test_round8_next_appointment_agreed_is_an_action():
    _segs, notes = _notes(("T", "That's a good place to stop. Same time next Thursday?"), ("C", "Yeah, go on."))
    assert "Same time next Thursday?" in _evidence(notes)
    _segs, notes = _notes(("T", "Three weeks from today, then?"), ("C", "That's grand."))
    assert "Three weeks from today, then?" in _evidence(notes)
    _segs, notes = _notes(("T", "Same time next week?"), ("C", "Same time."))
    assert "Same time next week?" in _evidence(notes)
    # Not a proposal: a question about the past, and a refusal.
    _segs, notes = _notes(("T", "Was it the same time as last year?"), ("C", "No, earlier."))
    assert notes.action_items == []


def test_round8_therapist_steps_with_someone_and_third_person_acceptance():
    _segs, notes = _notes(("T", "I'd also like to talk to your son's teacher, with your permission."), ("C", "Please do."))
    assert "I'd also like to talk to your son's teacher, with your permission." in _evidence(notes)
    _segs, notes = _notes(("T", "We can ring the clinic together from here."), ("C", "Alright."))
    assert "We can ring the clinic together from here." in _evidence(notes)
    _segs, notes = _notes(("T", "Would you take the car to your cousin's tonight?"), ("C", "Marco would like that."))
    assert "Would you take the car to your cousin's tonight?" in _evidence(notes)
    # Talking about something is a topic, not a step; "we can talk about it" neither.
    _segs, notes = _notes(("T", "I'd like to talk about your mum."), ("C", "Okay."))
    assert notes.action_items == []
    _segs, notes = _notes(("T", "We can talk about who is told."), ("C", "Fine."))
    assert notes.action_items == []


def test_round8_techniques_shown_only_count_from_the_therapist():
    assert "psychoeducation" in _strategies(("T", "When someone stops eating, the body switches things off to save energy."))
    assert "psychoeducation" in _strategies(("T", "It's a loop, not a flaw in you."))
    assert "psychoeducation" in _strategies(("T", "It's a wiring difference, not laziness."))
    assert "psychoeducation" not in _strategies(("T", "How was it?"), ("C", "It's a loop, the whole thing."))
    assert "means restriction" in _strategies(("T", "Could your brother keep them somewhere locked for now?"))
    assert "safety planning" in _strategies(("T", "Next time the urge gets loud, what could you try first?"))
    assert "safety planning" in _strategies(("T", "Shall we agree a word you could text me if it gets bad?"))
    assert "safety planning" not in _strategies(("T", "What did you do next?"), ("C", "Next time it happens, what could you even say?"))
    assert "motivational interviewing" in _strategies(("T", "What makes it a five and not a two?"))
    assert "problem solving" in _strategies(("T", "Could there be one night a week that's just for the two of you?"))


@pytest.mark.timeout(120)
def test_hostile_turns_against_the_round8_patterns_finish_and_invent_nothing():
    for hostile in ("same time " * 20000 + "x", "two weeks " * 20000, "a " + "b " * 20000 + ", not x",
                    "next time the " + "x " * 20000 + "what could you"):
        segs, notes = _notes(("T", hostile), ("C", hostile))
        _grounded(notes, segs)


def test_round9_reframes_and_plain_mechanisms_and_concrete_proposals_from_the_therapist():
    assert "reframing" in _strategies(("T", "Is there another way to look at what happened on Friday?"))
    assert "psychoeducation" in _strategies(("T", "Many people who lose a parent young say the same thing."))
    assert "psychoeducation" in _strategies(("T", "Wine is a depressant, so the lift doesn't last."))
    assert "psychoeducation" in _strategies(("T", "What panic does is convince you that you're in danger."))
    assert "problem solving" in _strategies(("T", "Would it help if your sister held the card for a while?"))
    assert "problem solving" in _strategies(("T", "Could you draft a simple rota for the school runs?"))
    # The same words from a client are not a technique.
    assert "psychoeducation" not in _strategies(("T", "How was the week?"), ("C", "It's normal for me to feel like this."))
    assert "problem solving" not in _strategies(("T", "What happened?"), ("C", "Would it help if I just left?"))


def test_round9_systemic_reframes_and_family_work_need_two_or_more_clients_in_the_room():
    couple = (("C", "She never listens."), ("C2", "He never asks."))
    assert "reframing" in _strategies(*couple, ("T", "It sounds like you both want the same thing, to be heard."))
    assert "reframing" in _strategies(*couple, ("T", "So the note landed as criticism, when it was meant as a plea for help."))
    assert "family work" in _strategies(*couple, ("T", "Rosa, what do you notice when you hear your father say that?"))
    assert "family work" in _strategies(*couple, ("T", "Could you and your brother spend one evening together this week?"))
    # One client: the same words are not family work or a couple's reframe.
    alone = (("C", "My boss never listens."),)
    assert "family work" not in _strategies(*alone, ("T", "What do you notice when you hear your father say that?"))
    assert "reframing" not in _strategies(*alone, ("T", "It sounds like you both want the same thing."))
    assert "family work" not in _strategies(*couple, ("C", "What do you notice when you hear him say that?"))


@pytest.mark.timeout(120)
def test_hostile_turns_against_the_round9_patterns_finish_and_invent_nothing():
    for hostile in ("many " + "x " * 20000 + "people who", "could you and " + "x " * 20000 + "spend",
                    "it's not about " + "x " * 20000 + "it's about", "you both " * 10000):
        segs, notes = _notes(("C", "x"), ("C2", "y"), ("T", hostile))
        _grounded(notes, segs)
