"""Explicit episode-level rules of the risk safety net (issue 14), each unit-tested in
tests/unit/test_risk_rules.py.

Why a separate layer: a clinician grades a DISCLOSURE, not a sentence. The detail that
makes an episode high priority ("I counted them on Sunday", "it bled for a while", "with the
boys in the car") or past ("I haven't had a thought like that since the summer") is often in
a different sentence from the risk words. These rules read an episode's client quotes
together, after the sentence-level mentions were merged into episodes.

Rules (names appear in the flag's rationale):
- ``suicide_preparation``: suicidal ideation with a plan, means being kept or counted,
  letters or a will, a chosen time, a visit to a bridge or an edge (or going there and
  standing), looking up the method ("checked the tide times") -> high.
- ``self_harm_stopped``: self-harm whose last act was weeks ago, with no act this week ->
  moderate (urges may remain); an act this week stays high.
- ``self_harm_recent_act``: self-harm found without a pattern's grade (a screening answer,
  a semantic or classifier hit) whose account describes an act (a blade, bleeding, a
  dressing) within weeks (a named day, "the week before") -> high, unless it has stopped.
- ``acute_eating_danger``: fainting or collapsing, purging every day (the frequency may be
  the answer to the next question), a slow pulse or a racing heart, periods stopped -> high.
- ``harm_to_others_means_intent``: harm to others where a weapon is named and an intent to
  use it on someone ("I was gonna cut him", "thinking about walking up to his door" with the
  rifle behind the seat) -> high.
- ``child_endangerment``: substance use with driving and children -> high.
- ``acute_substance_danger``: an overdose, naloxone, withdrawal fits -> high (a blackout
  alone is not).
- ``strangulation``: violence to the neck or throat -> high.
- ``child_abuse``: abuse with an implement or injuries and a child in the account -> high.
- ``recent_injury``: current abuse that left an injury (bruises, welts, marks on the body,
  bleeding, A&E) -> high.
- ``convergent_plan`` (``promote_convergent_plan``): two different harm-to-others plan cues
  (whereabouts, weapon at hand, watching the target) open a high episode.
- ``resolved``: an episode whose client quotes say it is over ("haven't had a thought like
  that since", "fine since then", "he died") and that has no current cue -> low, past.

Mention routing (before episodes are formed):
- hopelessness never opens an episode: it corroborates a suicidal-ideation episode nearby;
- past substance use without a relapse or harm ("sober three years", "used to drink a
  lot") is recorded history, not a risk episode;
- ``weak`` cues (less need for sleep, overspending, grandiosity) open a mania episode only
  when two different kinds occur within the episode gap.
"""

from __future__ import annotations

import re

from shared.contracts.notes import RiskCategory, RiskFlag, Severity, Temporal
from services.notes.risk_episodes import Mention

SI, SH, SU, HP, OT, AV = (RiskCategory.suicidal_ideation, RiskCategory.self_harm, RiskCategory.substance_use,
                          RiskCategory.hopelessness, RiskCategory.other, RiskCategory.abuse_or_violence)
HO = RiskCategory.harm_to_others
_RX = re.IGNORECASE

_PREPARATION = re.compile(
    r"\b(?:saving|saved|stockpil\w*|hoard\w*|collecting|counted|counting) (?:them|up|the (?:tablets|pills))\b|"
    r"\b(?:papers|affairs|things) in order\b|\bwill(?:'s| is)? (?:sorted|done|written|made)\b|\b(?:sorted|made|wrote|updated) (?:my|the) will\b|"
    r"\b(?:letters?|notes?) (?:for|to) (?:each|every|my|the kids|them)\b|\bone for each of them\b|\bso nobody has to\b|"
    r"\b(?:stood|standing|sat|went|go) (?:at|on|by|to) the (?:railing|edge|ledge|bridge|tracks|roof|pier|cliffs?|quarry|viaduct|"
    r"overpass|railway|train line|level crossing)\b|"
    # Rehearsal, research and a chosen time (issue 14, round 11: set 14): "I went down and
    # stood there", "I've checked the tide times", "that'd be the time".
    r"\b(?:went|walked|drove|got) (?:down|up|out)(?: there| to the \w+)? and (?:stood|sat|waited|looked)\b|"
    r"\b(?:checked|looked up|googled|researched|read up on) (?:the )?(?:tide times|train times|how (?:deep|high|far|many|much|long))\b|"
    r"\b(?:look|looked|looking|stare|stared|staring) (?:at|down at|over) the (?:water|drop|edge|tracks|river) (?:off|from|below|under)\b|"
    r"\b(?:that'd|that would|that'll|that will) be (?:the|my) (?:time|day|chance)\b|\bwhen i(?:'d| would) do it\b|"
    r"\b(?:picked|chosen|decided on) (?:a|the) (?:day|date|time|place)\b|\bthe (?:monday|tuesday|wednesday|thursday|friday|"
    r"saturday|sunday|day|week) after\b|\b(?:tramadol|amitriptyline|paracetamol|co-codamol)\b", _RX)
