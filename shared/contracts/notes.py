"""The clinical-notes schema: one source of truth for the LLM's structured output,
the offline extractor, the notes.ready event, the database and the API."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, Field


class SessionMood(str, Enum):
    very_low = "very_low"
    low = "low"
    neutral = "neutral"
    positive = "positive"
    very_positive = "very_positive"
    mixed = "mixed"


class MoodTrajectory(str, Enum):
    improving = "improving"
    declining = "declining"
    stable = "stable"
    fluctuating = "fluctuating"


class RiskCategory(str, Enum):
    suicidal_ideation = "suicidal_ideation"
    self_harm = "self_harm"
    harm_to_others = "harm_to_others"
    abuse_or_violence = "abuse_or_violence"
    substance_use = "substance_use"
    hopelessness = "hopelessness"
    other = "other"


class Severity(str, Enum):
    low = "low"
    moderate = "moderate"
    high = "high"


class FlagSource(str, Enum):
    lexicon = "lexicon"
    llm = "llm"
    both = "both"


class Strategy(BaseModel):
    """An intervention used in the session. ``evidence``/``start``/``end`` were added later
    (additive, schema_version 1): the verbatim sentence where it was used, and its time."""

    name: str
    category: str = Field(description="e.g. breathing, cognitive, behavioral, mindfulness, interpersonal")
    status: str = Field(description="introduced, practiced, assigned or reviewed")
    context: str = ""
    evidence: str = Field("", description="Verbatim quote where the intervention was used")
    start: float | None = None
    end: float | None = None


class ActionItem(BaseModel):
    """Homework or an agreed next step. ``evidence``/``start``/``end`` were added later
    (additive, schema_version 1): the verbatim sentence where it was agreed, and its time."""

    task: str
    category: str = Field(description="homework, practice, reading, tracking, appointment, referral or other")
    details: str = ""
    owner: str = Field("client", description="client or therapist")
    evidence: str = Field("", description="Verbatim quote where the item was agreed")
    start: float | None = None
    end: float | None = None


class SignificantQuote(BaseModel):
    quote: str = Field(description="Verbatim text from the transcript")
    speaker: str
    role: str | None = None
    start: float
    end: float
    why: str = ""


class Temporal(str, Enum):
    current = "current"
    past = "past"


class RiskEvidence(BaseModel):
    """One verbatim quote of a risk episode, with its time."""

    quote: str = Field(description="Verbatim text from the transcript")
    start: float
    end: float | None = None
    speaker: str | None = None
    role: str | None = None


class RiskFlag(BaseModel):
    """One risk EPISODE: contiguous mentions of one category, merged.

    ``evidence``/``start``/``end`` are the episode's key quote (the most severe one);
    ``evidence_quotes`` holds every quote in time order; ``episode_start``/``episode_end``
    span them all. The last three fields were added later (additive, schema_version 1):
    producers that do not set them leave an empty list / None.
    """

    category: RiskCategory
    severity: Severity
    evidence: str = Field(description="Verbatim quote from the transcript")
    start: float
    end: float | None = None
    speaker: str | None = None
    role: str | None = None
    source: FlagSource
    high_priority: bool = Field(False, description="True for high severity: shown first")
    rationale: str = ""
    temporal: Temporal = Field(Temporal.current, description="current risk, or past/resolved history")
    evidence_quotes: list[RiskEvidence] = Field(default_factory=list, description="Every quote of the episode, in time order")
    episode_start: float | None = Field(None, description="Start of the episode's first quote")
    episode_end: float | None = Field(None, description="End of the episode's last quote")


_SEVERITY_RANK = {"high": 0, "moderate": 1, "low": 2}


def sort_flags(flags: list[RiskFlag]) -> list[RiskFlag]:
    """High severity first, then by time: what a clinician must see first. The notes
    service stores flags in this order and every export shows them in it."""
    return sorted(flags, key=lambda f: (_SEVERITY_RANK[f.severity.value], f.start, f.category.value))


class ClinicalNotes(BaseModel):
    key_topics: list[str] = Field(default_factory=list)
    topic_summary: str = ""
    strategies: list[Strategy] = Field(default_factory=list)
    emotional_themes: list[str] = Field(default_factory=list)
    triggers: list[str] = Field(default_factory=list)
    action_items: list[ActionItem] = Field(default_factory=list)
    significant_quotes: list[SignificantQuote] = Field(default_factory=list)
    session_mood: SessionMood = SessionMood.neutral
    mood_trajectory: MoodTrajectory = MoodTrajectory.stable
    follow_up_topics: list[str] = Field(default_factory=list)
    unresolved_concerns: list[str] = Field(default_factory=list)
    risk_flags: list[RiskFlag] = Field(default_factory=list)
    therapist_notes: str = ""
    patient_summary: str = ""
