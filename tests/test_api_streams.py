"""Streams through the front door, with the real ``openai`` and ``anthropic`` SDKs as clients.

A stream cut after text reached the caller, continued on the next model (``stream_failover: continue``), with
simulator faults mid-stream on the first model: the caller receives the part the cut attempt sent, then exactly
what the next model writes after it as a prefill: no replay, no duplicate, and a stream that cannot be
continued is never presented complete. And tool calls whose arguments reach the caller as the model generates
them, through both SDKs' streaming helpers."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
import pytest

from tests.api_door import FrontDoor, front_door
from toolbag.api.app import JOB_ID_HEADER
from toolbag.attempt.deltas import attempt_text
from toolbag.simulator.generate import continue_text, make_reply
from toolbag.simulator.request import SimRequest, Turn

PROMPT = "The export button does nothing when I click it, and the log shows no error at all."
CONTINUED = "stitch"  # claude-haiku, then claude-sonnet: both take a prefill
ERRORED = "stitch-strict"  # the same candidates, stream_failover: error
NO_PREFILL = "stitch-openai"  # claude-haiku, then gpt-luna: OpenAI's chat API takes no prefill
MID_STREAM_FAULTS = ("midstream_error", "cut", "malformed", "midstream_refusal")
TOKENS_PER_S = 50
LOOKUP_ARGS = {"query": "why the export button does nothing", "limit": 5, "since": "2026-11-01"}
ASK_LOOKUP = f"Look it up. [[sim:tool=lookup {json.dumps(LOOKUP_ARGS)}]]"
LOOKUP_SCHEMA = {"type": "object", "properties": {"query": {"type": "string"}, "limit": {"type": "integer"},
                                                  "since": {"type": "string"}}, "required": ["query"]}


@pytest.fixture(scope="module")
def door(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FrontDoor]:
    routes = {
        CONTINUED: {"interactive": {"candidates": ["claude-haiku", "claude-sonnet"]}},
        ERRORED: {"interactive": {"candidates": ["claude-haiku", "claude-sonnet"],
                                  "policy": {"stream_failover": "error"}}},
        NO_PREFILL: {"interactive": {"candidates": ["claude-haiku", "gpt-luna"]}},
    }
    # the circuits stay closed: every test's first attempt goes to claude-haiku and is cut
    with front_door(redis_server, tmp_path_factory.mktemp("streams"), routes=routes,
                    config={"health": {"failures_to_open": 1000}}) as door:
        paced = {"tokens_per_s": TOKENS_PER_S, "ttft_ms": 0}  # tool arguments come in pieces over time
        plan = {"rules": [], "latency": {"gpt-*": paced, "claude-sonnet*": paced}}
        request = urllib.request.Request(f"{door.fleet.simulator.url}/_sim/faults", data=json.dumps(plan).encode(),
                                         method="POST", headers={"content-type": "application/json"})
        urllib.request.urlopen(request).close()
        yield door


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def faulted(fault: str) -> str:
    return f"[[sim:{fault}@claude-haiku*]] {PROMPT}"


def expected(door: FrontDoor, job_id: str, text: str) -> tuple[str, str]:
    """What the cut attempts sent (the first one's part opens it; the job keeps what it gave its last attempt to
    continue), and that followed by what the simulator's claude-sonnet writes after it as a prefill."""
    store = door.fleet.client.store
    first, offset = attempt_text(store.redis, store.keys.deltas(job_id), 1)
    held = store.get(job_id).prefill
    assert offset == 0 and first and held.startswith(first), "the first attempt streamed part of its answer"
    model_id = door.fleet.config.models["claude-sonnet"].model_id
    whole = make_reply(SimRequest("anthropic", model_id, "", [Turn("user", text)])).text
    return held, held + continue_text(whole, held)


@dataclass
class Seen:
    fault: str
    sdk: str
    route: str
    job_id: str = ""
    text: str = ""
    model: str = ""
    finished: bool = False
    output_tokens: int = 0
    error: str | None = None


async def _openai(door: FrontDoor, fault: str, route: str = CONTINUED) -> Seen:
    seen = Seen(fault, "openai", route)
    client = openai.AsyncOpenAI(base_url=f"{door.url}/v1", api_key=door.key, max_retries=0)
    parts: list[str] = []
    try:
        async with client.chat.completions.with_streaming_response.create(
            model=route, messages=user(faulted(fault)), stream=True, stream_options={"include_usage": True}
        ) as response:
            seen.job_id = response.headers[JOB_ID_HEADER]
            async for chunk in await response.parse():
                for choice in chunk.choices:
                    parts.append(choice.delta.content or "")
                    if choice.finish_reason == "stop":
                        seen.finished, seen.model = True, chunk.model
                if chunk.usage is not None:
                    seen.output_tokens = chunk.usage.completion_tokens
    except openai.APIError as err:
        seen.error = str(err)
    finally:
        await client.close()
    seen.text = "".join(parts)
    return seen