_SH_STOPPED = re.compile(r"\b\w+ weeks? (?:on \w+ )?(?:since|ago)\b|\bsince the last time\b|\bhaven't (?:done it|cut|burned|hurt myself)\b", _RX)
_SH_RECENT = re.compile(r"\b(?:again|this week|yesterday|last night|today|this morning)\b", _RX)
#: An act of self-harm described (not an urge): the instrument, the wound, its dressing.
_SH_ACT = re.compile(
    r"\b(?:blade|razor|sharpener|bled|bleeding|blood|deeper|stitches|plasters?|band-?aids?|bandaged?|steri-?strips?|"
    r"burn(?:ed|t) (?:myself|my|it)|cut (?:myself|my|it|again)|scratch(?:ed|es|ing)? (?:myself|my|it|till|until)|"
    r"(?:carved|scratched|cut|burned|burnt)\b)", _RX)
#: Within weeks: a named day, "last week", "the week before", "a few days ago".
_SH_WITHIN_WEEKS = re.compile(
    r"\b(?:again|this week|last week|the week before|yesterday|last night|today|this morning|tonight|the other (?:day|night)|"
    r"(?:a|two|three|four|five|few|couple of) days ago|(?:on )?(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)s?|"
    r"(?:this|last) weekend)\b", _RX)
#: Purging (a verb in one line) and how often (a number in the answer to the next question).
_PURGE = re.compile(r"\b(?:purg\w*|vomit\w*|make (?:myself|yourself|herself|himself) sick|made (?:myself|herself|himself) sick|throw(?:ing)? up)\b", _RX)
_DAILY = re.compile(r"\b(?:every day|daily|most days|twice a day|after every meal)\b", _RX)
#: Harm to others with the means named and an intent to use them (round 11: sets 10-11).
_HO_MEANS = re.compile(r"\b(?:knife|knives|gun|rifle|shotgun|pistol|firearm|machete|hammer|baseball bat|crowbar|axe)\b", _RX)
_HO_DISAVOWED = re.compile(r"\b(?:never would|would never|i'd never|wouldn't (?:actually |really |ever )?do|won't (?:actually |really )?do|"
                           r"not going to do)\b", _RX)
_HO_INTENT = re.compile(
    r"\b(?:going to|gonna|was going to|i'll|i will|want(?:ed)? to|plan(?:ned|ning)? to|thinking about|thought about)\b[^.?!]{0,40}?"
    r"\b(?:hurt|kill|shoot|stab|cut|hit|beat|bleed|smash|walk(?:ing)? up to (?:his|her|their) door|go after)\b", _RX)
_EATING_ACUTE = re.compile(
    r"\b(?:fainted|passed out|collapsed)\b|\b(?:purg\w*|sick|vomit\w*)\b[^.]*\b(?:every day|daily|most days|twice a day)\b|"
    r"\b(?:yeah|yes)\W+(?:most days|every day|daily)\b|\bheart rate\b|\b(?:admission|admitted|hospital)\b[^.]*\b(?:weight|heart|eating|bloods?|blood work)\b|"
    r"\bdangerously (?:low|thin|underweight)\b|\bpulse\b[^.]{0,30}\b(?:forties|thirties|low|slow)\b|"
    r"\bperiods? (?:have |has |had )?(?:stopped|gone)\b|\bstopped (?:having )?(?:my |her )?periods?\b", _RX)
