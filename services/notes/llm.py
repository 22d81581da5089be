"""LLM notes backend: any OpenAI-compatible chat endpoint through AsyncOpenAI.

Why it looks like this:
- Async client with ``max_retries=0``: retries are ours (tenacity, transient errors only,
  exponential backoff from config) so they compose with the circuit breaker and are
  visible in tests; the SDK's hidden retries would multiply the attempts.
- Structured output with a JSON schema, falling back to ``json_object`` (and then to plain
  prompting) for servers that reject it (older vLLM, llama.cpp, Ollama). The fallback is
  remembered per backend instance, not globally.
- Model output is validated by pydantic; one repair round-trip, then a PermanentError:
  we never store notes we could not validate.
- Long sessions are map-reduced so they fit the model's context.
- Everything returned is grounded (quotes/evidence re-pointed at real transcript text)
  and the lexicon safety net's flags are merged in, so no backend can drop a risk flag.
- Transcript text is never logged; logs carry counts, codes and durations only.

The backend takes plain config (``LLMConfig``) and a breaker from the service wiring;
it does not read the environment.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

import openai
from pydantic import ValidationError

from services.notes.grounding import normalize, validate_notes_against_transcript
from services.notes.risk import RiskDetector, detect_risk, merge_flags, sort_flags
from shared.contracts.events import MergedSegment, NotesEngine, SpeakerInfo
from shared.contracts.notes import (
    ClinicalNotes,
    FlagSource,
    MoodTrajectory,
    RiskFlag,
    SessionMood,
    Severity,
)
from shared.logging import get_logger
from shared.resilience import CircuitBreaker, CircuitOpenError, PermanentError, TransientError, retrying

log = get_logger(__name__)

CHARS_PER_TOKEN = 4
_MODES = ("json_schema", "json_object", "none")


@dataclass(frozen=True)
class LLMConfig:
    base_url: str | None
    api_key: str
    model: str
    timeout_s: float = 120.0
    max_tokens: int = 4000
    context_tokens: int = 16000
    price_in_per_1k: float = 0.0
    price_out_per_1k: float = 0.0
    retry_attempts: int = 3
    retry_initial_s: float = 2.0
    retry_max_s: float = 60.0
    temperature: float = 0.0


def estimate_tokens(text: str) -> int:
    """~4 characters per token: good enough for budgeting, no tokenizer dependency."""
    return len(text) // CHARS_PER_TOKEN + 1


SYSTEM_PROMPT = """You are a careful clinical documentation assistant for a licensed therapist.
You read a speaker-labelled therapy session transcript. Each line looks like
"[12.3] CLIENT: text" where 12.3 is the start time in seconds of that line.

Return ONE JSON object with the clinical notes for the session. Rules:
- Use only what is in the transcript. Never invent events, quotes, diagnoses or homework.
- significant_quotes: copy the words EXACTLY (verbatim substring of one line), give the
  speaker label and role as shown, and set start to the time in brackets of that line.
