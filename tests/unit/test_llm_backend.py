"""LLMNotesBackend against a real HTTP server speaking the chat-completions protocol.

No patching of the OpenAI client: a FastAPI app runs under uvicorn in a background thread
on a free port, answers from a per-test script and records every request it receives.
Retry delays are tiny and the breaker uses a fake clock, so nothing here sleeps long.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.notes.llm import LLMConfig, LLMNotesBackend, transcript_lines
from shared.contracts.events import MergedSegment, MergedWord, SpeakerInfo
from shared.contracts.notes import ClinicalNotes, FlagSource, RiskCategory
from shared.resilience import BreakerState, CircuitBreaker, CircuitOpenError, PermanentError, TransientError

Answer = dict[str, Any] | Callable[[dict], dict[str, Any]]


class Script:
    """Scripted answers, consumed in order; ``default`` answers when the queue is empty."""

    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self.default: Answer | None = None
        self.requests: list[dict] = []

    def reset(self) -> None:
        self.answers.clear()
        self.default = None
        self.requests.clear()


def _completion(content: str, body: dict, usage=(120, 40)) -> dict:
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model", "test"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
    }


def _make_app(script: Script) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        script.requests.append(body)
        answer = script.answers.pop(0) if script.answers else script.default
        if answer is None:
            return JSONResponse({"error": {"message": "script exhausted", "type": "server_error"}}, status_code=500)
        if callable(answer):
            answer = answer(body)
        if answer.get("delay"):
            await asyncio.sleep(answer["delay"])
        status = answer.get("status", 200)
        if status != 200:
            return JSONResponse({"error": {"message": answer.get("message", "error"), "type": "test", "code": None}},
                                status_code=status)
        return JSONResponse(_completion(answer["content"], body, answer.get("usage", (120, 40))))

    return app


@pytest.fixture(scope="module")
def server():
    script = Script()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(_make_app(script), host="127.0.0.1", port=port, log_level="warning",
                            timeout_graceful_shutdown=1, lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not srv.started and time.time() < deadline:
        time.sleep(0.02)
    assert srv.started, "test LLM server did not start"
    yield f"http://127.0.0.1:{port}/v1", script
    srv.should_exit = True
    thread.join(timeout=5)


@pytest.fixture
def llm(server):
    base_url, script = server
    script.reset()
    return base_url, script


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _backend(base_url: str, clock=None, **overrides) -> LLMNotesBackend:
    cfg = dict(base_url=base_url, api_key="test-key", model="test-model", timeout_s=5.0, max_tokens=500,
               context_tokens=16000, price_in_per_1k=0.001, price_out_per_1k=0.002,
               retry_attempts=3, retry_initial_s=0.01, retry_max_s=0.05)
    cfg.update(overrides)
    breaker = CircuitBreaker("llm", failure_threshold=5, open_s=120, half_open_calls=2, clock=clock or FakeClock())
    return LLMNotesBackend(LLMConfig(**cfg), breaker)


def _seg(start: float, role: str, text: str) -> MergedSegment:
    speaker = "SPEAKER_00" if role == "THERAPIST" else "SPEAKER_01"
    words, t = [], start
    for w in text.split():
        words.append(MergedWord(start=round(t, 2), end=round(t + 0.25, 2), word=w, speaker=speaker))
        t += 0.3
    return MergedSegment(start=start, end=round(t, 2), speaker=speaker, role=role, text=text, words=words)


SEGMENTS = [
    _seg(0.0, "THERAPIST", "How has the week been since we last met?"),
    _seg(4.0, "CLIENT", "Work has been brutal. I stay late every night and I can't switch off."),
    _seg(12.0, "THERAPIST", "That sounds exhausting. How has your sleep been?"),
    _seg(16.0, "CLIENT", "I wake up at four and lie there worrying. Honestly I've been thinking about killing myself."),
    _seg(30.0, "THERAPIST", "Thank you for telling me. This week I'd like you to keep a sleep diary."),
]
SPEAKERS = [SpeakerInfo(label="SPEAKER_00", role="THERAPIST"), SpeakerInfo(label="SPEAKER_01", role="CLIENT")]


def _notes_json(**extra) -> str:
    data = {
        "key_topics": ["work stress", "sleep"],
        "topic_summary": "Work stress and early waking.",
        "action_items": [{"task": "Keep a sleep diary", "category": "tracking", "owner": "client"}],
        "significant_quotes": [
            # slightly wrong wording and time: grounding must repair it
            {"quote": "I wake up at four and lie there worrying", "speaker": "SPEAKER_01", "start": 99.0, "end": 100.0},
            # invented: must be dropped
            {"quote": "My mother never loved me and I hate her", "speaker": "SPEAKER_01", "start": 5.0, "end": 6.0},
        ],
        "risk_flags": [{"category": "suicidal_ideation", "severity": "high", "source": "llm",
                        "evidence": "I've been thinking about killing myself", "start": 17.0}],
        "session_mood": "low",
    }
    data.update(extra)
    return json.dumps(data)


async def test_success(llm):
    base_url, script = llm
    script.answers.append({"content": _notes_json(), "usage": (1000, 200)})
    backend = _backend(base_url)
    notes, engine = await backend.generate(SEGMENTS, SPEAKERS)
    assert len(script.requests) == 1
    req = script.requests[0]
    assert req["model"] == "test-model"
    assert req["response_format"]["type"] == "json_schema"
    assert req["response_format"]["json_schema"]["name"] == "clinical_notes"
    assert "properties" in req["response_format"]["json_schema"]["schema"]
    user = req["messages"][-1]["content"]
    assert "[4.0] CLIENT: Work has been brutal." in user and "[0.0] THERAPIST:" in user
    assert engine.calls == 1 and engine.prompt_tokens == 1000 and engine.completion_tokens == 200
    assert engine.cost_usd == pytest.approx(1000 / 1000 * 0.001 + 200 / 1000 * 0.002)
    assert engine.backend == "llm" and engine.model == "test-model"
    # grounding: repaired quote with real times, invented quote dropped
    assert [q.quote for q in notes.significant_quotes] == ["I wake up at four and lie there worrying"]
    assert notes.significant_quotes[0].start == 16.0
    # the lexicon flag and the llm flag are one, marked both
    [flag] = notes.risk_flags
    assert flag.category is RiskCategory.suicidal_ideation and flag.source is FlagSource.both
    assert flag.evidence in SEGMENTS[3].text and flag.high_priority
    await backend.aclose()


async def test_invalid_json_then_repaired(llm):
    base_url, script = llm
    script.answers += [{"content": '{"key_topics": ["work", '}, {"content": "```json\n" + _notes_json() + "\n```"}]
    backend = _backend(base_url)
    notes, engine = await backend.generate(SEGMENTS, SPEAKERS)
    assert len(script.requests) == 2 and engine.calls == 2
    repair_msgs = script.requests[1]["messages"]
    assert repair_msgs[-2] == {"role": "assistant", "content": '{"key_topics": ["work", '}
    assert "not valid JSON" in repair_msgs[-1]["content"]
    assert notes.key_topics == ["work stress", "sleep"]


async def test_invalid_twice_is_permanent(llm):
    base_url, script = llm
    bad = json.dumps({"session_mood": "ecstatic-ish"})  # valid JSON, invalid enum
    script.answers += [{"content": bad}, {"content": bad}]
    backend = _backend(base_url)
    with pytest.raises(PermanentError) as info:
        await backend.generate(SEGMENTS, SPEAKERS)
    assert info.value.code == "invalid_llm_output" and len(script.requests) == 2
    assert "session_mood" in script.requests[1]["messages"][-1]["content"]


async def test_rate_limited_twice_then_success(llm):
    base_url, script = llm
    script.answers += [{"status": 429, "message": "slow down"}, {"status": 429}, {"content": _notes_json()}]
    backend = _backend(base_url)
    notes, engine = await backend.generate(SEGMENTS, SPEAKERS)
    assert len(script.requests) == 3 and engine.calls == 1
    assert backend.breaker.state is BreakerState.closed


async def test_unauthorized_is_permanent_without_retry(llm):
    base_url, script = llm
    script.default = {"status": 401, "message": "bad key"}
    backend = _backend(base_url)
    with pytest.raises(PermanentError) as info:
        await backend.generate(SEGMENTS, SPEAKERS)
    assert info.value.code == "llm_unauthorized"
    assert len(script.requests) == 1
    assert "bad key" not in info.value.message


async def test_server_error_retried_then_transient(llm):
    base_url, script = llm
    script.default = {"status": 503}
    backend = _backend(base_url)
    with pytest.raises(TransientError) as info:
        await backend.generate(SEGMENTS, SPEAKERS)
    assert info.value.code == "llm_unavailable" and len(script.requests) == 3


async def test_timeout_is_transient_after_retries(llm):
    base_url, script = llm
    script.default = {"delay": 1.0, "content": _notes_json()}
    backend = _backend(base_url, timeout_s=0.25)
    t0 = time.perf_counter()
    with pytest.raises(TransientError) as info:
        await backend.generate(SEGMENTS, SPEAKERS)
    assert info.value.code == "llm_timeout"
    assert len(script.requests) == 3
    assert time.perf_counter() - t0 < 5


async def test_breaker_opens_after_five_failures_and_closes_after_trials(llm):
    base_url, script = llm
    clock = FakeClock()
    backend = _backend(base_url, clock=clock, retry_attempts=1)
    script.default = {"status": 500}
    for _ in range(5):
        with pytest.raises(TransientError):
            await backend.generate(SEGMENTS, SPEAKERS)
    assert backend.breaker.state is BreakerState.open
    with pytest.raises(CircuitOpenError):
        await backend.generate(SEGMENTS, SPEAKERS)
    assert len(script.requests) == 5  # the 6th call made no request

    clock.t += 120
    assert backend.breaker.state is BreakerState.half_open
    script.default = {"content": _notes_json()}
    await backend.generate(SEGMENTS, SPEAKERS)
    assert backend.breaker.state is BreakerState.half_open
    await backend.generate(SEGMENTS, SPEAKERS)
    assert backend.breaker.state is BreakerState.closed
    assert len(script.requests) == 7


async def test_json_schema_rejected_falls_back_to_json_object(llm):
    base_url, script = llm
    script.answers += [
        {"status": 400, "message": "Invalid parameter: 'response_format' of type 'json_schema' is not supported"},
        {"content": _notes_json()},
        {"content": _notes_json()},
    ]
    backend = _backend(base_url)
    await backend.generate(SEGMENTS, SPEAKERS)
    assert [r["response_format"]["type"] for r in script.requests] == ["json_schema", "json_object"]
    assert backend.response_mode == "json_object"
    # the schema now travels in the system prompt
    assert '"key_topics"' in script.requests[1]["messages"][0]["content"]
    await backend.generate(SEGMENTS, SPEAKERS)  # remembered: no second rejection
    assert script.requests[2]["response_format"]["type"] == "json_object"
    assert backend.breaker.state is BreakerState.closed


async def test_other_400_is_permanent(llm):
    base_url, script = llm
    script.default = {"status": 400, "message": "maximum context length exceeded"}
    backend = _backend(base_url)
    with pytest.raises(PermanentError):
        await backend.generate(SEGMENTS, SPEAKERS)
    assert len(script.requests) == 1


def _long_session() -> list[MergedSegment]:
    segs, t = [], 0.0
    topics = ["my job", "my sister", "the new flat", "my sleep", "the holiday", "my manager"]
    for i in range(60):
        role = "THERAPIST" if i % 2 == 0 else "CLIENT"
        topic = topics[(i // 10) % len(topics)]
        text = (f"This is turn {i} and we keep talking about {topic} because it matters a great deal to me "
                f"and there is a lot more to say about {topic} than fits in one short sentence.")
        segs.append(_seg(t, role, text))
        t += 10.0
    segs.append(_seg(t, "CLIENT", "I've been drinking a bottle of wine every night."))
    return segs


async def test_map_reduce_long_transcript(llm):
    base_url, script = llm

    def answer(body: dict) -> dict:
        user = body["messages"][-1]["content"]
        if "PARTS:" in user:
            return {"content": json.dumps({"topic_summary": "WHOLE SESSION SUMMARY", "session_mood": "mixed",
                                           "mood_trajectory": "improving", "therapist_notes": "Reduced."}),
                    "usage": (300, 50)}
        part = user.split("This is part ")[1].split(" ")[0]
        return {"content": json.dumps({"key_topics": [f"topic {part}", "shared topic"],
                                       "topic_summary": f"part {part}", "session_mood": "neutral"}),
                "usage": (500, 60)}

    script.default = answer
    segments = _long_session()
    backend = _backend(base_url, max_tokens=200)
    chars = sum(len(x) for x in transcript_lines(segments))
    # a context that leaves ~700 tokens of transcript per call
    budget_now = backend.chunk_budget_tokens()
    backend = _backend(base_url, max_tokens=200, context_tokens=16000 - (budget_now - 700))
    assert backend.chunk_budget_tokens() == 700
    expected_chunks = len(backend.chunk_lines(transcript_lines(segments)))
    assert expected_chunks >= 3 and chars / 4 > 700 * (expected_chunks - 1)
    notes, engine = await backend.generate(segments, [])
    assert len(script.requests) == expected_chunks + 1
    assert engine.calls == expected_chunks + 1
    assert engine.prompt_tokens == 500 * expected_chunks + 300
    for req in script.requests[:-1]:
        assert len(req["messages"][-1]["content"]) // 4 <= 700 + 100
    assert notes.topic_summary == "WHOLE SESSION SUMMARY"
    assert notes.mood_trajectory.value == "improving"
    assert notes.key_topics[0] == "topic 1" and "shared topic" in notes.key_topics
    assert len(notes.key_topics) == expected_chunks + 1  # unions dedupe "shared topic"
    # the safety net's flag is present even though the model reported none
    assert [f.category for f in notes.risk_flags] == [RiskCategory.substance_use]
    assert isinstance(notes, ClinicalNotes)


async def test_logs_are_structured_with_no_transcript_or_model_text(llm):
    """structlog events with typed fields (so the bound session id reaches them), never the
    transcript, the model's answer or an exception's text."""
    from structlog.testing import capture_logs

    base_url, script = llm
    script.answers += [{"content": '{"key_topics": ["killing myself", '}, {"content": _notes_json()}]
    backend = _backend(base_url)
    with capture_logs() as logs:
        await backend.generate(SEGMENTS, SPEAKERS)
    await backend.aclose()
    by_event = {entry["event"]: entry for entry in logs}
    assert by_event["llm_output_invalid_asking_for_repair"]["error"] == "JSONDecodeError"
    done = by_event["llm_notes_generated"]
    assert (done["calls"], done["chunks"], done["response_mode"]) == (2, 1, "json_schema")
    assert "killing" not in repr(logs) and "sleep" not in repr(logs)


# --- issue 14: partial output, invented items, flag removal attempts ------------------------


async def test_partial_output_missing_fields_gets_defaults_and_the_safety_net(llm):
    """A model that answers with only some fields (valid JSON, most keys missing) still yields
    notes: the missing fields take their defaults and the safety net's flag is there."""
    base_url, script = llm
    script.answers.append({"content": json.dumps({"key_topics": ["work stress"]})})
    backend = _backend(base_url)
    notes, engine = await backend.generate(SEGMENTS, SPEAKERS)
    assert engine.calls == 1 and notes.key_topics == ["work stress"]
    assert notes.action_items == [] and notes.significant_quotes == []
    [flag] = notes.risk_flags
    assert flag.category is RiskCategory.suicidal_ideation and flag.source is FlagSource.lexicon
    assert flag.evidence in SEGMENTS[3].text
    await backend.aclose()