async def _anthropic(door: FrontDoor, fault: str, route: str = CONTINUED) -> Seen:
    seen = Seen(fault, "anthropic", route)
    client = anthropic.AsyncAnthropic(base_url=door.url, api_key=door.key, max_retries=0)
    parts: list[str] = []
    try:
        async with client.messages.stream(model=route, max_tokens=300, messages=user(faulted(fault))) as stream:
            seen.job_id = stream.response.headers[JOB_ID_HEADER]
            async for text in stream.text_stream:
                parts.append(text)
            final = await stream.get_final_message()
            seen.finished = final.stop_reason == "end_turn"
            seen.output_tokens = final.usage.output_tokens
    except anthropic.APIError as err:
        seen.error = str(err)
    finally:
        await client.close()
    seen.text = "".join(parts)
    return seen


def test_a_cut_stream_continues_on_the_next_model_with_exactly_the_rest(door: FrontDoor) -> None:
    """Every mid-stream fault on the first model, through both async SDKs at once: the caller's text is the cut
    attempt's part, then the simulator's continuation of it by the next model; the job's output is the same
    text, the answering model is reported, and the usage covers both attempts."""

    async def run() -> list[Seen]:
        return list(await asyncio.gather(*(make(door, fault) for fault in MID_STREAM_FAULTS
                                           for make in (_openai, _anthropic))))

    for seen in asyncio.run(run()):
        assert seen.error is None and seen.finished, seen
        result = door.fleet.client.result(seen.job_id, timeout_s=30)
        sent, whole = expected(door, seen.job_id, faulted(seen.fault))
        assert seen.text == whole == result.output, seen  # the part, then exactly the rest: no replay
        assert len(sent) < len(whole) and whole.count("log shows no error") == 1, seen
        assert result.model == "claude-sonnet", seen
        if seen.sdk == "openai":
            assert seen.model == "claude-sonnet", seen
        assert seen.output_tokens > result.usage["output_tokens"], seen  # the cut attempt's part is counted
        decisions = [h for h in result.attempts if h.get("type") == "decision"]
        assert any("continues the streamed answer" in d["reason"] for d in decisions), result.attempts


