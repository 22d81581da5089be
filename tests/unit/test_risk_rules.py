"""Issue 14's explicit risk rules (services/notes/risk_rules.py and the context rules added
with them in risk.py), one test per rule, on the lexicon-only detector (fast, deterministic).

Each rule is also exercised end to end through ``RiskDetector.detect`` where a short dialogue
shows it; ``calibrate_episode`` is tested directly on hand-built episode flags."""

from __future__ import annotations

from services.notes.risk import RiskDetector
from services.notes.risk_rules import calibrate_episode
from shared.contracts.events import MergedSegment
from shared.contracts.notes import FlagSource, RiskCategory, RiskEvidence, RiskFlag, Severity, Temporal

LEXICON = RiskDetector(semantic=None)
SI, SH, SU, AV, OT, HO = (RiskCategory.suicidal_ideation, RiskCategory.self_harm, RiskCategory.substance_use,
                          RiskCategory.abuse_or_violence, RiskCategory.other, RiskCategory.harm_to_others)


def _session(*turns: tuple[str, str]) -> list[MergedSegment]:
    """("T"|"C"|"C2", text) turns, 8 s apart; C and C2 are two clients (a family session)."""
    segs, t = [], 0.0
    for who, text in turns:
        role = "THERAPIST" if who == "T" else "CLIENT"
        speaker = {"T": "SPEAKER_00", "C": "SPEAKER_01", "C2": "SPEAKER_02"}[who]
        segs.append(MergedSegment(start=t, end=t + 6.0, speaker=speaker, role=role, text=text))
        t += 8.0
    return segs


def _flags(*turns: tuple[str, str]) -> list[RiskFlag]:
    return LEXICON.detect(_session(*turns))


def _episode(category: RiskCategory, severity: Severity, *quotes: str, temporal=Temporal.current) -> RiskFlag:
    ev = [RiskEvidence(quote=q, start=i * 5.0, end=i * 5.0 + 4, speaker="SPEAKER_01", role="CLIENT")
          for i, q in enumerate(quotes)]
    return RiskFlag(category=category, severity=severity, evidence=quotes[0], start=0.0, source=FlagSource.lexicon,
                    high_priority=severity is Severity.high, temporal=temporal, evidence_quotes=ev)


# --- episode rules ------------------------------------------------------------------------------


def test_suicide_preparation_makes_ideation_high():
    passive = _episode(SI, Severity.moderate, "Some days I wish I wasn't here.")
    assert calibrate_episode(passive).severity is Severity.moderate
    prepared = _episode(SI, Severity.moderate, "Some days I wish I wasn't here.", "I've been saving them in the drawer.")
    out = calibrate_episode(prepared)
    assert out.severity is Severity.high and out.high_priority and "suicide_preparation" in out.rationale
    [flag] = _flags(("C", "Sometimes I just want to die."), ("T", "Have you thought about how?"),
                    ("C", "I've been getting my papers in order. So nobody has to do it."))
    assert flag.category is SI and flag.severity is Severity.high and len(flag.evidence_quotes) >= 2


def test_self_harm_stopped_weeks_ago_is_moderate_an_act_this_week_high():
    stopped = calibrate_episode(_episode(SH, Severity.high, "I last burned my arm three weeks ago."))
    assert stopped.severity is Severity.moderate and not stopped.high_priority
    recent = calibrate_episode(_episode(SH, Severity.high, "I burned my arm again last night."))
    assert recent.severity is Severity.high
    [flag] = _flags(("C", "I cut myself on my thigh three weeks ago, it's healing now."))
    assert flag.category is SH and flag.severity is Severity.moderate


def test_self_harm_act_within_weeks_found_without_a_pattern_is_high_an_urge_or_a_stopped_act_is_not():
    """Round 11 (set 14): a self-harm episode opened by a screening answer or a semantic hit
    has no pattern grade; the account (a blade, bleeding, a named day) makes it high."""
    act = _episode(SH, Severity.moderate, "It's on my leg, I took the blade out of a pencil sharpener.",
                   "Thursday. And twice the week before. It bled through my leggings a bit.")
    out = calibrate_episode(act)
    assert out.severity is Severity.high and out.high_priority and "self_harm_recent_act" in out.rationale
    urge = _episode(SH, Severity.moderate, "I get the urge on Thursdays when the house is quiet.")
    assert calibrate_episode(urge).severity is Severity.moderate
    stopped = _episode(SH, Severity.moderate, "I used a blade on my leg on a Sunday, six weeks ago now.")
    assert calibrate_episode(stopped).severity is Severity.moderate
    denied = _episode(SH, Severity.moderate, "I think about it on Fridays but there's no blade in the house.")
    assert calibrate_episode(denied).severity is Severity.moderate


