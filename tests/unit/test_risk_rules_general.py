"""Issue 14, second round: the general linguistic rules of the risk safety net (services/notes/
risk.py, risk_rules.py, risk_episodes.py), one test per rule, lexicon-only (fast, deterministic).

Written from the rule's structure with sentences made up for the test, not copied from any
evaluation set."""

from __future__ import annotations

import pytest

from services.notes.risk import RiskDetector, _scan_sentence_ex
from shared.contracts.events import MergedSegment
from shared.contracts.notes import RiskCategory, RiskFlag, Severity, Temporal

LEXICON = RiskDetector(semantic=None)
SI, SH, SU, AV, OT, HO = (RiskCategory.suicidal_ideation, RiskCategory.self_harm, RiskCategory.substance_use,
                          RiskCategory.abuse_or_violence, RiskCategory.other, RiskCategory.harm_to_others)


def _session(*turns: tuple[str, str], gap: float = 8.0) -> list[MergedSegment]:
    """("T"|"C"|"C2"|"C3", text) turns; C, C2, C3 are clients (two or more: a family session)."""
    segs, t = [], 0.0
    for who, text in turns:
        role = "THERAPIST" if who == "T" else "CLIENT"
        speaker = {"T": "SPEAKER_00", "C": "SPEAKER_01", "C2": "SPEAKER_02", "C3": "SPEAKER_03"}[who]
        segs.append(MergedSegment(start=t, end=t + 6.0, speaker=speaker, role=role, text=text))
        t += gap
    return segs


def _flags(*turns: tuple[str, str], gap: float = 8.0) -> list[RiskFlag]:
    return LEXICON.detect(_session(*turns, gap=gap))


def _cats(text: str, family: bool = False) -> set[RiskCategory]:
    return {p.category for p, _s, _w in _scan_sentence_ex(text, family)[0]}


# --- self-harm / suicide predicates in many verb forms -------------------------------------------


def test_lethal_method_verbs_with_myself_flag_and_idioms_do_not():
    assert SI in _cats("I looked up how to hang myself.")
    assert SI in _cats("I tried to drown myself in the spring.")
    assert SI not in _cats("I really shot myself in the foot with that email.")


def test_wanting_to_die_for_a_while_is_not_the_idiom_to_die_for():
    assert SI in _cats("I've just wanted to die for a while.")
    assert not _cats("That chocolate cake was to die for.")


def test_means_research_how_many_tablets_it_would_take():
    assert SI in _cats("I was looking up how many of my tablets it would take to die.")
    assert not _cats("How many tablets should I take for a headache?")


def test_not_wanting_to_exist_and_not_worth_living_forms():
    assert SI in _cats("Some days I'd rather just not wake up.")
    assert SI in _cats("Life doesn't feel worth living lately.")
    assert SI in _cats("Everyone would be better off if I just wasn't around.")


def test_drive_the_car_into_the_river_is_method_ideation():
    assert SI in _cats("I was going to drive the car into the river.")


# --- negation, hypothetical, third party, reported speech, media, idioms ------------------------


def test_relative_clause_agent_is_not_the_speaker():
    assert not _cats("She once said she'd murder anyone who hurt me.")
    assert not _cats("I read about a dad who actually hurt his kid.")
    assert AV in _cats("My husband who hits me is at home tonight.")  # a definite antecedent is a disclosure


def test_someone_elses_account_of_the_client_is_not_a_threat():
    assert HO not in _cats("Her boyfriend said I looked like I wanted to kill them all.")
    assert HO in _cats("I'm going to kill him when I see him, I swear.")


def test_intrusive_fear_and_imagined_consequences_are_not_harm_intent():
    assert HO not in _cats("I'm terrified I might hurt the baby.")
    assert HO not in _cats("I keep imagining what would happen if I hit someone.")


def test_protective_conditional_is_hypothetical():
    assert not _cats("If someone hurt my kids I'd kill them.")


def test_quoted_lyrics_and_idioms():
    assert not _cats("The lyrics go something like I want to die tonight.")
    assert not _cats("That pitch was a suicide mission.")
    assert not _cats("She drags me here every week.")
    assert not _cats("I'd have stayed till they kicked me out.")
    assert SU not in _cats("I smashed the exam.")


def test_a_mates_self_harm_is_third_party():
    assert SH not in _cats("My best mate's been self-harming, I'm worried about her.")
    assert AV not in _cats("My colleague's husband hits her, she told me at lunch.")


# --- abuse: control, intimidation, children ------------------------------------------------------


def test_coercive_control_and_intimidation():
    assert AV in _cats("He wouldn't let me past the door.")
    assert AV in _cats("He takes my keys so I can't leave.")
    assert AV not in _cats("He takes my keys to the garage when he goes.")
    assert AV in _cats("He punched the wall right next to my head.")