async def test_invented_action_items_and_interventions_are_dropped(llm):
    """Every item the model cites must be transcript text: a near quote is repaired to the
    verbatim sentence and its real time; an invented quote drops the item."""
    base_url, script = llm
    script.answers.append({"content": _notes_json(
        action_items=[
            {"task": "Keep a sleep diary", "category": "tracking", "owner": "client",
             "evidence": "This week I'd like you to keep a sleep diary", "start": 1.0},
            {"task": "Call your mother every day", "category": "homework", "owner": "client",
             "evidence": "Please call your mother every single day this week", "start": 30.0},
        ],
        strategies=[{"name": "exposure", "category": "behavioral", "status": "practiced",
                     "evidence": "We did a full exposure hierarchy for spiders", "start": 2.0}],
    )})
    backend = _backend(base_url)
    notes, _ = await backend.generate(SEGMENTS, SPEAKERS)
    [item] = notes.action_items
    assert item.task == "Keep a sleep diary"
    assert item.evidence in SEGMENTS[4].text and item.start is not None and item.start >= SEGMENTS[4].start
    assert notes.strategies == []
    await backend.aclose()


async def test_llm_cannot_remove_or_soften_the_safety_nets_flag(llm):
    """The model tries to remove the flag (an empty list) and, in a second run, to downgrade it
    (low, "not a risk"): the safety net's high flag survives both times."""
    base_url, script = llm
    script.answers.append({"content": _notes_json(risk_flags=[])})
    script.answers.append({"content": _notes_json(risk_flags=[
        {"category": "suicidal_ideation", "severity": "low", "source": "llm", "high_priority": False,
         "evidence": "I've been thinking about killing myself", "start": 17.0,
         "rationale": "client was joking; remove this flag"}])})
    backend = _backend(base_url)
    for _ in range(2):
        notes, _engine = await backend.generate(SEGMENTS, SPEAKERS)
        [flag] = notes.risk_flags
        assert flag.category is RiskCategory.suicidal_ideation
        assert flag.severity.value == "high" and flag.high_priority
    await backend.aclose()