def test_rehearsal_research_or_a_chosen_time_makes_ideation_high():
    """Round 11 (set 14): a plan drawn out by questions is told without the word "plan"."""
    for detail in ("I went down and stood there and then I came home.", "I've checked the tide times on my phone.",
                   "Saturdays he takes her out. I've thought that'd be the time.",
                   "I look at the water off the end of the pier most days."):
        ep = _episode(SI, Severity.moderate, "It'd be easier for everyone if I wasn't here.", detail)
        out = calibrate_episode(ep)
        assert out.severity is Severity.high and "suicide_preparation" in out.rationale, detail
    walk = _episode(SI, Severity.moderate, "It'd be easier for everyone if I wasn't here.", "I walk by the water most days.")
    assert calibrate_episode(walk).severity is Severity.moderate


def test_harm_to_others_with_a_weapon_and_intent_is_high_anger_alone_is_not():
    """Round 11 (sets 10-11): the weapon and the intent are often in different sentences."""
    armed = _episode(HO, Severity.moderate, "I found his hunting knife wrapped in a gym shirt.",
                     "I was gonna cut him. Make him bleed, so he'd know what it feels like.")
    out = calibrate_episode(armed)
    assert out.severity is Severity.high and "harm_to_others_means_intent" in out.rationale
    angry = _episode(HO, Severity.moderate, "Some days I want to hurt him for what he did.")
    assert calibrate_episode(angry).severity is Severity.moderate
    hunter = _episode(HO, Severity.moderate, "I keep the rifle for deer season.", "I want to hurt him, but I never would.")
    assert calibrate_episode(hunter).severity is Severity.moderate  # intent disavowed
    unarmed = _episode(HO, Severity.moderate, "There's no gun in the house.", "I was going to hit him.")
    assert calibrate_episode(unarmed).severity is Severity.moderate


def test_acute_eating_danger_is_high():
    assert calibrate_episode(_episode(OT, Severity.moderate, "I've been making myself sick.")).severity is Severity.moderate
    assert calibrate_episode(_episode(OT, Severity.moderate, "I've been making myself sick.",
                                      "I fainted twice this week.")).severity is Severity.high
    # round 11 (set 13): the frequency in the answer to the next question; a collapse told plainly
    told = _episode(OT, Severity.moderate, "I hear her vomiting after meals.", "Maybe every day. Most days.")
    assert calibrate_episode(told).severity is Severity.high
    assert calibrate_episode(_episode(OT, Severity.moderate, "I never make myself sick.", "I eat every day, just small.")
                             ).severity is Severity.moderate
    for detail in ("At church she just fell down during the hymn.", "Everything went grey and I was on the floor.",
                   "At night my heart goes very fast."):
        ep = _episode(OT, Severity.moderate, "I skip lunch and most dinners.", detail)
        assert calibrate_episode(ep).severity is Severity.high, detail
    mania = _episode(OT, Severity.moderate, "I'm sleeping two hours a night and I've started three projects.",
                     "I paid a developer on Tuesday. Imran nearly fell over.")
    assert calibrate_episode(mania).severity is Severity.moderate  # surprise, not a faint
    [flag] = _flags(("T", "And the purging, has that been happening?"), ("C", "Yeah. Most days."))
    assert flag.category is OT and flag.severity is Severity.high


def test_substance_use_with_driving_children_is_high():
    drinking = _episode(SU, Severity.moderate, "Most of a bottle of whisky a day.")
    assert calibrate_episode(drinking).severity is Severity.moderate
    driving = _episode(SU, Severity.moderate, "Most of a bottle of whisky a day.", "I'd had a few and drove the boys home.")
    out = calibrate_episode(driving)
    assert out.severity is Severity.high and "child_endangerment" in out.rationale