def test_you_is_the_partner_in_a_couple_session_only():
    assert AV in _cats("You grabbed me and pushed me back.", family=True)
    assert AV not in _cats("You grabbed me and pushed me back.", family=False)  # "you" = the therapist
    assert AV not in _cats("You hurt me when you said that.", family=True)  # emotional hurt


def test_child_abuse_with_an_implement_or_injuries_is_high():
    flags = _flags(("T", "What happened?"),
                   ("C", "He took our son into the bedroom with the belt."),
                   ("C", "He had welts on the back of his legs on Monday."))
    [flag] = [f for f in flags if f.category is AV]
    assert flag.severity is Severity.high and "child_abuse" in flag.rationale


def test_collateral_accounts_of_a_child_by_two_parents_are_one_episode():
    flags = _flags(("C2", "When he's bad, he gets the belt."),
                   ("T", "Can you tell me what happened?"),
                   ("C", "He had welts on the back of his legs after the belt."))
    assert len([f for f in flags if f.category is AV]) == 1


def test_past_abuse_of_someone_else_is_not_a_flag():
    assert AV not in _cats("My dad used to hit my mum when I was a kid.")
    assert AV in _cats("My dad hits my little brother.")


# --- family collateral -----------------------------------------------------------------------


def test_parent_reporting_on_a_child_in_the_room_is_a_disclosure():
    assert SI in _cats("She'd been looking up how many of the tablets it would take to die.", family=True)
    assert SI not in _cats("She'd been looking up how many of the tablets it would take to die.", family=False)
    # someone outside the session named in the sentence: the pronoun is theirs
    assert SI not in _cats("My friend told me she'd been looking up how many tablets it would take to die.", family=True)


# --- screening questions and topic context --------------------------------------------------------


def test_hesitant_yes_to_a_screening_question_is_a_disclosure_graded_moderate_without_plan():
    [flag] = _flags(("T", "Have you been having thoughts of killing yourself?"), ("C", "I. Yeah. Some. More this month."))
    assert flag.category is SI and flag.severity is Severity.moderate


def test_screening_yes_inherits_plan_and_means_told_next():
    flags = _flags(("T", "Have you been having thoughts of killing yourself?"), ("C", "Yeah. Some."),
                   ("T", "Do you have access to a firearm?"), ("C", "My gun. It's in the safe in the garage."))
    [flag] = [f for f in flags if f.category is SI]
    assert flag.severity is Severity.high


def test_screening_answer_only_counts_for_what_was_asked():
    flags = _flags(("T", "How does it feel to have said that?"),
                   ("C", "A little lighter. I was scared you'd freak out when I said the not wake up thing."))
    assert flags == []


def test_yes_to_the_milder_of_two_alternatives_is_not_high():
    [flag] = _flags(("T", "Do you have thoughts about not wanting to be alive, or about ending your life?"),
                    ("C", "Sometimes, yeah. More a tiredness than a plan."))
    assert flag.severity is Severity.moderate


def test_harm_to_others_question_naming_a_target_frames_the_answer():
    flags = _flags(("T", "Have you thought about actually hurting Rick?"),
                   ("C", "I've thought about it. I've got a bat in the truck. I know where he parks."))
    [flag] = [f for f in flags if f.category is HO]
    assert flag.severity is Severity.high


def test_convergent_plan_cues_open_a_harm_to_others_episode():
    flags = _flags(("C", "I know where he parks."), ("C", "I've been watching his car after my shift."))
    [flag] = flags
    assert flag.category is HO and flag.severity is Severity.high and "convergent_plan" in flag.rationale
    assert _flags(("C", "My dad keeps a bat in the truck.")) == []  # one cue alone: no flag


def test_a_plan_made_in_reply_is_not_a_disclosure():
    flags = _flags(("T", "Has she fainted again?"), ("C2", "We'll be there on Thursday for the bloods."))
    assert flags == []


def test_self_harm_topic_reply_weeks_since_last_time_is_moderate():
    [flag] = _flags(("T", "Last time we talked about the burning. Can we check in on that?"),
                    ("C", "Yeah. I haven't done it. It's been three weeks now since the last time."),
                    ("T", "That's significant."),
                    ("C", "The urges haven't gone. Most nights I still think about it."))
    assert flag.category is SH and flag.severity is Severity.moderate


def test_harsh_voice_is_not_a_psychosis_topic():
    assert _flags(("T", "That's a harsh voice. Can we check in?"), ("C", "Yeah, most nights it's there.")) == []


# --- past and resolved ------------------------------------------------------------------------


