"""Every adapter × every outcome, through the real SDKs against the simulator on loopback.

Faults are chosen per request with the ``x-sim-fault`` header (through ``ModelRequest.extra_headers``) or a
``[[sim:...]]`` directive in the prompt. Timing faults run with small budgets so the matrix stays fast; the
rest with roomy ones so a loaded machine cannot turn them into timeouts.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from toolbag.providers.anthropic_provider import AnthropicAdapter
from toolbag.providers.base import (
    Adapter,
    AttemptFailure,
    Message,
    ModelRequest,
    ModelResponse,
    OutcomeKind,
    Timeouts,
    ToolResult,
    ToolSpec,
)
from toolbag.providers.gemini_provider import GeminiAdapter
from toolbag.providers.openai_provider import OpenAIAdapter
from toolbag.simulator.faults import FaultPlan
from toolbag.simulator.server import SimulatorServer

KINDS = ("anthropic", "openai", "openai-compatible", "gemini")
MODELS = {"anthropic": "claude-t", "openai": "gpt-t", "openai-compatible": "llama-t", "gemini": "gemini-t"}
# Small budgets for the timing faults: a hang or stall costs at most about a second.
FAST = Timeouts(connect_s=1.0, first_token_s=0.6, total_s=1.0)
ROOMY = Timeouts(connect_s=5.0, first_token_s=10.0, total_s=20.0)  # for tests not about timing
SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["title"],
}
WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    """conftest's ``sim`` with a plan: ``*-slow`` models stream at 20 tokens/s."""
    plan = FaultPlan.from_dict({"latency": {"*-slow": {"ttft_ms": 0, "tokens_per_s": 20}}})
    with SimulatorServer(plan=plan) as server:
        yield server


@pytest.fixture(scope="module")
def adapters(sim: SimulatorServer) -> Iterator[dict[str, Adapter]]:
    made: dict[str, Adapter] = {
        "anthropic": AnthropicAdapter(api_key="sk-test-anthropic", base_url=sim.url, max_connections=32),
        "openai": OpenAIAdapter(api_key="sk-test-openai", base_url=sim.url + "/v1", max_connections=32),
        "openai-compatible": OpenAIAdapter(
            api_key="sk-test-compat", base_url=sim.url + "/v1", kind="openai-compatible", max_connections=32
        ),
        "gemini": GeminiAdapter(api_key="sk-test-gemini", base_url=sim.url, max_connections=32),
    }
    yield made
    for adapter in made.values():
        adapter.close()


def ask(
    adapter: Adapter,
    kind: str,
    text: str = "Summarize the quarterly report please",
    *,
    fault: str | None = None,
    stream: bool = False,
    timeouts: Timeouts = ROOMY,
    model: str | None = None,
    **fields: Any,
) -> ModelResponse:
    headers = {"x-sim-fault": fault} if fault else {}
    request = ModelRequest(
        messages=(Message("user", text),), stream=stream, timeouts=timeouts, extra_headers=headers, **fields
    )
    return adapter.call(model or MODELS[kind], request)


def fail(adapter: Adapter, kind: str, **kwargs: Any) -> AttemptFailure:
    with pytest.raises(AttemptFailure) as info:
        ask(adapter, kind, **kwargs)
    return info.value


# ------------------------------------------------------------------------------------ ok paths


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("kind", KINDS)
def test_text(adapters: dict[str, Adapter], kind: str, stream: bool) -> None:
    response = ask(adapters[kind], kind, "Hello there simulator", stream=stream)
    assert response.text == f"[{MODELS[kind]}] Hello there simulator"
    assert response.model == MODELS[kind]
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.request_id
    assert response.parsed is None and response.tool_calls == ()
    assert response.latency_s > 0
    if stream:
        assert response.time_to_first_token_s is not None
        assert 0 < response.time_to_first_token_s <= response.latency_s
    else:
        assert response.time_to_first_token_s is None
    if kind == "anthropic":
        assert response.ratelimit_headers["anthropic-ratelimit-requests-remaining"]
    elif kind != "gemini":
        assert response.ratelimit_headers["x-ratelimit-remaining-requests"]
    assert all(name == name.lower() for name in response.ratelimit_headers)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("kind", KINDS)
