"""Risk rules at the session level: one flag per episode, clinical severity, and the context
rules (negation, idiom, hypothetical, third party / reported speech, quoted media, the
therapist's screening questions), plus the semantic layer's solo threshold and the merge
with LLM flags.

Lexicon-only detector (deterministic, no model load) except where the semantic layer is the
subject, which uses a stub model with fixed similarities.
"""

from __future__ import annotations

import pytest

from bench.risk_blind import to_segments
from services.notes.risk import RiskDetector, detect_risk, merge_flags
from services.notes.risk_semantic import SemanticConfig
from shared.contracts.events import MergedSegment
from shared.contracts.notes import FlagSource, RiskCategory, RiskEvidence, RiskFlag, Severity, Temporal

LEXICON = RiskDetector(semantic=None)
SI, SH, HO, AV, SU = (RiskCategory.suicidal_ideation, RiskCategory.self_harm, RiskCategory.harm_to_others,
                      RiskCategory.abuse_or_violence, RiskCategory.substance_use)


def _session(*turns: tuple[str, str]) -> list[MergedSegment]:
    """("T"|"C"|"C2", text) turns -> timed segments (~140 words/min) with roles."""
    return to_segments([{"speaker": sp, "role": "THERAPIST" if sp == "T" else "CLIENT", "text": t} for sp, t in turns])


def _flags(*turns: tuple[str, str]) -> list[RiskFlag]:
    return LEXICON.detect(_session(*turns))


# --- episodes -------------------------------------------------------------------------------


def test_contiguous_mentions_are_one_episode_with_every_quote():
    flags = _flags(
        ("C", "On Tuesday night I cut myself again."),
        ("T", "Thank you for telling me. Where did you cut?"),
        ("C", "On my thigh, with a razor blade. I've been cutting three times this week."),
    )
    assert len(flags) == 1
    [flag] = flags
    assert flag.category is SH and flag.temporal is Temporal.current
    quotes = [q.quote for q in flag.evidence_quotes if q.role == "CLIENT"]
    assert quotes == ["On Tuesday night I cut myself again.", "On my thigh, with a razor blade.",
                      "I've been cutting three times this week."]
    # the therapist's question that framed the short reply is quoted as context
    assert "Where did you cut?" in [q.quote for q in flag.evidence_quotes if q.role == "THERAPIST"]
    assert flag.episode_start == flag.evidence_quotes[0].start < flag.evidence_quotes[-1].start
    assert flag.episode_end == flag.evidence_quotes[-1].end
    assert flag.evidence == quotes[0] and flag.start == flag.evidence_quotes[0].start


def test_mentions_far_apart_are_separate_episodes():
    segs = [
        MergedSegment(start=0, end=3, speaker="S1", role="CLIENT", text="I cut myself again last night."),
        MergedSegment(start=600, end=603, speaker="S1", role="CLIENT", text="I cut myself again this morning."),
    ]
    assert len(LEXICON.detect(segs)) == 2
    assert len(RiskDetector(semantic=None, config=type(LEXICON.config)(episode_gap_s=1000)).detect(segs)) == 1


def test_past_history_and_current_disclosure_stay_separate():
    flags = _flags(
        ("C", "I tried to kill myself when I was nineteen."),
        ("C", "And this week I've been thinking about killing myself again."),
    )
    by_temporal = {f.temporal: f for f in flags if f.category is SI}
    assert set(by_temporal) == {Temporal.past, Temporal.current}
    # A resolved past attempt is low and marked past (clinical calibration of the blind
    # sets: "an attempt years ago" is low); the current disclosure is its own episode.
    assert by_temporal[Temporal.past].severity is Severity.low
    assert by_temporal[Temporal.current].severity is Severity.high


# --- severity -------------------------------------------------------------------------------


def test_current_self_harm_is_high_priority():
    [flag] = _flags(("C", "I cut myself on my arm last night."))
    assert flag.severity is Severity.high and flag.high_priority


def test_self_harm_urges_are_moderate():
    [flag] = _flags(("C", "I've had really strong urges to cut this week."))
    assert flag.category is SH and flag.severity is Severity.moderate and not flag.high_priority