#: A collapse or a racing heart told plainly (round 11: set 13); acute only in an account of
#: eating ("Imran nearly fell over" in a manic episode is surprise, not a faint).
_COLLAPSE = re.compile(
    r"(?<!nearly )(?<!almost )\b(?:fell|passed) (?:down|over)\b|\bwent (?:grey|gray|black|dark)\b|\bblacked out\b|"
    r"\bheart (?:races|racing|pounds|pounding|goes (?:very |really |so )?fast|(?:is|was) (?:racing|pounding|jumping))\b", _RX)
_EATING = re.compile(r"\b(?:eat\w*|ate|food|meals?|weight|lunch|dinner|breakfast|calories|vomit\w*|purg\w*|starv\w*|skip\w*|"
                     r"make (?:myself|herself|himself) sick)\b", _RX)
#: An overdose (reversed or not) or withdrawal fits: acute medical danger whatever the amount.
#: Passing out or "couldn't wake him" alone is not: the blind sets' writers grade a blackout
#: at a party "dangerous use without acute emergency" (moderate).
_SUBSTANCE_ACUTE = re.compile(
    r"\b(?:overdos\w*|od'd|narcan|naloxone|stopped breathing|turned blue|withdrawal (?:fits?|seizures?)|the dts|"
    r"delirium tremens)\b", _RX)
#: A child's age said as such ("He's six."): the child in a drink-driving account.
_CHILD_AGE = re.compile(r"\b(?:he's|she's|he is|she is) (?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)\b", _RX)
_DRIVING = re.compile(r"\b(?:drove|driving|drive|drives|crash\w*|roundabout|in the car|behind the wheel)\b", _RX)
_CHILDREN = re.compile(r"\b(?:kids|children|boys|girls|the baby|my son|my daughter|our son|our daughter|toddler|to school|school run|"
                       r"nursery|daycare|car seats?|in the back)\b", _RX)
#: Current abuse of a child: an implement or injuries, and a child in the account.
_CHILD_CUE = re.compile(r"\b(?:son|daughter|kids?|child|children|boy|girl|toddler|baby|bath|school|nursery|years? old|"
                        r"teachers?|pe|playground|homework|wets? the bed|wetting the bed|bed-?wetting|stepson|stepdaughter|"
                        r"grandson|granddaughter|little one|"
                        r"(?:he's|she's) (?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|\d+)\b)", _RX)
_CHILD_HARM = re.compile(r"\b(?:belt|strap|cane|wooden spoon|cord|welts?|bruises|bruising|marks|screaming|locked (?:him|her|them|us) in)\b", _RX)
#: Current abuse that left an injury (the labels' moderate is abuse "with no recent injury").
_INJURY = re.compile(r"\b(?:welts?|(?:red|purple|blue|long) (?:marks|lines)|marks on (?:his|her|my|their|the back of) (?:back|legs?|arms?|bottom|"
                     r"backside)|bruis\w*|black eye|bled|bleeding|broken (?:nose|ribs?|arm|wrist|tooth|teeth|finger)|stitches|concussion|"
                     r"split (?:lip|my)|fractur\w*|a ?& ?e|emergency room)\b", _RX)
def _undenied(rx: re.Pattern[str], text: str, window: int = 25) -> bool:
    """A cue not denied just before it ("No marks, nothing", "never overdosed", "not injured")."""
    return any(not re.search(r"\b(?:no|not|never|without|any)\b|n't\b", text[max(0, m.start() - window):m.start()], _RX)
               for m in rx.finditer(text))


_SH_NOT_ACT = re.compile(r"\b(?:no|not|never|without|any|urges?|want(?:ed|ing)? to|tempted|thought about|thinking about|think about|"
                         r"scared|afraid|worried|might|could)\b|n't\b", _RX)


def _self_harm_act(text: str) -> bool:
    """An act described, not an urge or a denial ("strong urges to cut this week", "no blade")."""
    return any(not _SH_NOT_ACT.search(text[max(0, m.start() - 30):m.start()]) for m in _SH_ACT.finditer(text))


def _acute_substance(text: str) -> bool:
    return _undenied(_SUBSTANCE_ACUTE, text, 20)


