"""Infer which diarization speaker is the THERAPIST and which the CLIENT.

Diarization gives anonymous labels (SPEAKER_00, SPEAKER_01) whose numbering says nothing
about who is who, so the role comes from *how* each speaker talks. Therapists ask more
questions, reflect ("it sounds like..."), set homework ("this week I'd like you to..."),
open ("how have you been?") and close ("see you next week") the session, and say "you"
more than "I"; clients usually talk more and say "I" more.

Scoring. For a pair of speakers (A, B) each feature is turned into a contrast in about
[-1, 1] (positive: A is more therapist-like), the contrasts are combined with fixed
weights into a score ``d``, ``d`` is shrunk towards 0 when the pair said little (few words
is weak evidence), and ``p = sigmoid(0.6 * d)`` is the probability that A rather than B is the
therapist. The reported confidence is ``max(p, 1 - p)``, in [0.5, 0.99] (capped: hand-set
cues never justify certainty). The weights are
hand-set, not fitted: they are tuned so that one weak cue alone stays under the 0.6
threshold, one strong cue or two weak agreeing cues pass it, and a typical session with
several agreeing cues lands above 0.9. Below the threshold no role is assigned and the
generic labels stay (a wrong "THERAPIST" in a clinical record is worse than none).

More than two speakers (couples, family, group sessions): the most therapist-like
speaker gets THERAPIST only if it beats *every* other speaker by the stricter
``multi_threshold``; the others are then CLIENT 1, CLIENT 2, ... in order of first
appearance (with two speakers the other one is plain CLIENT). When no one clearly leads,
nobody gets a role: two roles are never forced onto three people, and generic labels are
honest. Speakers with under ``minor_share`` of the talk time (stray diarization clusters,
a brief interruption) are ignored when counting speakers and get no role, so a 2-second
phantom SPEAKER_02 neither blocks the common two-speaker case nor becomes a client.

An enrolled voice (ADR 0010) overrides the heuristics: the speaker the diarizer matched
to the session owner's enrolment (``VoiceMatch``) is THERAPIST with the match's
confidence, and every other major speaker is a client, numbered when there are several.
The therapist can still rename speakers and change roles afterwards (PATCH .../speakers).

"Unknown" (undiarized speech) never gets a role. Roles never replace labels: this module
returns a mapping, and ``apply_roles`` only fills ``MergedSegment.role``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shared.contracts.events import MergedSegment, SpeakerInfo, VoiceMatch

THERAPIST = "THERAPIST"
CLIENT = "CLIENT"
UNKNOWN = "Unknown"

__all__ = [
    "THERAPIST",
    "CLIENT",
    "client_roles",
    "SpeakerFeatures",
    "speaker_features",
    "pair_score",
    "infer_roles",
    "apply_roles",
    "speaker_infos",
]

# --- lexical cues ------------------------------------------------------------------------
_QUESTION_START = frozenset(
    "what how why when where who whom whose which do does did is are was were can could "
    "would will should shall have has had may might am aren't isn't don't doesn't didn't "
    "won't wouldn't couldn't".split()
)
_SECOND = frozenset("you your yours yourself yourselves you're you've you'll you'd ya y'all".split())
_FIRST = frozenset("i me my mine myself i'm i've i'll i'd".split())

# (pattern, weight): weight 1 for phrases that are nearly always the therapist, 0.5 for
# phrases that clients use too ("I've been anxious this week", "I try to...").
_HOMEWORK: tuple[tuple[re.Pattern[str], float], ...] = tuple(
    (re.compile(p, re.I), w)
    for p, w in [
        (r"\b(i'?d|i would|i want|i'?d really) (like|want|encourage|love) (for )?you to\b", 1.0),
        (r"\bi want you to\b", 1.0),
        (r"\bi (encourage|invite) you to\b", 1.0),
        (r"\bhome ?work\b", 1.0),
        (r"\bbetween now and (our |the )?next (session|time|week|appointment)\b", 1.0),
        (r"\bbefore (our|the) next (session|appointment)\b", 1.0),
        (r"\bfor (next|our next) (week|session|time)\b", 1.0),
        (r"\bkeep (a|an) (\w+ )?(journal|log|diary|record)\b", 1.0),
        (r"\bthis (coming )?week,? (try|see if|practice|notice|i'?d like|i want)\b", 1.0),
        (r"\b(could|can|would) you try\b", 1.0),
        (r"\bassignment\b", 0.5),
        (r"\bworksheet\b", 0.5),
        (r"\bthis (coming )?week\b", 0.5),
        (r"\btry to\b", 0.5),
        (r"\bpractic(e|ing)\b", 0.5),
        (r"\bwrite (it |them |that |these )?down\b", 0.5),
    ]
)
_REFLECT = tuple(
    re.compile(p, re.I)
    for p in [
        r"\b(it )?sounds like\b",
        r"\bit (seems|sounds) (like|as if)\b",
        r"\bwhat i'?m hearing\b",
        r"\bi hear (you|that)\b",
        r"\bthat makes (a lot of )?sense\b",
        r"\btell me (more|about)\b",
        r"\b(can|could) you (say|tell me) (a (little )?)?more\b",
        r"\bhow (did|does|do|would) (that|it|this) (make you )?feel\b",
        r"\bhow did that make you\b",
        r"\bwhat (do|did) you (think|notice|feel)\b",
        r"\bon a scale of\b",
        r"\bi'?m wondering (if|whether|what)\b",
        r"\bwhat comes up for you\b",
        r"\bthat must (have been|be)\b",
    ]
)
_OPENING = tuple(
    re.compile(p, re.I)
    for p in [
        r"\bhow (have|'ve) you been\b",
        r"\bhow are you (doing|feeling|today)\b",
        r"\bhow('s| has| was) (your|the) week\b",
        r"\bhow (was|did) (your|the) (week|weekend|homework|exercise|practice)\b",
        r"\bwelcome( back)?\b",
        r"\b(good|nice) to see you\b",
        r"\bsince (we|our) last (spoke|talked|met|session)\b",
        r"\blast (time|session|week) we\b",
        r"\bwhat would you like to (talk about|focus on|work on|start with)\b",
        r"\bwhere would you like to (start|begin)\b",
        r"\bcome on in\b",
        r"\bhave a seat\b",
    ]
)
_CLOSING = tuple(
    re.compile(p, re.I)
    for p in [
        r"\bsee you next (week|time|session|tuesday|monday|wednesday|thursday|friday)\b",
        r"\bsame time next week\b",
        r"\b(we're|we are) (almost |about |just about )?(out of|running out of|at) (time|the end)\b",
        r"\b(let's|let us|we'll|we should|we can) (stop|wrap up|end|pause) (here|there|for today)\b",
        r"\bour time is (up|almost up)\b",
        r"\buntil next (week|time|session)\b",
        r"\b(we'll|we will|let's) (pick|follow) (this|that|it) up\b",
        r"\bschedule (our|the|your) next\b",
    ]
)

_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+")
_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?")

# Feature weights for the pair score (see module docstring for how they were set).
_W_QUESTION = 2.5
_W_HOMEWORK = 2.0
_W_REFLECT = 1.5
_W_OPENING = 1.0
_W_CLOSING = 1.0
_W_PRONOUN = 2.0
_W_TALK = 0.8
_W_FIRST = 0.25
_W_LAST = 0.15
# Words spoken by the pair at which the evidence counts half: a 10-word exchange is
# nearly no evidence, a 50-minute session (thousands of words) counts almost in full.
_HALF_EVIDENCE_WORDS = 50
# Scales the summed evidence into log-odds, and the ceiling on the confidence: hand-set
# cues never justify certainty, so a textbook session tops out at 0.99.
_TEMPERATURE = 0.6
_MAX_CONFIDENCE = 0.99


@dataclass(frozen=True, slots=True)
class SpeakerFeatures:
    """Per-speaker counts the role score is built from; also useful for logging/debugging."""

    label: str
    talk_time_s: float
    words: int
    sentences: int
    questions: int
    homework: float
    reflect: int
    opening: int
    closing: int
    second_person: int
    first_person: int
    opens: bool
    closes: bool

    @property
    def question_rate(self) -> float:
        return self.questions / self.sentences if self.sentences else 0.0

    @property
    def you_ratio(self) -> float:
        """Smoothed share of second-person among first+second-person pronouns."""
        return (self.second_person + 1) / (self.second_person + self.first_person + 2)


def _normalise(text: str) -> str:
    return text.replace("\u2019", "'").replace("\u2018", "'")


def _is_question(sentence: str) -> bool:
    s = sentence.strip()
    if not s:
        return False
    if s.endswith("?"):
        return True
    if s[-1] in ".!":
        return False  # "How I felt was awful." is a statement
    # Unpunctuated ASR output: fall back to a wh-/auxiliary-initial sentence.
    first = _TOKEN.findall(s.lower()[:20])
    return bool(first) and first[0] in _QUESTION_START


def _count_cues(a: dict[str, float], seg: MergedSegment, opening: bool, closing: bool) -> None:
    """Add one segment's role cues to its speaker's counts."""
    text = _normalise(seg.text.strip())
    a["talk"] += max(0.0, seg.end - seg.start)
    tokens = _TOKEN.findall(text.lower())
    a["words"] += len(tokens)
    a["you"] += sum(t in _SECOND for t in tokens)
    a["me"] += sum(t in _FIRST for t in tokens)
    sentences = [s for s in _SENTENCE_SPLIT.split(text) if s.strip()]
    a["sentences"] += len(sentences)
    a["questions"] += sum(_is_question(s) for s in sentences)
    a["homework"] += sum(w * len(p.findall(text)) for p, w in _HOMEWORK)
    a["reflect"] += sum(len(p.findall(text)) for p in _REFLECT)
    if opening:
        a["opening"] += sum(len(p.findall(text)) for p in _OPENING)
    if closing:
        a["closing"] += sum(len(p.findall(text)) for p in _CLOSING)


def speaker_features(merged: Sequence[MergedSegment]) -> dict[str, SpeakerFeatures]:
    """Count the role cues per speaker label ("Unknown" excluded)."""
    segs = [s for s in merged if s.speaker != UNKNOWN and s.text.strip()]
    if not segs:
        return {}
    t0 = min(s.start for s in segs)
    t1 = max(s.end for s in segs)
    span = max(t1 - t0, 1e-9)
    # Opening/closing windows: the first/last 15 % of the session, at least 90 s, and at
    # least the first/last three speaking segments (short test clips, sparse sessions).
    window = max(0.15 * span, 90.0)
    first_idx = set(range(min(3, len(segs))))
    last_idx = set(range(max(0, len(segs) - 3), len(segs)))

    acc: dict[str, dict[str, float]] = {}
    for i, seg in enumerate(segs):
        a = acc.setdefault(
            seg.speaker,
            dict(talk=0.0, words=0, sentences=0, questions=0, homework=0.0, reflect=0, opening=0, closing=0, you=0, me=0),
        )
        _count_cues(a, seg, opening=seg.start - t0 <= window or i in first_idx,
                    closing=t1 - seg.end <= window or i in last_idx)

    opener, closer = segs[0].speaker, segs[-1].speaker
    return {
        label: SpeakerFeatures(
            label=label,
            talk_time_s=round(a["talk"], 3),
            words=int(a["words"]),
            sentences=int(a["sentences"]),
            questions=int(a["questions"]),
            homework=a["homework"],
            reflect=int(a["reflect"]),
            opening=int(a["opening"]),
            closing=int(a["closing"]),
            second_person=int(a["you"]),
            first_person=int(a["me"]),
            opens=label == opener,
            closes=label == closer,
        )
        for label, a in acc.items()
    }


def _contrast(x: float, y: float) -> float:
    """Smoothed (x - y) / (x + y + 1): in (-1, 1), 0 when neither shows the cue."""
    return (x - y) / (x + y + 1.0)


def pair_score(a: SpeakerFeatures, b: SpeakerFeatures) -> float:
    """Evidence (log-odds) that ``a`` rather than ``b`` is the therapist. Antisymmetric."""
    d = 0.0
    d += _W_QUESTION * (a.question_rate - b.question_rate)
    d += _W_HOMEWORK * _contrast(a.homework, b.homework)
    d += _W_REFLECT * _contrast(a.reflect, b.reflect)
    d += _W_OPENING * _contrast(a.opening, b.opening)
    d += _W_CLOSING * _contrast(a.closing, b.closing)
    d += _W_PRONOUN * 2.0 * (a.you_ratio - b.you_ratio)
    total = a.talk_time_s + b.talk_time_s
    if total > 0:
        d += _W_TALK * (b.talk_time_s - a.talk_time_s) / total  # the client usually talks more
    d += _W_FIRST * (int(a.opens) - int(b.opens))
    d += _W_LAST * (int(a.closes) - int(b.closes))
    n = a.words + b.words
    evidence = n / (n + _HALF_EVIDENCE_WORDS)
    return d * evidence


def _probability(d: float) -> float:
    """P(first speaker is the therapist) from the pair score, kept within the confidence cap."""
    p = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, _TEMPERATURE * d))))
    return min(_MAX_CONFIDENCE, max(1.0 - _MAX_CONFIDENCE, p))


def client_roles(labels: Sequence[str]) -> list[str]:
    """Role names for the clients, in order: CLIENT alone, else CLIENT 1, CLIENT 2, ..."""
    if len(labels) == 1:
        return [CLIENT]
    return [f"{CLIENT} {i}" for i in range(1, len(labels) + 1)]


def _major_speakers(feats: Mapping[str, SpeakerFeatures], minor_share: float) -> list[SpeakerFeatures]:
    total_talk = sum(f.talk_time_s for f in feats.values())
    return [f for f in feats.values() if total_talk <= 0 or f.talk_time_s >= minor_share * total_talk]


def _assign(result: dict[str, tuple[str | None, float]], labels: Sequence[str], therapist: str | None,
            conf: float, major: Sequence[str]) -> dict[str, tuple[str | None, float]]:
    """Every label gets ``conf``; the therapist THERAPIST, the other major speakers client roles."""
    for label in result:
        result[label] = (None, conf) if label != UNKNOWN else (None, 0.5)
    if therapist is None:
        return result
    result[therapist] = (THERAPIST, conf)
    clients = [label for label in labels if label in major and label != therapist]
    for label, role in zip(clients, client_roles(clients)):
        result[label] = (role, conf)
    return result


def _heuristic_therapist(major: Sequence[SpeakerFeatures], threshold: float,
                         multi_threshold: float) -> tuple[str | None, float]:
    """(label of the therapist or None, confidence) from the lexical and talk-time cues."""
    if len(major) == 2:
        a, b = major
        p = _probability(pair_score(a, b))
        conf = max(p, 1.0 - p)
        return ((a if p >= 0.5 else b).label if conf >= threshold else None), conf
    # Three or more: the candidate must beat every other speaker, so take its worst pair.
    best_label, best_margin = None, -math.inf
    for f in major:
        margin = min(pair_score(f, g) for g in major if g is not f)
        if margin > best_margin:
            best_label, best_margin = f.label, margin
    p = _probability(best_margin)
    return (best_label if p >= multi_threshold else None), max(p, 1.0 - p)


def infer_roles(
    merged: Sequence[MergedSegment],
    threshold: float = 0.6,
    multi_threshold: float = 0.75,
    minor_share: float = 0.05,
    enrolled: VoiceMatch | None = None,
) -> dict[str, tuple[str | None, float]]:
    """Map every speaker label in ``merged`` to (role or None, confidence).

    Confidence is the confidence of the session's role decision, in [0.5, 1.0]; the same
    value is given to every speaker of the session (0.5 means no evidence either way,
    e.g. one speaker or only "Unknown"). ``enrolled``: the diarizer's match of the
    owner's enrolled voice, which decides the therapist when its speaker is in ``merged``.
    A role is None below the threshold, for "Unknown" and for minor speakers.
    """
    labels = list(dict.fromkeys(s.speaker for s in merged))
    result: dict[str, tuple[str | None, float]] = {label: (None, 0.5) for label in labels}
    feats = speaker_features(merged)
    major = _major_speakers(feats, minor_share)
    major_labels = [f.label for f in major]
    if enrolled is not None and enrolled.speaker in feats:
        return _assign(result, labels, enrolled.speaker, enrolled.confidence, major_labels)
    if len(major) < 2:
        return result
    therapist, conf = _heuristic_therapist(major, threshold, multi_threshold)
    return _assign(result, labels, therapist, conf, major_labels)


def display_names(enrolled: VoiceMatch | None, labels: Sequence[str]) -> dict[str, str]:
    """label -> display name: the enrolled therapist's name on their speaker."""
    if enrolled is None or not enrolled.display_name or enrolled.speaker not in labels:
        return {}
    return {enrolled.speaker: enrolled.display_name}


def apply_roles(
    merged: Sequence[MergedSegment], roles: Mapping[str, tuple[str | None, float]]
) -> list[MergedSegment]:
    """Copies of the segments with ``role`` filled in; ``speaker`` (the label) is untouched."""
    return [s.model_copy(update={"role": roles.get(s.speaker, (None, 0.0))[0]}) for s in merged]


def speaker_infos(
    merged: Sequence[MergedSegment], roles: Mapping[str, tuple[str | None, float]],
    names: Mapping[str, str] | None = None,
) -> list[SpeakerInfo]:
    """SpeakerInfo per label, in order of first appearance, for transcript.merged."""
    talk: dict[str, float] = {}
    for s in merged:
        talk[s.speaker] = talk.get(s.speaker, 0.0) + max(0.0, s.end - s.start)
    out = []
    for label, t in talk.items():
        role, conf = roles.get(label, (None, None))
        out.append(
            SpeakerInfo(
                label=label,
                role=role,
                role_confidence=None if conf is None else round(conf, 3),
                talk_time_s=round(t, 3),
                display_name=(names or {}).get(label),
            )
        )
    return out