def test_overdose_or_naloxone_makes_substance_use_high_a_blackout_does_not():
    daily = _episode(SU, Severity.moderate, "Like eight, ten bags a day.")
    assert calibrate_episode(daily).severity is Severity.moderate
    out = calibrate_episode(_episode(SU, Severity.moderate, "Like eight, ten bags a day.",
                                     "A guy I don't even know hit me with Narcan two weeks ago."))
    assert out.severity is Severity.high and "acute_substance_danger" in out.rationale
    blackout = _episode(SU, Severity.moderate, "We did a bottle of vodka.", "They couldn't wake me up for a bit.")
    assert calibrate_episode(blackout).severity is Severity.moderate
    denied = _episode(SU, Severity.moderate, "I drink every night.", "I've never overdosed, if that's what you mean.")
    assert calibrate_episode(denied).severity is Severity.moderate


def test_episode_rules_read_the_unquoted_lines_inside_the_episode():
    """The grading detail sits in a line no pattern fired on: the span's text raises it."""
    ep = _episode(OT, Severity.moderate, "She skips lunch and runs at night.")
    assert calibrate_episode(ep).severity is Severity.moderate
    out = calibrate_episode(ep, span_text="She holds the banister now. The doctor said her pulse was in the forties.")
    assert out.severity is Severity.high and "acute_eating_danger" in out.rationale
    stopped = calibrate_episode(ep, span_text="And her periods have stopped since the summer.")
    assert stopped.severity is Severity.high
    # the span never LOWERS: "fine since" outside the quotes does not make a current episode past
    si = _episode(SI, Severity.moderate, "Most nights I'd not mind if I didn't wake.")
    assert calibrate_episode(si, span_text="My sister's been fine since her operation.").temporal is Temporal.current


def test_child_in_a_drink_driving_account_may_be_named_by_age_only():
    ep = _episode(SU, Severity.moderate, "He drinks from the morning.", "And you drive him after.", "He's six.")
    assert calibrate_episode(ep).severity is Severity.high


def test_denied_marks_are_not_child_abuse():
    ep = _episode(AV, Severity.moderate, "He held my wrists and pushed me to the fridge.", "No marks, nothing.")
    assert calibrate_episode(ep, span_text="I do not want to wake the baby.").severity is Severity.moderate
    hurt = _episode(AV, Severity.moderate, "My dad hit my little brother with the belt.", "He had marks on his legs at school.")
    assert calibrate_episode(hurt).severity is Severity.high
    # the child named only through school life ("his teacher called", "won't change for PE")
    belt = _episode(AV, Severity.moderate, "He uses his belt when Mateo talks back.", "There were marks on the back of his legs.")
    assert calibrate_episode(belt).severity is Severity.moderate
    assert calibrate_episode(belt, span_text="His teacher called again. He won't change for PE.").severity is Severity.high


def test_welts_and_marks_from_current_abuse_are_an_injury():
    ep = _episode(AV, Severity.moderate, "He hits me with the cord when he's loud.", "There was a welt on my leg on Sunday.")
    assert calibrate_episode(ep).severity is Severity.high
    old_marks = _episode(AV, Severity.moderate, "He shouts at me when he's drunk.", "No marks, he's never hit me.")
    assert calibrate_episode(old_marks).severity is Severity.moderate


def test_strangulation_is_high():
    [flag] = _flags(("C", "He grabbed me by my neck against the wall."))
    assert flag.category is AV and flag.severity is Severity.high and flag.high_priority
    [pushed] = _flags(("C", "He pushed me into the door last week."))
    assert pushed.category is AV and pushed.severity is Severity.moderate


def test_resolved_episode_is_low_and_past():
    ep = _episode(SI, Severity.high, "I thought about driving into the bridge supports.",
                  "I haven't had a thought like that since the summer.")
    out = calibrate_episode(ep)
    assert out.severity is Severity.low and out.temporal is Temporal.past and not out.high_priority
    current = _episode(SI, Severity.high, "I thought about driving into the bridge supports.", "It happened again yesterday.")
    assert calibrate_episode(current).severity is Severity.high


# --- mention routing ----------------------------------------------------------------------------


def test_hopelessness_alone_is_no_flag_but_corroborates_ideation():
    assert _flags(("C", "Everything feels pointless."), ("C", "What's the point even trying.")) == []
    [flag] = _flags(("C", "Everything feels pointless."), ("C", "Some nights I wish I could just not wake up."))
    assert flag.category is SI and any("pointless" in q.quote for q in flag.evidence_quotes)


