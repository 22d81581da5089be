"""Offline extractive notes, grounding and rendering on a realistic generated session."""

from __future__ import annotations

import json

from services.notes.grounding import validate_notes_against_transcript
from services.notes.offline import OFFLINE_LABEL, build_offline_notes
from services.gateway.notes_render import SessionMeta, render_dap, render_json, render_soap
from shared.contracts.events import MergedSegment, MergedWord, SpeakerInfo
from shared.contracts.notes import RiskCategory, SignificantQuote, RiskFlag, FlagSource, Severity

TURNS = [
    ("THERAPIST", "Welcome back. How have things been since our last session?"),
    ("CLIENT", "Honestly it's been a rough couple of weeks. Work has been brutal and my manager keeps piling on deadlines."),
    ("THERAPIST", "That sounds like a lot. What happens when the deadlines pile up?"),
    ("CLIENT", "I stay at the office until nine most nights. Whenever I get an email from my boss I feel this knot in my stomach."),
    ("THERAPIST", "And how has your sleep been with all of that?"),
    ("CLIENT", "Terrible. I lie awake until two and then I wake up at five worrying about work. I feel exhausted and anxious all the time."),
    ("THERAPIST", "Last time we practised the box breathing. Did you get a chance to try it?"),
    ("CLIENT", "I tried the breathing a couple of times on the train and it helped a bit. I just forget when I'm stressed."),
    ("THERAPIST", "That's a good start. Let's look at the thoughts that come up at night."),
    ("CLIENT", "I keep thinking I'm going to get fired and that I'm a failure. Some nights I feel completely hopeless about it."),
    ("THERAPIST", "Those are heavy thoughts. Have you had any thoughts of hurting yourself?"),
    ("CLIENT", "No, I would never hurt myself. I just want to feel rested again."),
    ("THERAPIST", "Thank you for telling me. This week I'd like you to keep a sleep diary, writing down when you go to bed and when you wake."),
    ("THERAPIST", "I'd also like you to try to do the breathing exercise every day before bed."),
    ("CLIENT", "Okay, I can do that. I'm still worried about the review meeting on Friday though."),
    ("THERAPIST", "Let's come back to the review meeting next session and plan for it together."),
    ("CLIENT", "That would help. I feel a bit calmer now, talking it through."),
]


def _session() -> list[MergedSegment]:
    segs, t = [], 0.0
    for role, text in TURNS:
        spk = "SPEAKER_00" if role == "THERAPIST" else "SPEAKER_01"
        words = []
        for w in text.split():
            words.append(MergedWord(start=round(t, 2), end=round(t + 0.28, 2), word=" " + w, speaker=spk, p=0.9))
            t += 0.35
        segs.append(MergedSegment(start=words[0].start, end=words[-1].end, speaker=spk, role=role, text=text, words=words))
        t += 1.0
    return segs


def _client_segment(spk: str, role: str | None, text: str, t: float) -> MergedSegment:
    words = []
    for w in text.split():
        words.append(MergedWord(start=round(t, 2), end=round(t + 0.28, 2), word=" " + w, speaker=spk, p=0.9))
        t += 0.35
    return MergedSegment(start=words[0].start, end=words[-1].end, speaker=spk, role=role, text=text, words=words)


SPEAKERS = [SpeakerInfo(label="SPEAKER_00", role="THERAPIST", talk_time_s=60),
            SpeakerInfo(label="SPEAKER_01", role="CLIENT", talk_time_s=70)]


def _word_bounds(seg: MergedSegment, text: str) -> tuple[float, float]:
    """Expected times: first and last word of ``text`` inside the segment."""
    idx = seg.text.index(text)
    n_before = len(seg.text[:idx].split())
    n = len(text.split())
    return seg.words[n_before].start, seg.words[n_before + n - 1].end


def _segment_with(segs, text):
    return next(s for s in segs if text in s.text)


def test_quotes_and_evidence_are_verbatim_with_matching_times():
    segs = _session()
    notes = build_offline_notes(segs, SPEAKERS)
    assert notes.significant_quotes, "expected emotion-laden client quotes"
    for q in notes.significant_quotes:
        seg = _segment_with(segs, q.quote)
        assert seg.role == "CLIENT" and q.speaker == seg.speaker
        assert (q.start, q.end) == _word_bounds(seg, q.quote)
    # Issue 14: hopelessness alone ("completely hopeless about it", about work) is no flag: it
    # only corroborates a suicidal-ideation episode (services/notes/risk_rules.py).
    cats = {f.category for f in notes.risk_flags}
    assert RiskCategory.hopelessness not in cats
    assert RiskCategory.self_harm not in cats  # "I would never hurt myself" is negated
    withdisclosure = segs + [_client_segment("SPEAKER_01", "CLIENT", "I cut myself on my arm last night.", segs[-1].end + 1)]
    flags = build_offline_notes(withdisclosure, SPEAKERS).risk_flags
    assert [f.category for f in flags] == [RiskCategory.self_harm]
    for f in flags:
        seg = _segment_with(withdisclosure, f.evidence)
        assert (f.start, f.end) == _word_bounds(seg, f.evidence)