- risk_flags: flag any disclosure of suicidal thoughts, self-harm, harm to others, abuse or
  violence, substance misuse, hopelessness or other safety risk by the client. Evidence must
  be a verbatim quote; start is its line time. Ignore clearly negated statements ("I would
  never hurt myself"), idioms and hypotheticals. High severity: plan, intent, means or recent
  attempt; set high_priority true for high severity. Set source to "llm".
- action_items: homework or tasks agreed in the session (owner client or therapist).
- strategies: therapeutic techniques discussed (status introduced, practiced, assigned or reviewed).
- session_mood is one of very_low, low, neutral, positive, very_positive, mixed;
  mood_trajectory is one of improving, declining, stable, fluctuating.
- therapist_notes: concise clinical summary for the therapist; patient_summary: warm,
  plain-language summary for the client, without risk details.
Answer with JSON only."""


def _schema() -> dict[str, Any]:
    return ClinicalNotes.model_json_schema()


def transcript_lines(segments: list[MergedSegment]) -> list[str]:
    """'[t] LABEL: text' lines; the label is the role when known, else the speaker label."""
    lines = []
    for s in segments:
        label = s.role or s.speaker or "Unknown"
        text = " ".join(s.text.split())
        if text:
            lines.append(f"[{s.start:.1f}] {label}: {text}")
    return lines


def _speakers_header(speakers: list[SpeakerInfo]) -> str:
    if not speakers:
        return "Speakers: unknown (no diarization)."
    parts = [f"{sp.label} = {sp.role or 'unknown role'}" for sp in speakers]
    return "Speakers: " + ", ".join(parts) + "."


def _strip_fences(text: str) -> str:
    text = text.strip()
    m = re.match(r"^```(?:json)?\s*(.*?)\s*```$", text, re.DOTALL)
    if m:
        return m.group(1)
    # some servers prepend prose; take the outermost JSON object
    if not text.startswith("{") and "{" in text and "}" in text:
        return text[text.index("{"): text.rindex("}") + 1]
    return text


def _dedupe_str(items: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for it in items:
        key = normalize(it)
        if key and key not in seen:
            seen.add(key)
            out.append(it.strip())
    return out


def _dedupe_by(items: list, key) -> list:
    seen: set[str] = set()
    out = []
    for it in items:
        k = normalize(key(it))
        if k not in seen:
            seen.add(k)
            out.append(it)
    return out


_SEV = {Severity.low: 0, Severity.moderate: 1, Severity.high: 2}


def merge_partial_notes(parts: list[ClinicalNotes]) -> ClinicalNotes:
    """Deterministic merge of per-chunk notes: ordered unions with dedupe.

    Summaries are simply joined here; ``LLMNotesBackend`` replaces them with a reduce
    call's output when there is more than one chunk.
    """
    if len(parts) == 1:
        return parts[0]
    flags: dict[tuple[str, str], RiskFlag] = {}
    for p in parts:
        for f in p.risk_flags:
            k = (f.category.value, normalize(f.evidence))
            if k not in flags or _SEV[f.severity] > _SEV[flags[k].severity]:
                flags[k] = f
    moods = [p.session_mood for p in parts]
    mood = moods[0] if len(set(moods)) == 1 else SessionMood.mixed
    return ClinicalNotes(
        key_topics=_dedupe_str([t for p in parts for t in p.key_topics]),
        topic_summary=" ".join(p.topic_summary for p in parts if p.topic_summary),
        strategies=_dedupe_by([s for p in parts for s in p.strategies], lambda s: s.name),
        emotional_themes=_dedupe_str([t for p in parts for t in p.emotional_themes]),
        triggers=_dedupe_str([t for p in parts for t in p.triggers]),
        action_items=_dedupe_by([a for p in parts for a in p.action_items], lambda a: a.task),
        significant_quotes=_dedupe_by([q for p in parts for q in p.significant_quotes], lambda q: q.quote),
        session_mood=mood,
        mood_trajectory=MoodTrajectory.stable if len(set(moods)) == 1 else MoodTrajectory.fluctuating,
        follow_up_topics=_dedupe_str([t for p in parts for t in p.follow_up_topics]),
        unresolved_concerns=_dedupe_str([t for p in parts for t in p.unresolved_concerns]),
        risk_flags=sort_flags(list(flags.values())),
        therapist_notes=" ".join(p.therapist_notes for p in parts if p.therapist_notes),
        patient_summary=" ".join(p.patient_summary for p in parts if p.patient_summary),
    )


class _Usage:
    def __init__(self) -> None:
        self.prompt = 0
        self.completion = 0
        self.calls = 0


class LLMNotesBackend:
    """Clinical notes from an OpenAI-compatible endpoint. One instance per service."""

    backend_name = "llm"

    def __init__(self, config: LLMConfig, breaker: CircuitBreaker, client: openai.AsyncOpenAI | None = None,
                 detector: RiskDetector | None = None):
        self.config = config
        self.breaker = breaker
        self.detector = detector
        self._client = client or openai.AsyncOpenAI(
            base_url=config.base_url, api_key=config.api_key, timeout=config.timeout_s, max_retries=0
        )
        self._mode_index = 0  # json_schema until the server says otherwise

    @property
    def response_mode(self) -> str:
        return _MODES[self._mode_index]

    async def aclose(self) -> None:
        await self._client.close()

    # --- public -------------------------------------------------------------------------
    async def generate(self, segments: list[MergedSegment], speakers: list[SpeakerInfo]) -> tuple[ClinicalNotes, NotesEngine]:
        """Notes for one session. Raises CircuitOpenError (without calling) while the
        breaker is open, TransientError after exhausted retries, PermanentError otherwise."""
        if not self.breaker.would_allow():
            raise CircuitOpenError(self.breaker.name, self.breaker.seconds_until_half_open() or self.breaker.open_s)
        t0 = time.perf_counter()
        usage = _Usage()
        lines = transcript_lines(segments)
        chunks = self.chunk_lines(lines)
        header = _speakers_header(speakers)
        parts = []
        for i, chunk in enumerate(chunks):
            intro = header if len(chunks) == 1 else f"{header}\nThis is part {i + 1} of {len(chunks)} of the session; write notes for this part only."
            parts.append(await self._notes_call(intro, "\n".join(chunk), usage))
        notes = merge_partial_notes(parts)
        if len(parts) > 1:
            notes = await self._reduce(parts, notes, header, usage)
        notes = self._finalise(notes, segments)
        engine = NotesEngine(
            backend=self.backend_name, model=self.config.model, device=None,
            prompt_tokens=usage.prompt, completion_tokens=usage.completion, calls=usage.calls,
            cost_usd=round(usage.prompt / 1000 * self.config.price_in_per_1k
                           + usage.completion / 1000 * self.config.price_out_per_1k, 6),
        )
        log.info("llm_notes_generated", chunks=len(chunks), calls=usage.calls, prompt_tokens=usage.prompt,
                 completion_tokens=usage.completion, seconds=round(time.perf_counter() - t0, 3),
                 response_mode=self.response_mode)
        return notes, engine

    # --- map-reduce -----------------------------------------------------------------------
    def chunk_budget_tokens(self) -> int:
        overhead = estimate_tokens(SYSTEM_PROMPT) + estimate_tokens(json.dumps(_schema())) + 100
        return max(200, self.config.context_tokens - self.config.max_tokens - overhead)

    def chunk_lines(self, lines: list[str]) -> list[list[str]]:
        """Greedy split into chunks under the token budget; overlong lines are cut at words."""
        budget_chars = self.chunk_budget_tokens() * CHARS_PER_TOKEN
        pieces: list[str] = []
        for line in lines:
            if len(line) <= budget_chars:
                pieces.append(line)
                continue
            prefix = line[: line.index(":") + 1] if ":" in line else ""
            cur = prefix
            for word in line[len(prefix):].split():
                if len(cur) + len(word) + 1 > budget_chars and cur != prefix:
                    pieces.append(cur)
                    cur = prefix
                cur += " " + word
            pieces.append(cur)
        chunks: list[list[str]] = []
        cur_chunk: list[str] = []
        size = 0
        for p in pieces:
            if cur_chunk and size + len(p) + 1 > budget_chars:
                chunks.append(cur_chunk)
                cur_chunk, size = [], 0
            cur_chunk.append(p)
            size += len(p) + 1
        if cur_chunk or not chunks:
            chunks.append(cur_chunk)
        return chunks

    async def _reduce(self, parts: list[ClinicalNotes], merged: ClinicalNotes, header: str, usage: _Usage) -> ClinicalNotes:
        """One call that rewrites the summaries/mood for the whole session from the partials."""
        compact = [p.model_dump(mode="json", include={
            "key_topics", "topic_summary", "emotional_themes", "session_mood", "mood_trajectory",
            "therapist_notes", "patient_summary", "unresolved_concerns"}) for p in parts]
        budget_chars = self.chunk_budget_tokens() * CHARS_PER_TOKEN
        body = json.dumps(compact, ensure_ascii=False)
        if len(body) > budget_chars:
            body = body[:budget_chars]
        user = (f"{header}\nThe session was split into {len(parts)} parts. Below are the notes for each part, "
                f"in order. Write the notes for the WHOLE session: topic_summary, therapist_notes, "
                f"patient_summary, session_mood and mood_trajectory (mood across the parts). "
                f"Return the full JSON object; lists may be left empty.\n\nPARTS:\n{body}")
        try:
            reduced = await self._structured_call([{"role": "user", "content": user}], usage)
        except PermanentError as e:
            if e.code != "invalid_llm_output":
                raise
            log.warning("llm_reduce_output_invalid_using_deterministic_merge", code=e.code)
            return merged
        return merged.model_copy(update={
            "topic_summary": reduced.topic_summary or merged.topic_summary,
            "therapist_notes": reduced.therapist_notes or merged.therapist_notes,
            "patient_summary": reduced.patient_summary or merged.patient_summary,
            "session_mood": reduced.session_mood,
            "mood_trajectory": reduced.mood_trajectory,
        })

    async def _notes_call(self, intro: str, transcript: str, usage: _Usage) -> ClinicalNotes:
        user = f"{intro}\n\nTRANSCRIPT:\n{transcript}"
        return await self._structured_call([{"role": "user", "content": user}], usage)

    def _finalise(self, notes: ClinicalNotes, segments: list[MergedSegment]) -> ClinicalNotes:
        llm_flags = [f.model_copy(update={"source": FlagSource.llm, "high_priority": f.high_priority or f.severity is Severity.high})
                     for f in notes.risk_flags]
        notes = validate_notes_against_transcript(notes.model_copy(update={"risk_flags": llm_flags}), segments)
        return notes.model_copy(update={"risk_flags": merge_flags(detect_risk(segments, self.detector), notes.risk_flags)})

    # --- one structured call with a repair round --------------------------------------------
    async def _structured_call(self, messages: list[dict[str, str]], usage: _Usage) -> ClinicalNotes:
        content = await self._chat(messages, usage)
        try:
            return self._parse(content)
        except (ValueError, ValidationError) as first_error:
            error_text = _error_summary(first_error)
            log.warning("llm_output_invalid_asking_for_repair", error=type(first_error).__name__)
        repair = messages + [
            {"role": "assistant", "content": content[:20000]},
            {"role": "user", "content": (
                "Your previous answer was not valid JSON for the required schema. Error:\n"
                f"{error_text}\nReturn ONLY the corrected JSON object, nothing else.")},
        ]
        content = await self._chat(repair, usage)
        try:
            return self._parse(content)
        except (ValueError, ValidationError) as e:
            log.error("llm_output_invalid_after_repair", error=type(e).__name__)
            raise PermanentError("invalid_llm_output", "The notes model returned output that could not be validated.") from None

    @staticmethod
    def _parse(content: str) -> ClinicalNotes:
        data = json.loads(_strip_fences(content))
        if not isinstance(data, dict):
            raise ValueError("top-level JSON value is not an object")
        return ClinicalNotes.model_validate(data)

    # --- transport: retries, breaker, error mapping ------------------------------------------
    async def _chat(self, messages: list[dict[str, str]], usage: _Usage) -> str:
        c = self.config
        async for attempt in retrying(c.retry_attempts, c.retry_initial_s, c.retry_max_s):
            with attempt:
                return await self.breaker.call(lambda: self._request(messages, usage))
        raise AssertionError("unreachable")  # pragma: no cover

    def _system_message(self) -> dict[str, str]:
        text = SYSTEM_PROMPT
        if self.response_mode != "json_schema":
            text += "\n\nThe JSON object must follow this JSON Schema:\n" + json.dumps(_schema(), separators=(",", ":"))
        return {"role": "system", "content": text}

    def _response_format(self) -> dict[str, Any] | None:
        if self.response_mode == "json_schema":
            return {"type": "json_schema", "json_schema": {"name": "clinical_notes", "schema": _schema(), "strict": False}}
        if self.response_mode == "json_object":
            return {"type": "json_object"}
        return None

    async def _request(self, messages: list[dict[str, str]], usage: _Usage) -> str:
        while True:
            kwargs: dict[str, Any] = {
                "model": self.config.model,
                "messages": [self._system_message(), *messages],
                "max_tokens": self.config.max_tokens,
                "temperature": self.config.temperature,
            }
            fmt = self._response_format()
            if fmt is not None:
                kwargs["response_format"] = fmt
            try:
                resp = await self._client.chat.completions.create(**kwargs)
            except openai.BadRequestError as e:
                if fmt is not None and _mentions_response_format(e) and self._mode_index < len(_MODES) - 1:
                    self._mode_index += 1
                    log.warning("llm_response_format_rejected_falling_back", mode=self.response_mode)
                    continue
                raise PermanentError("llm_bad_request", "The notes model rejected the request.") from None
            except openai.APIError as e:
                raise _map_error(e) from None
            usage.calls += 1
            if resp.usage is not None:
                usage.prompt += resp.usage.prompt_tokens or 0
                usage.completion += resp.usage.completion_tokens or 0
            if not resp.choices:
                raise TransientError("llm_empty_response", "The notes model returned no answer.")
            choice = resp.choices[0]
            content = choice.message.content or ""
            if choice.finish_reason == "length":
                log.warning("llm_answer_truncated_at_max_tokens", max_tokens=self.config.max_tokens)
            return content


def _mentions_response_format(e: openai.APIStatusError) -> bool:
    text = str(e).lower()
    try:
        text += json.dumps(e.body).lower()
    except (TypeError, ValueError):
        pass
    return "response_format" in text or "json_schema" in text


def _map_error(e: openai.APIError) -> Exception:
    """OpenAI SDK errors -> our transient/permanent classes (messages safe to show)."""
    if isinstance(e, openai.APITimeoutError):
        return TransientError("llm_timeout", "The notes model timed out.")
    if isinstance(e, openai.APIConnectionError):
        return TransientError("llm_unreachable", "The notes model could not be reached.")
    if isinstance(e, openai.RateLimitError):
        retry_after = None
        try:
            retry_after = float(e.response.headers.get("retry-after"))  # type: ignore[arg-type]
        except (TypeError, ValueError, AttributeError):
            pass
        return TransientError("llm_rate_limited", "The notes model is rate limited.", retry_after_s=retry_after)
    if isinstance(e, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return PermanentError("llm_unauthorized", "The notes model rejected the credentials.")
    if isinstance(e, openai.NotFoundError):
        return PermanentError("llm_not_found", "The notes model or endpoint was not found.")
    if isinstance(e, openai.APIStatusError):
        if e.status_code >= 500 or e.status_code in (408, 409, 425, 429):
            return TransientError("llm_unavailable", f"The notes model is unavailable (HTTP {e.status_code}).")
        return PermanentError("llm_request_failed", f"The notes model refused the request (HTTP {e.status_code}).")
    return TransientError("llm_error", "The notes model failed.")


def _error_summary(e: Exception) -> str:
    if isinstance(e, ValidationError):
        return "\n".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()[:20])
    return str(e)[:500]