def test_passive_ideation_is_moderate():
    [flag] = _flags(("C", "Some nights I think everyone would be better off without me."))
    assert flag.category is SI and flag.severity is Severity.moderate and not flag.high_priority


def test_wish_to_die_without_plan_is_moderate_and_with_means_is_high():
    [passive] = _flags(("C", "Sometimes I just want to die."))
    assert passive.severity is Severity.moderate
    [with_means] = _flags(
        ("C", "Sometimes I just want to die."),
        ("T", "Is there anything at home you could use?"),
        ("C", "There's a shotgun in my dad's shed."),
    )
    assert with_means.severity is Severity.high and with_means.high_priority
    assert len(with_means.evidence_quotes) == 2 and "means access" in with_means.rationale


def test_means_access_alone_is_not_a_flag():
    assert _flags(("C", "My dad keeps a rifle in the shed for the rabbits.")) == []


def test_ideation_with_intent_disavowed_is_moderate_plan_is_high():
    [disavowed] = _flags(("C", "I think about killing myself but I'd never act on it."))
    assert disavowed.category is SI and disavowed.severity is Severity.moderate
    [plan] = _flags(("C", "I've been saving up my sleeping tablets, I know where I'd do it."))
    assert plan.severity is Severity.high and plan.high_priority


def test_harm_to_others_needs_a_named_target_and_intent_for_high():
    [vague] = _flags(("C", "Sometimes I get so angry I want to hurt someone."))
    assert vague.category is HO and vague.severity is Severity.moderate
    [named] = _flags(("C", "I swear I'm going to stab my ex if he comes near my kids."))
    assert named.category is HO and named.severity is Severity.high and named.high_priority


def test_past_resolved_risk_is_low_and_marked_past():
    [flag] = _flags(("C", "Years ago I was cutting myself most weeks, but I haven't for a long time."))
    assert flag.category is SH and flag.severity is Severity.low and flag.temporal is Temporal.past
    assert not flag.high_priority


def test_past_substance_use_without_relapse_or_harm_is_history_not_a_flag():
    """"Sober for eight years" is recorded history (a past_resolved distractor in the blind
    sets), not a risk episode; a past relapse that ended in an injury is one (low, past)."""
    assert _flags(("C", "I used to drink a lot in my twenties but I've been sober for eight years.")) == []
    [relapse] = _flags(("C", "Years ago I relapsed and woke up on the kitchen floor with a cut head."))
    assert relapse.category is SU and relapse.severity is Severity.low and relapse.temporal is Temporal.past


# --- context rules ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "I'm not going to hurt myself this weekend, I promise.",
    "I would never kill myself, because of my kids.",
    "No, I don't have a plan or anything.",
])
def test_negation(text):
    assert _flags(("C", text)) == []


def test_negation_after_a_clause_break_does_not_cancel_the_disclosure():
    [flag] = _flags(("C", "I keep thinking about killing myself, but I'm not sure I'd do it."))
    assert flag.category is SI


@pytest.mark.parametrize("text", [
    "Work has been killing me and my feet are killing me.",
    "I could murder a pizza after this.",
    "I'm dead tired, to be honest.",
    "I absolutely killed it at the 10k, I nearly died at the last hill.",
    "My mum is going to kill me when she sees the bill.",
    "I'll kill him if he eats my leftovers again.",
    "I thought I was going to die of embarrassment.",
])
def test_idiom(text):
    assert _flags(("C", text)) == []


def test_idiom_is_blanked_but_the_rest_of_the_sentence_counts():
    [flag] = _flags(("C", "My back is killing me and I cut myself again last night."))
    assert flag.category is SH


@pytest.mark.parametrize("text", [
    "If I ever felt like hurting myself I'd ring the crisis line.",
    "What should someone do if they feel suicidal?",
    "What if I relapse at the wedding?",
])
def test_hypothetical(text):
    assert _flags(("C", text)) == []


@pytest.mark.parametrize("text", [
    "My friend said she wanted to die.",
    "Sam texted me last month and said she wanted to die.",
    "My sister has been cutting again, she told me on the phone.",
    "Her cousin tried to kill himself last year.",
    "My neighbour said her husband drank himself to death.",
])
def test_third_party_and_reported_speech(text):
    assert _flags(("C", text)) == []