def test_topics_actions_strategies_and_mood():
    notes = build_offline_notes(_session(), SPEAKERS)
    assert notes.key_topics[0] == "work stress" and "sleep" in notes.key_topics[:3]
    tasks = [a.task.lower() for a in notes.action_items]
    assert any("keep a sleep diary" in t for t in tasks)
    assert any("breathing exercise every day" in t for t in tasks)
    assert len(notes.action_items) == 2
    diary = next(a for a in notes.action_items if "diary" in a.task.lower())
    assert diary.category == "tracking" and diary.owner == "client"
    by_name = {s.name: s for s in notes.strategies}
    assert by_name["breathing exercises"].status == "assigned"
    assert "journaling" in by_name
    assert "anxiety and worry" in notes.emotional_themes
    assert notes.session_mood.value in {"low", "very_low", "mixed"}
    assert any("review meeting" in x for x in notes.follow_up_topics)
    assert any("review meeting" in x for x in notes.unresolved_concerns)
    assert notes.therapist_notes.startswith(OFFLINE_LABEL)
    assert notes.patient_summary.startswith(OFFLINE_LABEL)
    assert "hopeless" not in notes.patient_summary.lower()


def test_deterministic():
    a = build_offline_notes(_session(), SPEAKERS).model_dump_json()
    b = build_offline_notes(_session(), SPEAKERS).model_dump_json()
    assert a == b


def test_roles_unknown_treats_everyone_as_client():
    segs = [s.model_copy(update={"role": None}) for s in _session()]
    notes = build_offline_notes(segs, [])
    assert "not identified" in notes.therapist_notes
    assert notes.action_items == []  # no therapist identified, so no homework attribution
    segs.append(_client_segment("SPEAKER_01", None, "I cut myself on my arm last night.", segs[-1].end + 1))
    assert [f.category for f in build_offline_notes(segs, []).risk_flags] == [RiskCategory.self_harm]


def test_grounding_drops_fabricated_and_repairs_timestamps():
    segs = _session()
    notes = build_offline_notes(segs, SPEAKERS)
    real = "I feel exhausted and anxious all the time."
    seg = _segment_with(segs, real)
    bad = notes.model_copy(update={
        "significant_quotes": [
            SignificantQuote(quote="My father never believed in me and I hate him for it.", speaker="SPEAKER_01",
                             start=3.0, end=5.0),
            SignificantQuote(quote="I feel exhausted and anxious all the time", speaker="SPEAKER_00",
                             start=999.0, end=1000.0),
            SignificantQuote(quote="I feel exhausted and anxious all of the time.", speaker="SPEAKER_01",
                             start=1.0, end=2.0),  # paraphrase: fuzzy-matched to the real sentence (then deduped)
        ],
        "risk_flags": [
            RiskFlag(category=RiskCategory.hopelessness, severity=Severity.moderate, source=FlagSource.llm,
                     evidence="some nights i feel completely hopeless about it", start=0.0),
            RiskFlag(category=RiskCategory.other, severity=Severity.low, source=FlagSource.llm,
                     evidence="text that is not in the transcript at all", start=5000.0),
        ],
    })
    fixed = validate_notes_against_transcript(bad, segs)
    assert [q.quote for q in fixed.significant_quotes] == ["I feel exhausted and anxious all the time"]
    q = fixed.significant_quotes[0]
    assert (q.start, q.end) == _word_bounds(seg, "I feel exhausted and anxious all the time")
    assert q.speaker == "SPEAKER_01" and q.role == "CLIENT"
    hop, other = fixed.risk_flags
    assert hop.evidence == "Some nights I feel completely hopeless about it"
    assert hop.start == _word_bounds(_segment_with(segs, hop.evidence), hop.evidence)[0]
    # an unverifiable flag is kept (never silently dropped) but marked and clamped
    assert "verify manually" in other.rationale and other.start <= segs[-1].end


def test_soap_and_dap_put_risk_flags_first():
    segs = _session()
    notes = build_offline_notes(segs, SPEAKERS)
    high = RiskFlag(category=RiskCategory.suicidal_ideation, severity=Severity.high, source=FlagSource.llm,
                    evidence="I want to <b>die</b>", start=12.0, high_priority=True)
    notes = notes.model_copy(update={"risk_flags": notes.risk_flags + [high]})
    meta = SessionMeta(session_date="2024-05-01", duration_s=1830, speakers=SPEAKERS, engine="offline")
    for render, first_section in ((render_soap, "## S — Subjective"), (render_dap, "## D — Data")):
        md = render(notes, meta)
        risk_at = md.index("RISK FLAGS")
        assert risk_at < md.index(first_section)
        assert md.index("suicidal ideation") < md.index("hopelessness")  # high first
        assert "**HIGH PRIORITY**" in md
        assert "<b>" not in md  # model/transcript text is escaped
        assert "30:30" in md and "2024-05-01" in md
    data = json.loads(render_json(notes, meta))
    assert data["notes"]["risk_flags"][0]["severity"] == "high"
    assert data["session"]["duration_s"] == 1830