def test_json_schema(adapters: dict[str, Adapter], kind: str, stream: bool) -> None:
    response = ask(adapters[kind], kind, "Rate this film", stream=stream, json_schema=SCHEMA)
    assert isinstance(response.parsed, dict)
    assert isinstance(response.parsed["title"], str)
    assert 1 <= response.parsed["score"] <= 5
    assert json.loads(response.text) == response.parsed


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("kind", KINDS)
def test_tool_call_round_trip(adapters: dict[str, Adapter], kind: str, stream: bool) -> None:
    adapter = adapters[kind]
    first_turn = Message("user", 'Weather in Paris? [[sim:tool=get_weather {"city": "Paris"}]]')
    first = adapter.call(
        MODELS[kind], ModelRequest(messages=(first_turn,), tools=(WEATHER,), stream=stream, timeouts=ROOMY)
    )
    assert len(first.tool_calls) == 1
    call = first.tool_calls[0]
    assert call.name == "get_weather" and call.arguments == {"city": "Paris"}
    assert call.id
    conversation = (
        first_turn,
        Message("assistant", first.text, tool_calls=first.tool_calls),
        Message("user", "", tool_results=(ToolResult(call.id, call.name, "18C and sunny"),)),
    )
    second = adapter.call(
        MODELS[kind], ModelRequest(messages=conversation, tools=(WEATHER,), stream=stream, timeouts=ROOMY)
    )
    assert second.tool_calls == ()
    assert "18C and sunny" in second.text


@pytest.mark.parametrize("kind", KINDS)
def test_system_text_and_directive_select_faults(adapters: dict[str, Adapter], kind: str) -> None:
    request = ModelRequest(messages=(Message("user", "hi"),), system="Be brief. [[sim:overloaded]]", timeouts=ROOMY)
    with pytest.raises(AttemptFailure) as info:
        adapters[kind].call(MODELS[kind], request)
    assert info.value.kind is OutcomeKind.OVERLOADED


# ------------------------------------------------------------------------------ outcome matrix

PARTIAL = "partial"  # the failure must carry the text streamed before it
# (fault, stream, expected kind, retry_after_s, partial text expected)
MATRIX: list[tuple[str, bool, OutcomeKind, float | None, bool]] = [
    ("refusal", False, OutcomeKind.REFUSED, None, False),
    ("refusal_filter", False, OutcomeKind.REFUSED, None, False),
    ("refusal_finish", False, OutcomeKind.REFUSED, None, False),
    ("rate_limit:3", False, OutcomeKind.RATE_LIMITED, 3.0, False),
    ("rate_limit_bare", False, OutcomeKind.RATE_LIMITED, None, False),
    ("overloaded", False, OutcomeKind.OVERLOADED, None, False),
    ("unavailable", False, OutcomeKind.OVERLOADED, None, False),
    ("server_error", False, OutcomeKind.SERVER_ERROR, None, False),
    ("reset", False, OutcomeKind.NETWORK, None, False),
    ("context_length", False, OutcomeKind.CONTEXT_TOO_LONG, None, False),
    ("quota", False, OutcomeKind.QUOTA_EXHAUSTED, None, False),
    ("quota:spend_limit", False, OutcomeKind.QUOTA_EXHAUSTED, None, False),
    ("auth", False, OutcomeKind.AUTH, None, False),
    ("permission", False, OutcomeKind.AUTH, None, False),
    ("bad_request", False, OutcomeKind.BAD_REQUEST, None, False),
    ("hang:30", False, OutcomeKind.TIMEOUT, None, False),
    # streaming: errors before the first byte, then everything that can go wrong mid-stream
    ("refusal", True, OutcomeKind.REFUSED, None, False),
    ("rate_limit:2", True, OutcomeKind.RATE_LIMITED, 2.0, False),
    ("overloaded", True, OutcomeKind.OVERLOADED, None, False),
    ("context_length", True, OutcomeKind.CONTEXT_TOO_LONG, None, False),
    ("quota", True, OutcomeKind.QUOTA_EXHAUSTED, None, False),
    ("auth", True, OutcomeKind.AUTH, None, False),
    ("reset", True, OutcomeKind.NETWORK, None, False),
    ("hang:30", True, OutcomeKind.TIMEOUT, None, False),
    ("slow_first_token:3000", True, OutcomeKind.TIMEOUT, None, False),
    ("stall", True, OutcomeKind.TIMEOUT, None, True),
    ("cut", True, OutcomeKind.NETWORK, None, False),  # the RST may drop unread bytes: partial text varies
    ("malformed", True, OutcomeKind.SERVER_ERROR, None, True),
    ("midstream_error", True, OutcomeKind.OVERLOADED, None, True),
    ("midstream_refusal", True, OutcomeKind.REFUSED, None, True),
]
# What each vendor natively sends for a mid-stream error (simulator): OpenAI's is a server_error chunk.
OVERRIDES = {
    ("openai", "midstream_error"): OutcomeKind.SERVER_ERROR,
    ("openai-compatible", "midstream_error"): OutcomeKind.SERVER_ERROR,
}