def test_reported_by_a_family_member_in_the_room_counts():
    flags = _flags(
        ("T", "Thanks for coming in together."),
        ("C", "Our daughter has been cutting herself on her arms."),
        ("C2", "It's not a big deal, I only did it a couple of times last week."),
    )
    assert [f.category for f in flags] == [SH]
    # the same sentence from a lone client about someone else is third-party talk
    assert _flags(("C", "My daughter has been cutting again.")) == []


@pytest.mark.parametrize("text", [
    "There's this song where the singer goes I want to die, and it's weirdly comforting.",
    "In the film the main character says he wants to kill himself.",
    "I watched a documentary about suicide prevention at the weekend.",
])
def test_quoted_media(text):
    assert _flags(("C", text)) == []


def test_screening_question_is_never_a_flag_even_with_unknown_roles():
    segs = [MergedSegment(start=0, end=3, speaker="S0", role=None, text="Have you had any thoughts of wanting to die?"),
            MergedSegment(start=3, end=5, speaker="S1", role=None, text="No, never.")]
    assert LEXICON.detect(segs) == []
    therapist = _session(("T", "Do you ever think about killing yourself?"), ("C", "Not really, no."))
    assert LEXICON.detect(therapist) == []


def test_affirmative_answer_to_a_screening_question_is_a_disclosure():
    [flag] = _flags(("T", "Have you had any thoughts of suicide?"),
                    ("C", "Sometimes, yeah. But I'd never do anything, because of the kids."))
    assert flag.category is SI and flag.severity is Severity.moderate  # intent disavowed in the answer
    assert flag.evidence == "Sometimes, yeah." and flag.role == "CLIENT"
    assert [q.role for q in flag.evidence_quotes] == ["THERAPIST", "CLIENT"]  # the question is quoted too
    [past] = _flags(("T", "Have you ever tried to end your life?"), ("C", "Yes, years ago, when I was at uni."))
    assert past.temporal is Temporal.past


# --- semantic layer: corroborates, never raises a flag alone below the solo threshold --------


class _StubModel:
    """A semantic model that scores every sentence with fixed similarities."""

    def __init__(self, sims: dict[str, float]):
        self.config = SemanticConfig()
        self.sims = sims

    def score(self, sentences):
        return [None] * len(sentences)

    def decide(self, _score, _guard=""):
        return sorted(self.sims.items(), key=lambda kv: -kv[1])


def test_semantic_hit_below_solo_threshold_never_raises_a_flag_alone():
    below = SemanticConfig().solo_threshold - 0.05
    det = RiskDetector(semantic=_StubModel({"self_harm": below}))
    assert det.detect(_session(("C", "I've been so tired lately, I walk the dog at six."))) == []


def test_semantic_hit_below_threshold_corroborates_a_lexicon_episode():
    below = SemanticConfig().solo_threshold - 0.05
    det = RiskDetector(semantic=_StubModel({"self_harm": below}))
    [flag] = det.detect(_session(("C", "I cut myself again last night."), ("C", "It's the only thing that helps.")))
    assert flag.category is SH and len(flag.evidence_quotes) == 2 and "corroborat" in flag.rationale


def test_semantic_hit_above_solo_threshold_may_flag_alone_but_not_high():
    above = SemanticConfig().solo_threshold + 0.05
    det = RiskDetector(semantic=_StubModel({"suicidal_ideation": above}))
    [flag] = det.detect(_session(("C", "i keep picturing everyone carrying on fine after my funeral")))
    assert flag.category is SI and flag.severity is Severity.moderate and "semantic match" in flag.rationale


def test_guarded_sentence_needs_the_higher_solo_threshold():
    cfg = SemanticConfig()
    between = (cfg.solo_threshold + cfg.guarded_solo_threshold) / 2
    text = "honestly everyone would do fine without me around"  # "without": a negation cue
    assert RiskDetector(semantic=_StubModel({"suicidal_ideation": between})).detect(_session(("C", text))) == []
    above = cfg.guarded_solo_threshold + 0.02
    assert len(RiskDetector(semantic=_StubModel({"suicidal_ideation": above})).detect(_session(("C", text)))) == 1