def test_story_dated_by_the_next_turn_is_past():
    flags = _flags(("C", "I had it all worked out, I was going to drive the car into the river."),
                   ("T", "When was that?"), ("C", "That was thirty years ago. I haven't felt like that since."))
    [flag] = flags
    assert flag.temporal is Temporal.past and flag.severity is Severity.low


def test_relapse_followed_by_months_clean_is_past():
    [flag] = _flags(("C", "I was on heroin for most of my twenties."),
                    ("C", "After the funeral I used again. That was eighteen months back."))
    assert flag.category is SU and flag.temporal is Temporal.past


def test_established_history_absorbs_a_later_past_tense_mention():
    flags = _flags(("C", "From when I was nine he used to knock me about."),
                   ("T", "What comes up in the nightmares?"),
                   ("C", "It's the one where he locked me in the shed."), gap=150.0)
    assert len(flags) == 1 and flags[0].temporal is Temporal.past
    # a new person, told in the present: a separate current episode
    flags = _flags(("C", "From when I was nine he used to knock me about."),
                   ("C", "My boyfriend hits me when he's drunk."), gap=150.0)
    assert any(f.temporal is Temporal.current and f.category is AV for f in flags)


def test_sober_for_years_is_history():
    assert _flags(("C", "I've been sober three years in January.")) == []


def test_exasperation_at_a_habit_is_not_a_threat():
    assert HO not in _cats("He bangs on about his ex and I want to strangle him when he does that.")


def test_an_act_in_reply_to_an_urges_question_is_high():
    [flag] = _flags(("T", "Have there been any urges to self-harm?"), ("C", "Yeah. I did it on Sunday. Just the once."))
    assert flag.category is SH and flag.severity is Severity.high


def test_a_parent_finding_cuts_on_a_childs_arms_is_self_harm_not_abuse():
    flags = _flags(("C", "We found blades hidden in her room and cuts on her arms last week."), ("C2", "It's not a big deal."))
    assert [f.category for f in flags] == [SH]


def test_adult_abuse_with_a_recent_injury_is_high():
    [flag] = _flags(("C", "He hit me again on Saturday. I had to cover the bruise with makeup."))
    assert flag.severity is Severity.high and "recent_injury" in flag.rationale
    [flag] = _flags(("C", "He shouts and he punched the wall next to my head. He's never actually hit me."))
    assert flag.severity is Severity.moderate


def test_a_denied_injury_does_not_raise_abuse():
    [flag] = _flags(("C", "He grabbed me by the arm and pushed me."), ("C", "Not injured. No bruises or anything."))
    assert flag.severity is Severity.moderate


def test_collateral_abuse_outside_the_family_and_trivial_threats():
    assert AV not in _cats("My friend's dad hit her with a belt, she showed me the marks.")
    assert AV not in _cats("He said he'd kill me if I touched his stuff again.")
    assert AV in _cats("He said he'd kill me if I told anyone.")


# --- round 7: words that look like risk in everyday shapes (made-up sentences) --------------------


def test_a_walking_cane_is_not_an_implement_but_a_cane_used_on_a_child_is():
    assert AV not in _cats("Grandad's round most days now, walking with a cane.", family=True)
    assert AV in _cats("He took a cane to my little brother.", family=True)


def test_how_someone_died_in_their_sleep_is_not_a_wish_to_not_wake_up():
    assert SI not in _cats("Just went to sleep and didn't wake up.")
    assert SI in _cats("Some nights I hope I don't wake up.")


def test_checking_ones_own_phone_is_not_coercive_control():
    assert AV not in _cats("I'll try not to check my phone at dinner.")
    assert AV in _cats("He checks my phone every night.")


def test_fear_of_being_detained_is_not_abuse():
    assert not [f for f in _flags(("T", "Would you see the crisis team?"), ("C", "If I go, will they lock me up?"))
                if f.category is AV]
    assert [f for f in _flags(("T", "What happens when he's angry?"), ("C", "He locks me in the bedroom."))
            if f.category is AV]


def test_an_explicit_year_long_past_makes_a_disclosure_historical():
    flags = _flags(("T", "Has anything like that happened to you?"), ("C", "I was stabbed outside a club in 2016."))
    violence = [f for f in flags if f.category is AV]
    assert violence and all(f.temporal is Temporal.past for f in violence)


# --- round 8 (made-up sentences in the shapes sets 1-8 showed) ------------------------------------


def test_learned_layers_may_not_flag_protective_statements_news_or_people_outside_the_room():
    from services.notes.risk import _not_a_disclosure

    assert _not_a_disclosure("i want to be here.", SI)
    assert _not_a_disclosure("but i want to see my grandson grow up.", SI)
    assert not _not_a_disclosure("i don't want to be here any more.", SI)  # the opposite, negated: ideation
    assert _not_a_disclosure("on the radio they were saying one farmer a week takes his own life.", SI)
    assert _not_a_disclosure("my roommate's cousin had a stroke at thirty.", OT)
    assert not _not_a_disclosure("my roommate found me after i took the pills.", SI)  # first person: own story