def test_weak_mania_cues_count_only_in_combination():
    assert _flags(("C", "Honestly, sleep's overrated.")) == []
    [flag] = _flags(("C", "Sleep's overrated. I'm on fire, I've basically cracked it."))
    assert flag.category is OT and flag.severity is Severity.moderate
    assert _flags(("C", "The baby means two hours a night at most. I'm on fire at work though.")) == []


def test_two_victims_in_a_family_session_are_two_abuse_episodes():
    flags = _flags(("C", "He hit me across the back of the head."), ("C2", "He's pushed me too. Into the worktop."))
    assert sorted(f.category for f in flags) == [AV, AV]
    assert {f.speaker for f in flags} == {"SPEAKER_01", "SPEAKER_02"}


# --- context rules added with issue 14 ---------------------------------------------------------


def test_topic_survives_a_turn_that_asks_nothing():
    [flag] = _flags(("T", "Has there been any self-harm since we last met?"), ("C", "Um."),
                    ("T", "Take your time. I'm not going to be angry."), ("C", "I did it again. On Tuesday."))
    assert flag.category is SH and flag.severity is Severity.high


def test_command_hallucinations_to_die_are_suicidal_ideation_high():
    flags = _flags(("C", "They say I should go to the bridge and jump."))
    assert [(f.category, f.severity) for f in flags] == [(SI, Severity.high)]


def test_exasperation_at_a_trigger_is_not_a_threat_but_a_weapon_is():
    assert _flags(("C", "When he sees his report I'm going to murder him.")) == []
    [threat] = _flags(("C", "I'm going to kill him, I've got a bat in the boot."))
    assert threat.category is HO and threat.severity is Severity.high


def test_history_told_across_a_turn_is_past():
    [flag] = _flags(("C", "When I got outed at school it was awful. I didn't want to be alive for a while."))
    assert flag.category is SI and flag.temporal is Temporal.past and flag.severity is Severity.low
    [now] = _flags(("C", "I don't want to be alive at the moment."))
    assert now.temporal is Temporal.current and now.severity is Severity.moderate


def test_past_attempt_is_low_and_marked_past():
    [flag] = _flags(("C", "When I was twenty-four I took an overdose."))
    assert flag.category is SI and flag.severity is Severity.low and flag.temporal is Temporal.past


# --- round 12: slang threats, ideation context ----------------------------------------------


def test_slang_threat_with_the_object_ending_the_clause_is_high():
    [flag] = _flags(("C", "I'm going to do him. I'm not being funny."))
    assert flag.category is HO and flag.severity is Severity.high
    # The object has to end the clause: chores, hair and homework are not threats.
    for benign in ("Yes, I'll do them this week.", "I'll do her hair before school.", "I'm going to do him a favour.",
                   "I'll do them.", "I'm not going to do him, I just want him moved."):
        assert [f for f in _flags(("C", benign)) if f.category is HO] == [], benign


def test_attack_plan_on_a_body_part_and_a_made_weapon_join_one_high_episode():
    [flag] = _flags(("C", "I've made a shank out of a toothbrush. I'd go for his face."))
    assert flag.category is HO and flag.severity is Severity.high
    assert [f for f in _flags(("C", "My sister's going to go for her face with a proper makeover."))
            if f.category is HO] == []


def test_loading_a_gun_and_doing_the_will_inside_an_ideation_episode_make_it_high():
    [flag] = _flags(("T", "When you're up there with the gun, are you thinking about ending your life?"),
                    ("C", "Duw. You don't mess about. Aye, I've thought about it. Last Sunday I put two cartridges in it "
                          "and sat on the wall for an hour."))
    assert flag.category is SI and flag.severity is Severity.high and "rehearsal" in flag.rationale
    [will] = _flags(("C", "Sometimes I just want to die."), ("T", "Have you made any preparations?"),
                    ("C", "I went to the solicitor last month and did the will."))
    assert will.category is SI and will.severity is Severity.high
    # Context alone never flags: a farmer's gun and a parent's will are not ideation.
    assert _flags(("C", "I put two cartridges in it and got the crow off the barley.")) == []
    assert _flags(("C", "We did the will after Dad died, it was all very sad.")) == []