@pytest.mark.parametrize(
    ("fault", "stream", "expected", "retry_after_s", "partial"),
    MATRIX,
    ids=[f"{f}-{'stream' if s else 'plain'}" for f, s, *_ in MATRIX],
)
@pytest.mark.parametrize("kind", KINDS)
def test_outcome_matrix(
    adapters: dict[str, Adapter],
    kind: str,
    fault: str,
    stream: bool,
    expected: OutcomeKind,
    retry_after_s: float | None,
    partial: bool,
) -> None:
    started = time.monotonic()
    budget = FAST if expected is OutcomeKind.TIMEOUT else ROOMY
    failure = fail(adapters[kind], kind, fault=fault, stream=stream, timeouts=budget)
    elapsed_s = time.monotonic() - started
    assert failure.kind is OVERRIDES.get((kind, fault), expected), failure.reason
    assert failure.retry_after_s == retry_after_s
    assert failure.reason
    assert "sk-test" not in failure.reason and "sk-test" not in repr(failure)
    if partial:
        assert failure.partial_text.startswith(f"[{MODELS[kind]}]")
    if expected in (OutcomeKind.RATE_LIMITED, OutcomeKind.OVERLOADED, OutcomeKind.SERVER_ERROR,
                    OutcomeKind.AUTH, OutcomeKind.QUOTA_EXHAUSTED, OutcomeKind.CONTEXT_TOO_LONG,
                    OutcomeKind.BAD_REQUEST) and not partial:
        assert failure.status_code is not None and failure.status_code >= 400
        assert failure.request_id
    if expected is OutcomeKind.TIMEOUT:
        # Bounded by the budget, not by the fault's 30 s / 3 s.
        assert elapsed_s < 2.5
        assert failure.latency_s >= min(FAST.first_token_s, FAST.total_s) * 0.9


@pytest.mark.parametrize("kind", KINDS)
def test_slow_first_token_within_budget_is_ok(adapters: dict[str, Adapter], kind: str) -> None:
    budget = Timeouts(connect_s=1.0, first_token_s=2.0, total_s=3.0)
    streamed = ask(adapters[kind], kind, fault="slow_first_token:200", stream=True, timeouts=budget)
    assert streamed.time_to_first_token_s is not None and streamed.time_to_first_token_s >= 0.2
    # Not streaming, the first token is not observable: only the total budget bounds the call.
    tight_first = Timeouts(connect_s=1.0, first_token_s=0.1, total_s=3.0)
    plain = ask(adapters[kind], kind, fault="slow_first_token:300", timeouts=tight_first)
    assert plain.text.startswith(f"[{MODELS[kind]}]")


def _sim_log(sim: SimulatorServer) -> list[dict[str, Any]]:
    with urllib.request.urlopen(sim.url + "/_sim/log", timeout=5) as reply:
        entries: list[dict[str, Any]] = json.load(reply)
    return entries


@pytest.mark.parametrize("kind", KINDS)
def test_total_budget_ends_a_slow_stream_and_closes_it(
    sim: SimulatorServer, adapters: dict[str, Adapter], kind: str
) -> None:
    model = f"{MODELS[kind]}-{time.monotonic_ns()}-slow"  # 20 tokens/s: chunks keep coming, slowly
    words = " ".join(f"word{i}" for i in range(40))
    budget = Timeouts(connect_s=1.0, first_token_s=2.0, total_s=1.2)  # chunk gaps stay far below 1.2 s
    failure = fail(adapters[kind], kind, text=words, stream=True, timeouts=budget, model=model)
    assert failure.kind is OutcomeKind.TIMEOUT
    assert "total budget" in failure.reason
    assert failure.partial_text.startswith(f"[{model}] word0")
    # The stream was closed, not abandoned: the simulator saw the client go away.
    deadline = time.monotonic() + 5.0
    ends: list[Any] = []
    while time.monotonic() < deadline:
        ends = [entry.get("end") for entry in _sim_log(sim) if entry.get("model") == model]
        if ends and ends[0] != "complete" and ends[0] is not None:
            break
        time.sleep(0.05)
    assert ends == ["disconnected"]


@pytest.mark.parametrize("kind", KINDS)
def test_one_adapter_serves_many_threads(adapters: dict[str, Adapter], kind: str) -> None:
    adapter = adapters[kind]

    def one(i: int) -> str:
        response = ask(adapter, kind, f"thread message {i}", stream=i % 2 == 0, timeouts=ROOMY)
        return response.text

    with ThreadPoolExecutor(max_workers=24) as pool:
        texts = list(pool.map(one, range(96)))
    assert texts == [f"[{MODELS[kind]}] thread message {i}" for i in range(96)]