def _injured(text: str) -> bool:
    return _undenied(_INJURY, text)


_NECK = re.compile(r"\b(?:neck|throat|strangl\w*|chok\w*)\b", _RX)
_RESOLVED = re.compile(
    r"\bhaven't (?:had|felt|done|thought)\b[^.]{0,40}\bsince\b|\b(?:fine|well|okay) (?:ever )?since\b|"
    r"\bnot in that place (?:now|any ?more)\b|\b(?:he|she) died\b|\bthey faded\b|\b(?:it|they|that) (?:faded|passed|stopped) "
    r"(?:after|when|once)\b|\bnot a drop\b|\bsober (?:for|since)\b|\bclean (?:for|since)\b", _RX)
_CURRENT = re.compile(r"\b(?:this week|last night|yesterday|at the moment|these days|lately|right now|today|still (?:do|have|get|want|think))\b", _RX)


def _client_text(flag: RiskFlag) -> str:
    quotes = flag.evidence_quotes or []
    return " ".join(q.quote for q in quotes if (q.role or "").upper() != "THERAPIST") or flag.evidence


def _all_text(flag: RiskFlag) -> str:
    """Client quotes plus the therapist questions they answered ("Have you fainted?" / "Twice this week.")."""
    return " ".join(q.quote for q in flag.evidence_quotes or []) or flag.evidence


def _with(flag: RiskFlag, severity: Severity, rule: str, past: bool | None = None) -> RiskFlag:
    update = {"severity": severity, "high_priority": severity is Severity.high,
              "rationale": "; ".join(x for x in (flag.rationale, f"episode rule: {rule}") if x)}
    if past is not None:
        update["temporal"] = Temporal.past if past else Temporal.current
    return flag.model_copy(update=update)


def calibrate_episode(flag: RiskFlag, span_text: str = "") -> RiskFlag:
    """Apply the episode rules above to one safety-net flag (see the module doc).

    ``span_text``: what the clients said inside the episode's span, quoted or not. The
    grading detail is often in a line no pattern fired on ("the doctor said her pulse was in
    the forties"), so the rules that RAISE severity read it too; the ``resolved`` rule, which
    lowers it, reads the episode's own quotes only."""
    text = _client_text(flag)
    cat, current = flag.category, flag.temporal is Temporal.current
    if current and _RESOLVED.search(text) and not _CURRENT.search(text) and cat is not SH:
        return _with(flag, Severity.low, "resolved", past=True)
    if not current or flag.severity is Severity.high and cat is not SH:
        return flag
    if cat is SH and flag.severity is Severity.high:
        stopped = _SH_STOPPED.search(text) and not _SH_RECENT.search(text)
        return _with(flag, Severity.moderate, "self_harm_stopped") if stopped else flag
    rule = _raising_rule(cat, " ".join(x for x in (text, span_text) if x), " ".join(x for x in (_all_text(flag), span_text) if x))
    return _with(flag, Severity.high, rule) if rule else flag


def _raising_rule(cat: RiskCategory, text: str, with_questions: str) -> str | None:
    """The name of the first rule that makes a current episode high priority, if any."""
    checks = (
        (cat is SI and bool(_PREPARATION.search(text)), "suicide_preparation"),
        (cat is SH and _self_harm_act(text) and _undenied(_SH_WITHIN_WEEKS, text)
         and not (_SH_STOPPED.search(text) and not _SH_RECENT.search(text)), "self_harm_recent_act"),
        (cat is OT and (bool(_EATING_ACUTE.search(with_questions))
                        or _undenied(_PURGE, text) and bool(_DAILY.search(with_questions))
                        or bool(_COLLAPSE.search(text)) and bool(_EATING.search(with_questions))), "acute_eating_danger"),
        (cat is HO and _undenied(_HO_MEANS, text) and bool(_HO_INTENT.search(text)) and not _HO_DISAVOWED.search(text),
         "harm_to_others_means_intent"),
        (cat is SU and bool(_DRIVING.search(with_questions)) and bool(_CHILDREN.search(text) or _CHILD_AGE.search(text)),
         "child_endangerment"),
        (cat is SU and _acute_substance(text), "acute_substance_danger"),
        (cat is AV and bool(_NECK.search(text)), "strangulation"),
        (cat is AV and _undenied(_CHILD_HARM, text) and bool(_CHILD_CUE.search(text)), "child_abuse"),
        (cat is AV and _injured(text), "recent_injury"),
    )
    return next((name for hit, name in checks if hit), None)