def test_the_sync_sdks_and_a_whole_answer_see_the_continued_text(door: FrontDoor) -> None:
    chunks = list(door.openai().chat.completions.create(model=CONTINUED, messages=user(faulted("midstream_error")),
                                                        stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    job_id = chunks[0].id.removeprefix("chatcmpl-")
    assert text == expected(door, job_id, faulted("midstream_error"))[1]
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].model == "claude-sonnet"

    with door.anthropic().messages.stream(model=CONTINUED, max_tokens=300,
                                          messages=user(faulted("cut"))) as stream:
        job_id = stream.response.headers[JOB_ID_HEADER]
        text = "".join(stream.text_stream)
    assert text == expected(door, job_id, faulted("cut"))[1]

    raw = door.openai().chat.completions.with_raw_response.create(model=CONTINUED,
                                                                  messages=user(faulted("midstream_error")))
    completion = raw.parse()
    job_id = raw.headers[JOB_ID_HEADER]
    assert completion.choices[0].message.content == expected(door, job_id, faulted("midstream_error"))[1]
    result = door.fleet.client.result(job_id, timeout_s=30)
    assert completion.usage is not None and completion.usage.completion_tokens > result.usage["output_tokens"]


def test_a_route_that_says_error_or_a_next_model_without_prefill_ends_the_stream_in_band(door: FrontDoor) -> None:
    async def run() -> list[Seen]:
        return list(await asyncio.gather(*(make(door, "midstream_error", route) for route in (ERRORED, NO_PREFILL)
                                           for make in (_openai, _anthropic))))

    for seen in asyncio.run(run()):
        assert seen.error is not None and "cut" in seen.error and not seen.finished, seen
        assert seen.text and PROMPT[-20:] not in seen.text, seen  # part of an answer, not passed off as whole
        if seen.route == NO_PREFILL:
            assert "cannot continue" in seen.error, seen


def test_a_prefill_is_sent_only_to_models_that_take_one(door: FrontDoor) -> None:
    from toolbag.attempt.request import build_request

    config = door.fleet.config
    job_input = {"messages": [{"role": "user", "content": PROMPT}]}
    for model, prefilled in (("claude-sonnet", True), ("gpt-luna", False), ("gemini-flash", False)):
        request = build_request(config, capability="chat", tier="interactive", model=model, job_input=job_input,
                                prefill="[claude-haiku-5-5] The export")
        assert (request.messages[-1].role == "assistant") is prefilled, model
        if prefilled:
            assert request.messages[-1].text == "[claude-haiku-5-5] The export"
    caller_prefill = {"messages": [*job_input["messages"], {"role": "assistant", "content": "Sure:"}]}
    request = build_request(config, capability="chat", tier="interactive", model="claude-sonnet",
                            job_input=caller_prefill, prefill=" the export")
    assert [m.role for m in request.messages] == ["user", "assistant"]
    assert request.messages[-1].text == "Sure: the export"


def test_the_simulator_continues_a_prefill_without_repeating_it() -> None:
    answer = "[claude-sonnet-5-5] The export button does nothing"
    assert continue_text(answer, "[claude-sonnet-5-5] The export") == " button does nothing"
    assert continue_text(answer, "[claude-haiku-5-5] The export but") == "ton does nothing"
    assert continue_text(answer, "Something else") == " " + answer


def test_tool_call_arguments_reach_the_caller_as_the_model_generates_them(door: FrontDoor) -> None:
    """The simulator sends the arguments in 16-character pieces, paced; both SDKs' streaming helpers see several
    argument deltas (not one whole at the end) that add up to the call, and the final message holds it."""
    tools: list[Any] = [{"type": "function", "function": {"name": "lookup", "parameters": LOOKUP_SCHEMA}}]
    with door.openai().chat.completions.stream(model="gpt-luna", messages=user(ASK_LOOKUP), tools=tools) as stream:
        pieces = [event.arguments_delta for event in stream if event.type == "tool_calls.function.arguments.delta"]
        completion = stream.get_final_completion()
    (call,) = completion.choices[0].message.tool_calls or []
    assert len(pieces) >= 2 and json.loads("".join(pieces)) == LOOKUP_ARGS, pieces
    assert call.function.name == "lookup" and json.loads(call.function.arguments) == LOOKUP_ARGS
    assert completion.choices[0].finish_reason == "tool_calls"
    with door.http() as http:  # the job API shows the call too
        view = http.get(f"/jobs/{completion.id.removeprefix('chatcmpl-')}").json()
    assert view["tool_calls"] == [{"id": call.id, "name": "lookup", "arguments": LOOKUP_ARGS}], view

    with door.anthropic().messages.stream(model="claude-sonnet", max_tokens=200, messages=user(ASK_LOOKUP),
                                          tools=[{"name": "lookup", "input_schema": LOOKUP_SCHEMA}]) as stream:
        partial = [event.partial_json for event in stream if event.type == "input_json"]
        message = stream.get_final_message()
    (use,) = [b for b in message.content if b.type == "tool_use"]
    assert len(partial) >= 2 and json.loads("".join(partial)) == LOOKUP_ARGS, partial
    assert use.name == "lookup" and use.input == LOOKUP_ARGS and message.stop_reason == "tool_use"


def test_a_key_without_caller_tools_is_refused_tools_in_each_sdks_shape(door: FrontDoor) -> None:
    from typer.testing import CliRunner

    from toolbag.cli.app import app as cli_app

    made = CliRunner().invoke(cli_app, ["keys", "create", "--caller", "no-tools", "--tier", "interactive",
                                        "--no-caller-tools"], env=door.fleet.env)
    assert made.exit_code == 0, made.stderr
    created = json.loads(made.stdout)
    assert created["caller_tools"] is False
    secret = created["key"]
    tools: list[Any] = [{"type": "function", "function": {"name": "lookup", "parameters": LOOKUP_SCHEMA}}]
    with pytest.raises(openai.PermissionDeniedError, match="tools: this key may not offer"):
        door.openai(secret).chat.completions.create(model="gpt-luna", messages=user(ASK_LOOKUP), tools=tools)
    with pytest.raises(anthropic.PermissionDeniedError, match="tools: this key may not offer"):
        door.anthropic(secret).messages.create(model="claude-sonnet", max_tokens=50, messages=user(ASK_LOOKUP),
                                               tools=[{"name": "lookup", "input_schema": LOOKUP_SCHEMA}])
    with door.http(secret) as http:
        job_input = {"messages": user(PROMPT), "tool_specs": [{"name": "lookup", "parameters": LOOKUP_SCHEMA}]}
        refused = http.post("/jobs", json={"capability": "summarize", "input": job_input})
        assert refused.status_code == 403 and "input.tool_specs" in refused.text, refused.text
        batch = http.post("/jobs:batch", json={"jobs": [{"capability": "summarize", "input": PROMPT},
                                                        {"capability": "summarize", "input": job_input}]})
        assert batch.status_code == 403 and "jobs[1].input.tool_specs" in batch.text, batch.text
    answer = door.openai(secret).chat.completions.create(model="gpt-luna", messages=user(PROMPT))
    assert answer.choices[0].message.content  # the key works; only tools of its own are refused
    assert door.openai().chat.completions.create(model="gpt-luna", messages=user(ASK_LOOKUP),
                                                 tools=tools).choices[0].finish_reason == "tool_calls"