# --- merge with LLM flags ---------------------------------------------------------------------


def _llm(cat, sev, start, text):
    return RiskFlag(category=cat, severity=sev, evidence=text, start=start, end=start + 2, source=FlagSource.llm)


def test_llm_can_add_flags_and_evidence_but_never_remove_or_soften():
    net = _flags(("C", "On Tuesday night I cut myself again."), ("T", "Okay."), ("C", "I've been cutting a lot."))
    [episode] = net
    llm = [
        _llm(SH, Severity.low, episode.start + 0.5, "cut myself again"),  # softer: must not lower the net's
        _llm(RiskCategory.hopelessness, Severity.moderate, 500.0, "nothing will ever change"),
    ]
    merged = merge_flags(net, llm)
    assert len(merged) == 2
    sh = next(f for f in merged if f.category is SH)
    assert sh.source is FlagSource.both and sh.severity is Severity.high and sh.high_priority
    assert len(sh.evidence_quotes) >= 2 and sh.evidence == episode.evidence
    added = next(f for f in merged if f.category is RiskCategory.hopelessness)
    assert added.source is FlagSource.llm and added.evidence_quotes[0].quote == "nothing will ever change"
    assert merge_flags(net, []) == net  # the LLM returning nothing removes nothing


def test_llm_can_raise_severity():
    net = _flags(("C", "Sometimes I just want to die."))
    merged = merge_flags(net, [_llm(SI, Severity.high, net[0].start, "Sometimes I just want to die.")])
    assert len(merged) == 1 and merged[0].severity is Severity.high and merged[0].high_priority


def test_old_entry_points_still_work_and_evidence_is_verbatim():
    segs = _session(("C", "Work was fine. I keep thinking about ending it all. Anyway."))
    flags = detect_risk(segs)
    assert flags == LEXICON.detect(segs)
    assert flags[0].evidence == "I keep thinking about ending it all." and flags[0].evidence in segs[0].text
    assert all(isinstance(q, RiskEvidence) and q.quote in segs[0].text for q in flags[0].evidence_quotes)


def test_dev_sessions_transcript_level_lexicon():
    """Regression on the author's own DEV sessions (tuning data, so optimistic): every
    episode found, no flag off a labelled episode, every high episode high."""
    from bench.risk_blind import load_dev, run

    # The dev labels predate issue 14's calibration: they count hopelessness alone and past
    # substance use without a relapse as episodes; now the first only corroborates suicidal
    # ideation and the second is recorded history (the blind sets' convention). Those labels
    # are dropped here; every other episode must be found.
    sessions = [{**s, "episodes": [e for e in s["episodes"] if e["category"] != "hopelessness"
                                   and not (e["category"] == "substance_use" and e["severity"] == "low")]}
                for s in load_dev()]
    summary = run(sessions, LEXICON)["summary"]
    assert summary["sessions"] >= 12
    assert summary["episode_recall"] == 1.0
    assert summary["false_flags"] == 0
    assert summary["high_marked_high"] == summary["high_episodes"]


# --- topic carry-over: short replies inside the therapist's risk topic ------------------------


def test_short_reply_within_the_therapists_topic_is_a_disclosure():
    [flag] = _flags(("T", "How have the urges to cut been?"), ("C", "Bad."),
                    ("T", "And have you acted on them?"), ("C", "I did it again. Twice."))
    assert flag.category is SH and flag.severity is Severity.high and flag.evidence == "I did it again."
    assert flag.evidence_quotes[0].role == "THERAPIST"  # the question that framed it is quoted


def test_topic_carry_over_needs_disclosure_content_and_stops_at_a_denial_or_new_topic():
    assert _flags(("T", "Any thoughts of suicide this week?"), ("C", "Honestly, I've just been exhausted.")) == []
    assert _flags(("T", "Have you had any urges to cut since the party?"), ("C", "Not since the party, no."),
                  ("T", "Where do you keep the ice?"), ("C", "In the freezer, with my mum's stuff.")) == []
    assert _flags(("T", "Last time we talked about the cutting. How has work been?"),
                  ("C", "Busy. I worked late on Tuesday.")) == []