def promote_convergent_plan(mentions: list[Mention], gap_s: float) -> list[Mention]:
    """``convergent_plan``: harm-to-others context cues of two different kinds (a target's
    whereabouts, a weapon kept at hand, watching the target) within ``gap_s`` describe a plan
    even when no sentence states the intent: the earliest opens a (high) episode. One cue
    alone ("my dad keeps a bat in the truck") stays a joining detail."""
    ho = [m for m in mentions if m.kind == "context" and m.category is RiskCategory.harm_to_others and not m.past]
    out = list(mentions)
    for m in ho:
        partners = [o for o in ho if o.why != m.why and abs(o.start - m.start) <= gap_s]
        if partners and m.start <= min(o.start for o in partners):
            out.append(Mention(m.category, Severity.high, False, f"episode rule: convergent_plan ({m.why})", "lexicon", m.quotes))
    return out


def route_mention(m: Mention) -> Mention | None:
    """Hopelessness corroborates suicidal ideation; past substance use without a relapse or
    harm is history, not an episode. Everything else unchanged."""
    if m.category is HP:
        return Mention(SI, None, m.past, f"hopelessness ({m.why})", "corroborating", m.quotes)
    if m.category is SU and m.past and m.kind in ("lexicon", "semantic") and not re.search(r"relapse|harm|injur", m.why):
        return None
    return m


#: Cues that alone are ordinary ("I only slept two hours", "I bought a laptop") but together
#: describe a manic relapse. Kind ``weak``: two different labels within the gap open an episode.
WEAK_PATTERNS: tuple[tuple[RiskCategory, str, re.Pattern[str]], ...] = (
    (OT, "less need for sleep", re.compile(
        r"\b(?:don't|do not) need (?:much |any )?sleep\b|\bsleep'?s overrated\b|\bnot (?:even )?tired\b|"
        r"\b(?:an hour|two hours|a couple of hours) (?:here and there|a night)\b|\ball one long day\b|"
        r"\bhaven't (?:slept|been sleeping) (?:in|for) (?:\w+ )?(?:days|nights)\b|\bnot really sleeping\b|\bdon't let me sleep\b", _RX)),
    (OT, "overspending", re.compile(r"\b(?:spent|spending|bought|blew)\b[^.]*\b(?:grand|thousand|\d+k)\b|\b(?:four|five|ten|\d+) grand\b", _RX)),
    (OT, "grandiosity / pressured energy", re.compile(
        r"\bi'?ve (?:basically )?cracked it\b|\bi'?m on fire\b|\bchange (?:the world|how \w+)\b|\bso much energy\b|"
        r"\b(?:a|going a) mile a minute\b|\bfeel (?:incredible|invincible|unstoppable)\b", _RX)),
)
_WEAK_BENIGN = re.compile(r"\b(?:baby|newborn|feeds?|feeding|teething|jet ?lag|night shifts?|exams?|deadline)\b", _RX)


def weak_labels(norm: str) -> list[tuple[RiskCategory, str]]:
    if _WEAK_BENIGN.search(norm):
        return []
    return [(cat, label) for cat, label, rx in WEAK_PATTERNS if rx.search(norm)]


def promote_weak(mentions: list[Mention], gap_s: float) -> list[Mention]:
    """``weak`` mentions become opening (moderate) when another weak mention of the same
    category with a different label lies within ``gap_s``; otherwise they only join."""
    weak = [m for m in mentions if m.kind == "weak"]
    out = [m for m in mentions if m.kind != "weak"]
    for m in weak:
        partner = any(o is not m and o.category is m.category and o.why != m.why and abs(o.start - m.start) <= gap_s
                      for o in weak)
        sev = (Severity.low if m.past else Severity.moderate) if partner else None
        out.append(Mention(m.category, sev, m.past, f"combined cues: {m.why}", "lexicon" if partner else "corroborating", m.quotes))
    return out