def test_ideas_of_reference_and_persecution_in_everyday_words_flag_also_from_a_relative():
    assert OT in _cats("When they play certain songs in a certain order, it's meant for me.")
    assert OT in _cats("The FBI been sitting outside the house for weeks.")
    assert OT in _cats("He took the batteries out of the smoke alarm, said it was a camera.", family=True)
    assert OT not in _cats("The present was meant for my sister.")
    assert OT not in _cats("The police were sitting outside the pub.")


def test_a_beating_with_an_implement_for_nothing_counts_and_dates_with_its_turn():
    assert AV in _cats("They leathered us with a strap for nothing.")
    assert AV not in _cats("He bought a new strap for his watch.")
    flags = _flags(("T", "Has anything like this happened before?"),
                   ("C", "I was in a children's home as a boy, in the sixties. The staff leathered us with a strap for nothing."))
    violence = [f for f in flags if f.category is AV]
    assert violence and all(f.temporal is Temporal.past and f.severity is Severity.low for f in violence)


def test_a_threat_conditioned_on_harm_that_happened_is_not_exasperation_or_hypothetical():
    assert HO in _cats("I swear I'll kill him if he hits her again.")
    assert HO in _cats("I'll kill him if he touches my daughter again.")
    assert HO not in _cats("I'll kill him if he leaves the dishes in the sink again.")
    assert HO not in _cats("If anyone ever touched my kids I'd kill them.")


def test_an_overdose_told_about_someone_else_is_not_the_speakers():
    assert SI not in _cats("We had a lad in last week, nineteen, took an overdose, and I sat with him.")
    assert SI in _cats("I met a guy at a party and then I took an overdose.")


def test_a_named_attack_with_a_weapon_and_a_place_to_wait_is_high():
    flags = _flags(("T", "What's on your mind?"),
                   ("C", "I going to chop him. Saturday I going to wait by the gate with the machete."))
    harm = [f for f in flags if f.category is HO]
    assert harm and harm[0].severity is Severity.high and harm[0].high_priority
    assert not [f for f in _flags(("T", "How was the weekend?"), ("C", "I chopped wood with the axe all Saturday."))
                if f.category is HO]


class _EveryTurnSuicidal:
    """A stand-in for the trained classifier (its weights are tested elsewhere): every client
    turn reads as suicidal ideation at p=0.95, so only the detector's own gates decide."""

    threshold, guarded_threshold, weak_veto, lexicon_veto = 0.7, 0.8, 0.8, None  # as shipped

    def predict(self, turns):
        from services.notes.risk_classifier import TurnPrediction

        return [TurnPrediction(i, {"none": 0.05, "suicidal_ideation": 0.95}, {"low": 0.1, "moderate": 0.8, "high": 0.1}, 0.0)
                for i, t in enumerate(turns) if not t.therapist]

    def sentence_scores(self, category, sentences):
        return [1.0] * len(sentences)


def test_the_classifier_may_not_open_an_episode_alone_on_a_short_answer():
    detector = RiskDetector(semantic=None, classifier=_EveryTurnSuicidal())
    short = detector.detect(_session(("T", "Have you had thoughts of ending your life?"), ("C", "Four in the morning.")))
    assert not [f for f in short if f.category is SI]
    long = detector.detect(_session(("T", "How have the nights been?"),
                                    ("C", "Most nights I lie there until four in the morning going over all of it again and again.")))
    assert [f for f in long if f.category is SI]


@pytest.mark.timeout(120)  # a hang, not a slow run: catastrophic backtracking would never end
def test_hostile_turns_against_the_round8_risk_patterns_finish():
    for hostile in ("if he " + "x " * 20000 + "hits her again", "the fbi " + "a " * 20000 + "watching",
                    "i want to " * 10000, "a " * 30000 + "with the machete", "on the news " * 10000):
        flags = _flags(("T", "How have things been?"), ("C", hostile))
        assert all(f.evidence and f.evidence in hostile for f in flags)


def test_everyday_words_for_an_assault_need_a_person_after_them():
    assert HO in _cats("When I've had a few I want to flatten them.")
    assert HO in _cats("I decked him outside the club.")
    assert HO in _cats("I swung at a bloke at the bar.")
    assert HO in _cats("Twenty years ago I glassed a lad in a pub.")
    assert HO not in _cats("I flattened the boxes for the recycling.")
    assert HO not in _cats("I went for a walk with a guy from work.")
    assert HO not in _cats("My mate decked him.")  # someone else's assault is not the client's
    assert HO not in _cats("I'd never thump anyone.")
