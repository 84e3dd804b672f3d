"""The HTTP front door with the real ``openai`` and ``anthropic`` SDKs as clients, on a real fleet."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import anthropic
import openai
import pytest
from prometheus_client import REGISTRY

from tests.api_door import FrontDoor, front_door
from tests.fleet import REPO, free_port, terminate, wait_http
from toolbag.api.app import JOB_ID_HEADER, TIER_HEADER
from toolbag.api.stream import Failed, JobFeed, Relayed, Text, relay
from toolbag.jobs import JobResult

CUT_AFTER_TEXT = "refuse-me-midway"
REFUSED_UPFRONT = "refuse-me-upfront"
PROMPT = "The export button does nothing when I click it."


@pytest.fixture(scope="module")
def door(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FrontDoor]:
    with front_door(redis_server, tmp_path_factory.mktemp("api"), tiers={"batch": {"stream": False}}) as door:
        door.faults([{"model": "claude-*", "fault": "midstream_refusal", "match": CUT_AFTER_TEXT},
                     {"model": "claude-*", "fault": "refusal", "match": REFUSED_UPFRONT}])
        yield door


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_models_lists_capabilities_skills_and_configured_models(door: FrontDoor) -> None:
    ids = {m.id for m in door.openai().models.list()}
    assert {"summarize", "chat", "claude-haiku", "gpt-luna"} <= ids


def test_openai_chat_completion(door: FrontDoor) -> None:
    raw = door.openai().chat.completions.with_raw_response.create(model="summarize", messages=user(PROMPT))
    completion = raw.parse()
    job_id = raw.headers[JOB_ID_HEADER]
    assert completion.choices[0].message.content == door.output(job_id)
    assert completion.model == "claude-haiku"
    assert completion.usage is not None and completion.usage.completion_tokens > 0


def test_openai_stream_with_usage(door: FrontDoor) -> None:
    with door.openai().chat.completions.with_streaming_response.create(
        model="summarize", messages=user(PROMPT), stream=True, stream_options={"include_usage": True}
    ) as response:
        job_id = response.headers[JOB_ID_HEADER]
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and text == door.output(job_id)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_openai_async_stream(door: FrontDoor) -> None:
    async def run() -> str:
        client = openai.AsyncOpenAI(base_url=f"{door.url}/v1", api_key=door.key, max_retries=0)
        stream = await client.chat.completions.create(model="gpt-luna", messages=user(PROMPT), stream=True)
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        await client.close()
        return "".join(parts)

    assert asyncio.run(run())


def test_anthropic_message(door: FrontDoor) -> None:
    raw = door.anthropic().messages.with_raw_response.create(model="summarize", max_tokens=200,
                                                             messages=user(PROMPT))
    message = raw.parse()
    text = "".join(block.text for block in message.content if block.type == "text")
    assert text == door.output(raw.headers[JOB_ID_HEADER])
    assert message.usage.output_tokens > 0


def test_anthropic_stream_helper(door: FrontDoor) -> None:
    with door.anthropic().messages.stream(model="summarize", max_tokens=200,
                                          messages=user(PROMPT)) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
        job_id = stream.response.headers[JOB_ID_HEADER]
    assert text and text == door.output(job_id)
    assert final.usage.output_tokens > 0 and final.stop_reason == "end_turn"


def test_anthropic_async(door: FrontDoor) -> None:
    async def run() -> tuple[str, str]:
        client = anthropic.AsyncAnthropic(base_url=door.url, api_key=door.key, max_retries=0)
        message = await client.messages.create(model="summarize", max_tokens=200,
                                               messages=user(PROMPT))
        async with client.messages.stream(model="summarize", max_tokens=200,
                                          messages=user(PROMPT)) as stream:
            streamed = "".join([t async for t in stream.text_stream])
        await client.close()
        return "".join(b.text for b in message.content if b.type == "text"), streamed

    whole, streamed = asyncio.run(run())
    assert whole and whole == streamed


def test_a_refusal_before_any_text_is_rerouted_into_one_clean_stream(door: FrontDoor) -> None:
    stream = door.openai().chat.completions.create(model="summarize", messages=user(REFUSED_UPFRONT), stream=True)
    chunks = list(stream)
    assert {c.model for c in chunks} == {"gpt-luna"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_a_refusal_after_text_ends_the_stream_with_an_error_the_sdks_raise(door: FrontDoor) -> None:
    received: list[str] = []
    with pytest.raises(openai.APIError, match="cut"):
        for chunk in door.openai().chat.completions.create(model="summarize", messages=user(CUT_AFTER_TEXT),
                                                           stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received)  # part of an answer arrived, and was not passed off as complete

    with pytest.raises(anthropic.APIError, match="cut"), door.anthropic().messages.stream(
        model="summarize", max_tokens=200, messages=user(CUT_AFTER_TEXT)
    ) as stream:
        "".join(stream.text_stream)


def test_bad_keys_are_authentication_errors(door: FrontDoor) -> None:
    with pytest.raises(openai.AuthenticationError):
        door.openai("tbk-not-a-key").chat.completions.create(model="summarize", messages=user(PROMPT))
    with pytest.raises(anthropic.AuthenticationError):
        door.anthropic("nope").messages.create(model="summarize", max_tokens=10,
                                               messages=user(PROMPT))


def test_unknown_model_bad_body_and_oversized_body(door: FrontDoor) -> None:
    with pytest.raises(openai.NotFoundError, match="no-such-model"):
        door.openai().chat.completions.create(model="no-such-model", messages=user(PROMPT))
    with pytest.raises(anthropic.NotFoundError):
        door.anthropic().messages.create(model="no-such-model", max_tokens=10,
                                         messages=user(PROMPT))
    with pytest.raises(openai.BadRequestError, match=r"messages\[0\]\.role"):
        door.openai().chat.completions.create(model="summarize",
                                              messages=[{"role": "wizard", "content": "hi"}])
    status, body = post(door, "/v1/messages", b"x" * (door.fleet.config.fleet.max_input_bytes + 70_000))
    assert status == 413 and body["error"]["type"] == "request_too_large"
    status, body = post(door, "/v1/chat/completions", b"{not json")
    assert status == 400 and body["error"]["type"] == "invalid_request_error"


def post(door: FrontDoor, path: str, data: bytes) -> tuple[int, dict[str, dict[str, str]]]:
    request = urllib.request.Request(f"{door.url}{path}", data=data, method="POST",
                                     headers={"authorization": f"Bearer {door.key}",
                                              "content-type": "application/json"})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def test_the_tier_header_overrides_the_keys_default(door: FrontDoor) -> None:
    raw = door.openai().chat.completions.with_raw_response.create(
        model="extract", messages=user(PROMPT), extra_headers={TIER_HEADER: "standard"})
    assert door.fleet.client.result(raw.headers[JOB_ID_HEADER], timeout_s=30).tier == "standard"
    with pytest.raises(openai.BadRequestError, match=TIER_HEADER):
        door.openai().chat.completions.create(model="extract", messages=user(PROMPT),
                                              extra_headers={TIER_HEADER: "urgent"})


def test_toolbag_api_serves_the_front_door(door: FrontDoor) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "toolbag.cli", "api", "--port", str(port)],
                            env=door.fleet.env, cwd=REPO)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=door.key, max_retries=0)
        answer = client.chat.completions.create(model="summarize", messages=user(PROMPT))
        assert answer.choices[0].message.content
    finally:
        terminate(proc)


def test_a_tier_that_does_not_stream_still_answers_a_stream_request_whole(door: FrontDoor) -> None:
    with door.openai().chat.completions.with_streaming_response.create(
        model="extract", messages=user(PROMPT), stream=True, extra_headers={TIER_HEADER: "batch"}
    ) as response:
        job_id = response.headers[JOB_ID_HEADER]
        started = time.monotonic()
        contents = [c.choices[0].delta.content for c in response.parse() if c.choices and c.choices[0].delta.content]
    assert len(contents) == 1 and contents[0] == door.output(job_id)
    assert time.monotonic() - started < 5


STREAM_FAULTS = ("cut", "malformed", "midstream_error", "midstream_refusal", "stall:30")
CONNECTION_FAULTS = ("reset", "hang:30", "slow_first_token:300")


@dataclass
class Streamed:
    fault: str
    sdk: str
    job_id: str = ""
    text: str = ""
    models: frozenset[str] = frozenset()
    finished: bool = False  # the stream said it was complete (finish_reason stop / message_stop)
    usage_tokens: int = 0
    error: str | None = None


async def _openai_stream(door: FrontDoor, fault: str) -> Streamed:
    seen = Streamed(fault, "openai")
    client = openai.AsyncOpenAI(base_url=f"{door.url}/v1", api_key=door.key, max_retries=0)
    parts: list[str] = []
    models: set[str] = set()
    try:
        async with client.chat.completions.with_streaming_response.create(
            model="summarize", messages=user(f"[[sim:{fault}@claude-*]] {PROMPT}"), stream=True
        ) as response:
            seen.job_id = response.headers[JOB_ID_HEADER]
            async for chunk in await response.parse():
                models.add(chunk.model)
                for choice in chunk.choices:
                    parts.append(choice.delta.content or "")
                    seen.finished = seen.finished or choice.finish_reason == "stop"
                if chunk.usage is not None:
                    seen.usage_tokens = chunk.usage.completion_tokens
    except openai.APIError as err:
        seen.error = str(err)
    finally:
        await client.close()
    seen.text, seen.models = "".join(parts), frozenset(models - {""})
    return seen


async def _anthropic_stream(door: FrontDoor, fault: str) -> Streamed:
    seen = Streamed(fault, "anthropic")
    client = anthropic.AsyncAnthropic(base_url=door.url, api_key=door.key, max_retries=0)
    parts: list[str] = []
    try:
        async with client.messages.stream(model="summarize", max_tokens=200,
                                          messages=user(f"[[sim:{fault}@claude-*]] {PROMPT}")) as stream:
            seen.job_id = stream.response.headers[JOB_ID_HEADER]
            async for event in stream:
                if event.type == "text":
                    parts.append(event.text)
                elif event.type == "message_start":
                    seen.models = frozenset({event.message.model})
                elif event.type == "message_stop":
                    seen.finished = True
            seen.usage_tokens = (await stream.get_final_message()).usage.output_tokens
    except anthropic.APIError as err:
        seen.error = str(err)
    finally:
        await client.close()
    seen.text = "".join(parts)
    return seen


def test_no_cut_stream_is_ever_presented_as_complete(door: FrontDoor) -> None:
    """Every simulator fault on the first model, mid-stream and before it, through both async SDKs at once: a
    stream either ends complete with exactly the recorded answer, the model that gave it and its usage, or ends
    with an error the SDK raises and no completion marker; a failure before any text is one clean stream."""

    async def run() -> list[Streamed]:
        calls = [make(door, fault) for fault in (*STREAM_FAULTS, *CONNECTION_FAULTS)
                 for make in (_openai_stream, _anthropic_stream)]
        return list(await asyncio.gather(*calls))

    outcomes = asyncio.run(run())
    cut = clean_reroute = 0
    for seen in outcomes:
        result = door.fleet.client.result(seen.job_id, timeout_s=60)
        if seen.error is None:
            assert seen.finished, seen
            assert result.ok and seen.text == result.output, seen  # exactly the answer: no replay, no cut
            assert seen.models == {result.model} and seen.usage_tokens > 0, seen
            clean_reroute += result.model != "claude-haiku"
        else:
            assert not seen.finished, seen
            assert "cut" in seen.error or "stream" in seen.error, seen
            cut += bool(seen.text)
    for seen in outcomes:
        if seen.fault.split(":")[0] in ("reset", "hang", "slow_first_token"):
            assert seen.error is None, seen  # nothing had gone out: rerouted (or just slow), one clean stream
    assert cut >= 4 and clean_reroute >= 4, outcomes


def test_a_caller_that_disconnects_mid_stream_leaves_the_job_to_finish_and_nothing_open(door: FrontDoor) -> None:
    opened = REGISTRY.get_sample_value("toolbag_api_open_streams") or 0.0
    with door.openai().chat.completions.with_streaming_response.create(
        model="summarize", messages=user(f"[[sim:slow_first_token:200]] {PROMPT}"), stream=True
    ) as response:
        job_id = response.headers[JOB_ID_HEADER]
        for chunk in response.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                break  # and leave
    result = door.fleet.client.result(job_id, timeout_s=30)
    assert result.ok and result.output
    deadline = time.monotonic() + 5
    while (REGISTRY.get_sample_value("toolbag_api_open_streams") or 0.0) > opened and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (REGISTRY.get_sample_value("toolbag_api_open_streams") or 0.0) == opened
    disconnected = REGISTRY.get_sample_value("toolbag_api_stream_outcomes_total",
                                             {"capability": "summarize", "tier": "interactive",
                                              "outcome": "disconnected"})
    assert disconnected and disconnected >= 1


def test_passthrough_max_tokens_json_schema_and_prefill(door: FrontDoor) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
              "additionalProperties": False}
    raw = door.openai().chat.completions.with_raw_response.create(
        model="gpt-luna", messages=user(PROMPT), max_tokens=77,
        response_format={"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}})
    answer = json.loads(raw.parse().choices[0].message.content or "")
    assert set(answer) == {"answer"}
    job_input = json.loads(door.fleet.client.store.get(raw.headers[JOB_ID_HEADER]).input)
    assert job_input["max_output_tokens"] == 77 and job_input["json_schema"] == schema

    message = door.anthropic().messages.with_raw_response.create(
        model="claude-haiku", max_tokens=60, system="Be brief.",
        messages=[{"role": "user", "content": PROMPT}, {"role": "assistant", "content": "The export"}])
    assert message.parse().content[0].type == "text"
    sent = json.loads(door.fleet.client.store.get(message.headers[JOB_ID_HEADER]).input)
    assert sent["system"] == "Be brief." and sent["messages"][-1] == {"role": "assistant", "content": "The export"}

    with pytest.raises(openai.BadRequestError, match="^Error code: 400 .*tools: "):
        door.openai().chat.completions.create(
            model="summarize", messages=user(PROMPT),
            tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])
    with pytest.raises(anthropic.BadRequestError, match=r"messages\[0\]\.role"):
        door.anthropic().messages.create(model="summarize", max_tokens=10,
                                         messages=[{"role": "assistant", "content": "hi"}])


def test_the_relay_ends_in_band_on_a_stall_a_timeout_or_a_lost_redis(redis_server: str) -> None:
    """The relay alone, on a real Redis: text then silence past the stall budget is ``stalled`` (and the job is
    cancelled), no end within the wait is ``timeout``, a Redis that cannot be read is ``failed``."""
    import redis
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    sync = redis.Redis.from_url(f"{redis_server}/9")
    sync.hset("t:job:j1", "status", "running")
    sync.xadd("t:deltas:j1", {"attempt": "1", "model": "m", "kind": "text", "text": "partial"})
    cancelled: list[bool] = []

    async def never() -> JobResult:
        raise AssertionError("no result is read")

    async def cancel() -> bool:
        cancelled.append(True)
        return True

    async def collect(client: aioredis.Redis, timeout_s: float, stall_s: float | None) -> list[Relayed]:
        feed = JobFeed(client, "t:deltas:j1", "t:job:j1", "t:notify:j1", never, cancel)
        events = [event async for event in relay(feed, timeout_s, stall_s=stall_s)]
        await client.aclose()
        return events

    stalled = asyncio.run(collect(aioredis.Redis.from_url(f"{redis_server}/9"), 30, 0.3))
    assert stalled[0] == Text("partial", "m") and isinstance(stalled[-1], Failed)
    assert stalled[-1].outcome == "stalled" and cancelled == [True]
    late = asyncio.run(collect(aioredis.Redis.from_url(f"{redis_server}/9"), 0.3, None))
    assert isinstance(late[-1], Failed) and late[-1].outcome == "timeout"
    lost = asyncio.run(collect(aioredis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0)), 5, None))
    assert lost == [Failed("the front door lost the job's stream (ConnectionError)", "failed")]
    sync.delete("t:job:j1", "t:deltas:j1")
