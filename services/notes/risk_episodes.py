"""Risk episodes: sentence-level mentions merged into one flag per episode.

Why: a clinician needs one flag per disclosure ("the client described cutting last night,
then the means, then that it helped"), not one per sentence: 16 flags for one disclosure is
alarm fatigue. A mention is one finding in one sentence; mentions of one category that are
close in time form an episode, which becomes one ``RiskFlag`` carrying every quote.

Mention kinds:
- ``lexicon`` / ``screening`` / ``semantic``: can open an episode (``semantic`` only when its
  similarity passed the calibrated solo threshold);
- ``context`` (means access, a plan detail, a target's address) and ``corroborating`` (a
  semantic hit below the solo threshold) only JOIN an episode of their category that the
  other kinds opened; ``corroborating`` never sets the episode's severity.

Severity of an episode is the highest severity of its CURRENT mentions (past mentions
count only when the whole episode is past, which marks it ``temporal=past``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.contracts.notes import FlagSource, RiskCategory, RiskEvidence, RiskFlag, Severity, Temporal
from shared.contracts.notes import sort_flags

SEV_RANK = {Severity.low: 0, Severity.moderate: 1, Severity.high: 2}
OPENING_KINDS = frozenset({"lexicon", "screening", "semantic"})
#: Past mentions of one category (and victim) this close belong to one history episode.
PAST_GAP_S = 600.0


@dataclass(frozen=True)
class Mention:
    category: RiskCategory
    severity: Severity | None  # None: corroboration only, never sets the episode's severity
    past: bool
    why: str
    kind: str  # lexicon | screening | semantic | context | corroborating
    quotes: tuple[RiskEvidence, ...]  # the first is the mention's own sentence

    @property
    def start(self) -> float:
        return self.quotes[0].start

    @property
    def end(self) -> float:
        q = self.quotes[0]
        return q.end if q.end is not None else q.start


def group_episodes(mentions: list[Mention], gap_s: float) -> list[list[Mention]]:
    """Episodes: opening mentions of one category chained while the gap stays <= gap_s;
    then each joining mention is attached to the nearest episode of its category within
    gap_s (before or after it), or dropped."""
    episodes: list[list[Mention]] = []
    # Past history and a current disclosure of one category stay separate episodes: "I tried
    # at nineteen" is not part of "I've been thinking about it this week".
    # Abuse is told by its victim: two people in a family session disclosing their own abuse
    # are two episodes (two victims, two safety plans), so that category is keyed by speaker too.
    open_by_key: dict[tuple[RiskCategory, bool, str | None], list[Mention]] = {}
    for m in sorted((m for m in mentions if m.kind in OPENING_KINDS), key=lambda m: m.start):
        key = (m.category, m.past, _victim(m) if m.category is RiskCategory.abuse_or_violence else None)
        ep = open_by_key.get(key)
        # Past history told in one stretch of the session is one episode even with other talk
        # between ("he used to knock me about" ... "the one where he locked me in the shed"):
        # one history, one flag. PAST_GAP_S bounds the stretch.
        limit = max(gap_s, PAST_GAP_S) if m.past else gap_s
        if ep is not None and m.start - max(x.end for x in ep) <= limit:
            ep.append(m)
        else:
            ep = [m]
            episodes.append(ep)
            open_by_key[key] = ep
    for m in (m for m in mentions if m.kind not in OPENING_KINDS):
        near = [(ep, _distance(ep, m), ep[0].past) for ep in episodes if ep[0].category is m.category]
        near = [x for x in near if x[1] <= gap_s]
        if near:  # the nearest episode; a current one wins a tie
            min(near, key=lambda x: (x[1], x[2]))[0].append(m)
    return [sorted(ep, key=lambda m: m.start) for ep in episodes]


def _victim(m: Mention) -> str | None:
    """Abuse told by its victim ("he hits me") is keyed by the speaker; a collateral account
    of someone else's abuse ("he gets the belt", "she had welts on her legs") by several
    speakers is one episode about that person."""
    q = m.quotes[0]
    first = re.search(r"\b(?:me|us|my|i|i'm|i've|i was)\b", q.quote.lower())
    return q.speaker if first else "collateral"


def _distance(ep: list[Mention], m: Mention) -> float:
    start, end = min(x.start for x in ep), max(x.end for x in ep)
    if m.start > end:
        return m.start - end
    if m.end < start:
        return start - m.end
    return 0.0


def episode_flag(ep: list[Mention]) -> RiskFlag:
    """One RiskFlag for an episode: key quote = the first of its most severe mentions."""
    graded = [m for m in ep if m.severity is not None]
    current = [m for m in graded if not m.past]
    pool = current or graded
    severity = max((m.severity for m in pool), key=lambda s: SEV_RANK[s])  # type: ignore[arg-type, return-value]
    key = next(m for m in pool if m.severity is severity)
    quotes: list[RiskEvidence] = []
    seen: set[tuple[str, float]] = set()
    for q in sorted((q for m in ep for q in m.quotes), key=lambda q: q.start):
        if (q.quote, q.start) not in seen:
            seen.add((q.quote, q.start))
            quotes.append(q)
    whys: list[str] = []
    for m in ep:
        why = m.why if m.kind in ("lexicon", "semantic") else f"{m.kind}: {m.why}"
        if why not in whys:
            whys.append(why)
    main = key.quotes[0]
    return RiskFlag(
        category=key.category, severity=severity, evidence=main.quote, start=main.start, end=main.end,
        speaker=main.speaker, role=main.role, source=FlagSource.lexicon, high_priority=severity is Severity.high,
        rationale="; ".join(whys), temporal=Temporal.current if current else Temporal.past,
        evidence_quotes=quotes, episode_start=quotes[0].start,
        episode_end=max((q.end if q.end is not None else q.start) for q in quotes),
    )


def episodes_to_flags(mentions: list[Mention], gap_s: float) -> list[RiskFlag]:
    return sort_flags([episode_flag(ep) for ep in group_episodes(mentions, gap_s)])


# --- merging with an LLM's flags ----------------------------------------------------------


def _span(f: RiskFlag) -> tuple[float, float]:
    start = f.episode_start if f.episode_start is not None else f.start
    end = f.episode_end if f.episode_end is not None else (f.end if f.end is not None else f.start)
    return start, end


def _quotes_of(f: RiskFlag) -> list[RiskEvidence]:
    return list(f.evidence_quotes) or [RiskEvidence(quote=f.evidence, start=f.start, end=f.end,
                                                    speaker=f.speaker, role=f.role)]


def same_episode(a: RiskFlag, b: RiskFlag, slack_s: float, same_text) -> bool:
    """Same category and overlapping episode spans (with slack) or the same evidence text."""
    if a.category is not b.category:
        return False
    (a0, a1), (b0, b1) = _span(a), _span(b)
    if a0 <= b1 + slack_s and b0 <= a1 + slack_s:
        return True
    return any(same_text(qa.quote, qb.quote) for qa in _quotes_of(a) for qb in _quotes_of(b))


def absorb(net: RiskFlag, other: RiskFlag) -> RiskFlag:
    """The safety net's episode enriched by an LLM flag: never weaker, never fewer quotes."""
    sev = other.severity if SEV_RANK[other.severity] > SEV_RANK[net.severity] else net.severity
    quotes = _quotes_of(net)
    known = {(q.quote, q.start) for q in quotes}
    quotes += [q for q in _quotes_of(other) if (q.quote, q.start) not in known]
    quotes.sort(key=lambda q: q.start)
    rationale = "; ".join(x for x in (net.rationale, other.rationale and f"llm: {other.rationale}") if x)
    current = net.temporal is Temporal.current or other.temporal is Temporal.current
    return net.model_copy(update={
        "source": FlagSource.both, "severity": sev, "high_priority": sev is Severity.high or net.high_priority,
        "rationale": rationale, "evidence_quotes": quotes, "episode_start": min(_span(net)[0], _span(other)[0]),
        "episode_end": max(_span(net)[1], _span(other)[1]),
        "temporal": Temporal.current if current else Temporal.past,
    })


def as_episode(f: RiskFlag) -> RiskFlag:
    """An LLM flag with the episode fields filled in (its one quote), as it was otherwise."""
    start, end = _span(f)
    return f.model_copy(update={"evidence_quotes": _quotes_of(f), "episode_start": start, "episode_end": end,
                                "high_priority": f.high_priority or f.severity is Severity.high})
