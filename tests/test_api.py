"""The HTTP front door on a real fleet: the compatible endpoints with the real ``openai`` and ``anthropic`` SDKs as
clients (every simulator fault mid-stream), the native job API, keys (tiers, rpm, rotation, replicas) and
overload. One fleet for all of it: starting one costs more than most of these tests."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx2 as httpx
import openai
import pytest
from prometheus_client import REGISTRY
from typer.testing import CliRunner, Result

from tests.api_door import FrontDoor, front_door, replica
from tests.fleet import REPO, free_port, terminate, wait_http
from toolbag.api.app import JOB_ID_HEADER, TIER_HEADER
from toolbag.api.openapi import openapi_document
from toolbag.api.stream import Failed, JobFeed, Relayed, Text, relay
from toolbag.cli.app import app as cli_app
from toolbag.jobs import JobResult, JobStatus

CUT_AFTER_TEXT = "refuse-me-midway"
REFUSED_UPFRONT = "refuse-me-upfront"
PROMPT = "The export button does nothing when I click it."
QUEUE_DEPTH = 2  # the batch tier's max_queue_depth in this fleet
STUCK_MODEL = "local-llama"  # no worker serves its provider here: its jobs wait in the queue


@pytest.fixture(scope="module")
def door(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FrontDoor]:
    with front_door(redis_server, tmp_path_factory.mktemp("api"), providers=("anthropic", "openai", "gemini"),
                    tiers={"batch": {"stream": False, "max_queue_depth": QUEUE_DEPTH}}) as door:
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


def test_openai_responses_whole_streamed_and_cut(door: FrontDoor) -> None:
    raw = door.openai().responses.with_raw_response.create(model="summarize", input=PROMPT, instructions="Be brief.",
                                                           max_output_tokens=120)
    response = raw.parse()
    job_id = raw.headers[JOB_ID_HEADER]
    assert response.output_text == door.output(job_id) and response.model == "claude-haiku"
    assert response.usage is not None and response.usage.output_tokens > 0
    sent = json.loads(door.fleet.client.store.get(job_id).input)
    assert sent["system"] == "Be brief." and sent["max_output_tokens"] == 120

    async def streamed() -> tuple[str, str, str]:
        client = openai.AsyncOpenAI(base_url=f"{door.url}/v1", api_key=door.key, max_retries=0)
        async with client.responses.stream(model="summarize", input=[{"role": "user", "content": PROMPT}]) as stream:
            text = "".join([e.delta async for e in stream if e.type == "response.output_text.delta"])
            final = await stream.get_final_response()
        await client.close()
        return text, final.output_text, final.id

    text, final_text, response_id = asyncio.run(streamed())
    assert text and text == final_text == door.output(response_id.removeprefix("resp_"))

    received: list[str] = []
    with pytest.raises(openai.APIError, match="cut"):
        for event in door.openai().responses.create(model="summarize", input=CUT_AFTER_TEXT, stream=True):
            assert event.type != "response.completed"
            if event.type == "response.output_text.delta":
                received.append(event.delta)
    assert "".join(received)
    with pytest.raises(openai.BadRequestError, match="tools"):
        door.openai().responses.create(model="summarize", input=PROMPT,
                                       tools=[{"type": "function", "name": "f", "parameters": {}}])


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


async def _responses_stream(door: FrontDoor, fault: str) -> Streamed:
    seen = Streamed(fault, "openai-responses")
    client = openai.AsyncOpenAI(base_url=f"{door.url}/v1", api_key=door.key, max_retries=0)
    parts: list[str] = []
    try:
        async with client.responses.with_streaming_response.create(
            model="summarize", input=f"[[sim:{fault}@claude-*]] {PROMPT}", stream=True
        ) as response:
            seen.job_id = response.headers[JOB_ID_HEADER]
            async for event in await response.parse():
                if event.type == "response.output_text.delta":
                    parts.append(event.delta)
                elif event.type == "response.completed":
                    seen.finished = True
                    seen.models = frozenset({event.response.model})
                    seen.usage_tokens = event.response.usage.output_tokens if event.response.usage else 0
    except openai.APIError as err:
        seen.error = str(err)
    finally:
        await client.close()
    seen.text = "".join(parts)
    return seen


def test_no_cut_stream_is_ever_presented_as_complete(door: FrontDoor) -> None:
    """Every simulator fault on the first model, mid-stream and before it, through the async SDKs at once (chat
    completions, responses, messages): a stream either ends complete with exactly the recorded answer, the model
    that gave it and its usage, or ends with an error the SDK raises and no completion marker; a failure before
    any text is one clean stream."""

    async def run() -> list[Streamed]:
        calls = [make(door, fault) for fault in (*STREAM_FAULTS, *CONNECTION_FAULTS)
                 for make in (_openai_stream, _anthropic_stream, _responses_stream)]
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
    assert cut >= 6 and clean_reroute >= 6, outcomes


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

    p = f"relay{uuid.uuid4().hex[:6]}:"  # isolated by key prefix, on the shared database
    sync = redis.Redis.from_url(f"{redis_server}/0")
    sync.hset(f"{p}job:j1", "status", "running")
    sync.xadd(f"{p}deltas:j1", {"attempt": "1", "model": "m", "kind": "text", "text": "partial"})
    cancelled: list[bool] = []

    async def never() -> JobResult:
        raise AssertionError("no result is read")

    async def cancel() -> bool:
        cancelled.append(True)
        return True

    async def collect(client: aioredis.Redis, timeout_s: float, stall_s: float | None) -> list[Relayed]:
        feed = JobFeed(client, f"{p}deltas:j1", f"{p}job:j1", f"{p}notify:j1", never, cancel)
        events = [event async for event in relay(feed, timeout_s, stall_s=stall_s)]
        await client.aclose()
        return events

    stalled = asyncio.run(collect(aioredis.Redis.from_url(f"{redis_server}/0"), 30, 0.3))
    assert stalled[0] == Text("partial", "m") and isinstance(stalled[-1], Failed)
    assert stalled[-1].outcome == "stalled" and cancelled == [True]
    late = asyncio.run(collect(aioredis.Redis.from_url(f"{redis_server}/0"), 0.3, None))
    assert isinstance(late[-1], Failed) and late[-1].outcome == "timeout"
    lost = asyncio.run(collect(aioredis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0)), 5, None))
    assert lost == [Failed("the front door lost the job's stream (ConnectionError)", "failed")]
    sync.delete(f"{p}job:j1", f"{p}deltas:j1")


# -- the native job API, keys and overload -----------------------------------------------------------


def sse_events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    events, name = [], ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
    return events


def fresh_minute(needed_s: float = 10.0) -> None:
    """Wait for the next wall-clock minute when fewer than ``needed_s`` seconds are left in this one: a key's
    rpm is counted per minute, and a test of it must not straddle two."""
    left_s = 60 - time.time() % 60
    if left_s < needed_s:
        time.sleep(left_s + 0.05)


def overloads(tier: str, reason: str) -> float:
    return REGISTRY.get_sample_value("toolbag_api_overload_total", {"tier": tier, "reason": reason}) or 0.0


def job_keys(door: FrontDoor) -> int:
    store = door.fleet.client.store
    return sum(1 for _ in store.redis.scan_iter(match=f"{store.keys.prefix}job:*", count=1000))


def test_submit_read_and_follow_a_job(door: FrontDoor) -> None:
    with door.http() as http:
        created = http.post("/jobs", json={"capability": "summarize", "input": {"text": PROMPT},
                                           "tier": "interactive", "idempotency_key": "native-1"})
        assert created.status_code == 201, created.text
        job_id = created.json()["job_id"]
        assert created.headers[JOB_ID_HEADER] == job_id and created.json()["created"] is True
        with http.stream("GET", f"/jobs/{job_id}/events") as response:
            assert response.status_code == 200
            events = sse_events(response)
        view = http.get(f"/jobs/{job_id}").json()
        again = http.post("/jobs", json={"capability": "summarize", "input": {"text": PROMPT},
                                         "tier": "interactive", "idempotency_key": "native-1"})
    assert view["status"] == "succeeded" and view["caller"] == "sdk-tests" and view["output"]
    assert [a["type"] for a in view["attempts"]][0] == "attempt" and view["usage"]["output_tokens"] > 0
    text = "".join(data["text"] for name, data in events if name == "text")
    assert text == view["output"]
    assert [name for name, _ in events][-2:] == ["attempt_end", "end"]
    assert events[-1][1]["status"] == "succeeded" and events[-1][1]["output"] == view["output"]
    assert again.status_code == 200 and again.json() == {"job_id": job_id, "status": "succeeded", "created": False}


def test_bad_job_bodies_are_422_naming_the_field_and_write_nothing(door: FrontDoor) -> None:
    before = job_keys(door)
    cases = [
        ({"capability": "summarize"}, "input"),
        ({"capability": "summarize", "input": "x", "tier": "urgent"}, "tier"),
        ({"capability": "summarize", "input": "x", "colour": "red"}, "colour"),
        ({"capability": "no-such", "input": "x"}, "capability"),
        ({"capability": "summarize", "input": "x", "deadline_s": 0.1}, "deadline_s"),
    ]
    with door.http() as http:
        for body, field in cases:
            answer = http.post("/jobs", json=body)
            assert answer.status_code == 422, (body, answer.text)
            error = answer.json()["error"]
            assert error["message"].startswith(field) and "\n" not in error["message"], error
        malformed = http.post("/jobs", content=b"{nope", headers={"content-type": "application/json"})
        assert malformed.status_code == 400 and "not valid JSON" in malformed.json()["error"]["message"]
        batch = http.post("/jobs:batch", json={"jobs": [{"capability": "summarize", "input": "a"},
                                                        {"capability": "summarize", "input": "b", "tier": "x"}]})
        assert batch.status_code == 422 and batch.json()["error"]["message"].startswith("jobs[1].tier")
        batch = http.post("/jobs:batch", json={"jobs": [{"capability": "summarize", "input": "a"},
                                                        {"capability": "nope", "input": "b"}]})
        assert batch.status_code == 422 and batch.json()["error"]["message"].startswith("jobs[1].capability")
        assert http.get("/jobs/0123abcd").status_code == 404
        assert http.get("/jobs/not-an-id!").status_code == 404
    assert job_keys(door) == before


def test_batch_submits_all_and_cancel_stops_a_waiting_job(door: FrontDoor) -> None:
    with door.http() as http:
        batch = http.post("/jobs:batch", json={"jobs": [{"capability": "summarize", "input": {"text": t}}
                                                        for t in ("one", "two", "three")]})
        assert batch.status_code == 201, batch.text
        ids = [j["job_id"] for j in batch.json()["jobs"]]
        results = [door.fleet.client.result(job_id, 30) for job_id in ids]
        assert all(r.ok for r in results) and len(set(ids)) == 3
        stuck = door.fleet.client.submit("chat", input={"text": "waits"}, candidates=(STUCK_MODEL,),
                                         caller="sdk-tests", tier="standard")
        cancelled = http.delete(f"/jobs/{stuck.id}")
        assert cancelled.json() == {"job_id": stuck.id, "cancelled": True, "status": "cancelled"}
        assert http.delete(f"/jobs/{stuck.id}").json()["cancelled"] is False


def test_a_key_sees_only_its_callers_jobs(door: FrontDoor) -> None:
    with door.http() as http:
        job_id = http.post("/jobs", json={"capability": "summarize", "input": "mine"}).json()["job_id"]
    with door.http(door.new_key("someone-else")) as other:
        assert other.get(f"/jobs/{job_id}").status_code == 404
        assert other.delete(f"/jobs/{job_id}").status_code == 404
    with door.http(door.new_key("ops", inbox=True)) as ops:
        assert ops.get(f"/jobs/{job_id}").json()["caller"] == "sdk-tests"


def test_the_escalation_inbox(door: FrontDoor) -> None:
    escalate = {"capability": "summarize", "input": {"text": "[[sim:refusal]] nobody will"}, "tier": "interactive"}
    with door.http() as http:
        first = http.post("/jobs", json=escalate).json()["job_id"]
        second = http.post("/jobs", json=escalate).json()["job_id"]
        third = http.post("/jobs", json=escalate).json()["job_id"]
        for job_id in (first, second, third):
            assert door.fleet.client.result(job_id, 30).status is JobStatus.ESCALATED
        assert http.get("/escalations").status_code == 403
    with door.http(door.new_key("ops", inbox=True)) as ops:
        listed = {e["job_id"] for e in ops.get("/escalations").json()["escalations"]}
        assert {first, second, third} <= listed
        shown = ops.get(f"/escalations/{first}").json()
        assert shown["reason"] and shown["input"] == escalate["input"] and shown["attempts"]
        assert ops.post(f"/escalations/{first}/resolve", json={"output": "by hand"}).status_code == 200
        assert ops.post(f"/escalations/{second}/reject", json={"reason": "spam"}).status_code == 200
        retried = ops.post(f"/escalations/{third}/retry", json={"model": "gpt-luna"})
        assert retried.json() == {"job_id": third, "action": "retry", "model": "gpt-luna"}
        assert ops.post(f"/escalations/{first}/resolve", json={"output": "x"}).status_code == 409
        assert ops.post(f"/escalations/{second}/retry", json={"model": "nope"}).status_code in (409, 422)
        assert ops.post(f"/escalations/{second}/reject", json={}).json()["error"]["message"].startswith("reason")
    resolved = door.fleet.client.result(first, 5)
    assert resolved.ok and resolved.output == "by hand" and resolved.model == "ops"
    assert door.fleet.client.result(second, 5).status is JobStatus.FAILED


def test_openapi_is_served_and_equals_the_committed_document(door: FrontDoor) -> None:
    committed = json.loads((REPO / "docs" / "openapi.json").read_text())
    with door.http() as http:
        served = http.get("/openapi.json").json()
    assert served == committed == json.loads(json.dumps(openapi_document()))
    assert {"/jobs", "/jobs:batch", "/jobs/{job_id}", "/jobs/{job_id}/events", "/escalations"} <= set(served["paths"])


def test_a_keys_tiers_are_enforced_in_each_sdks_shape(door: FrontDoor) -> None:
    key = door.new_key("tier-bound", "standard", tiers=("standard",))
    with pytest.raises(openai.PermissionDeniedError, match="interactive"):
        door.openai(key).chat.completions.create(model="summarize", messages=[{"role": "user", "content": PROMPT}],
                                                 extra_headers={"x-toolbag-tier": "interactive"})
    with pytest.raises(anthropic.PermissionDeniedError, match="interactive"):
        door.anthropic(key).messages.create(model="summarize", max_tokens=50,
                                            messages=[{"role": "user", "content": PROMPT}],
                                            extra_headers={"x-toolbag-tier": "interactive"})
    answer = door.openai(key).chat.completions.create(model="summarize",
                                                      messages=[{"role": "user", "content": PROMPT}])
    assert answer.choices[0].message.content


def test_a_keys_rpm_is_fleet_wide_and_says_when_to_retry(door: FrontDoor) -> None:
    key = door.new_key("limited", rpm=2)
    fresh_minute()
    client = door.openai(key)
    for _ in range(2):
        client.models.list()  # listing models is not a job: it does not count
    client.chat.completions.create(model="summarize", messages=[{"role": "user", "content": "one"}])
    with door.http(key) as http:
        assert http.post("/jobs", json={"capability": "summarize", "input": "two"}).status_code == 201
    before = overloads("interactive", "rpm")
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="summarize", messages=[{"role": "user", "content": "three"}])
    assert 1 <= int(raised.value.response.headers["retry-after"]) <= 60
    with pytest.raises(anthropic.RateLimitError):
        door.anthropic(key).messages.create(model="summarize", max_tokens=10,
                                            messages=[{"role": "user", "content": "four"}])
    assert overloads("interactive", "rpm") == before + 2


def test_a_tier_past_its_queue_depth_is_429_and_counted(door: FrontDoor) -> None:
    client = door.openai()
    stuck = [door.fleet.client.submit("chat", input={"text": "waits"}, candidates=(STUCK_MODEL,), tier="batch")
             for _ in range(QUEUE_DEPTH)]
    before = overloads("batch", "queue_depth")
    try:
        with pytest.raises(openai.RateLimitError, match="overloaded") as raised:
            client.chat.completions.create(model="summarize", messages=[{"role": "user", "content": PROMPT}],
                                           extra_headers={"x-toolbag-tier": "batch"})
        assert int(raised.value.response.headers["retry-after"]) >= 1
        with door.http() as http:
            refused = http.post("/jobs", json={"capability": "summarize", "input": "x", "tier": "batch"})
            assert refused.status_code == 429
        assert overloads("batch", "queue_depth") == before + 2
        other_tier = client.chat.completions.create(model="summarize",
                                                    messages=[{"role": "user", "content": PROMPT}])
        assert other_tier.choices[0].message.content
    finally:
        for job in stuck:
            job.cancel()
    answer = client.chat.completions.create(model="summarize", messages=[{"role": "user", "content": PROMPT}],
                                            extra_headers={"x-toolbag-tier": "batch"})
    assert answer.choices[0].message.content


def toolbag(door: FrontDoor, *args: str) -> Result:
    """The ``toolbag`` CLI in this process (its real code; a subprocess per call costs seconds)."""
    return CliRunner().invoke(cli_app, list(args), env=door.fleet.env)


def test_keys_cli_create_rotate_revoke_and_the_secret_is_nowhere(door: FrontDoor, tmp_path: Path) -> None:
    created = toolbag(door, "keys", "create", "--caller", "rotating", "--tiers", "standard,batch", "--rpm", "100")
    assert created.exit_code == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["tiers"] == ["standard", "batch"] and key["rpm"] == 100 and key["tier"] is None
    client = door.openai(key["key"])
    answer = client.chat.completions.with_raw_response.create(
        model="summarize", messages=[{"role": "user", "content": PROMPT}], extra_headers={"x-toolbag-tier": "standard"})
    job_id = answer.headers[JOB_ID_HEADER]
    record = door.fleet.client.store.get(job_id)
    assert record.caller == "rotating"

    rotated = toolbag(door, "keys", "rotate", key["id"])
    assert rotated.exit_code == 0, rotated.stderr
    new = json.loads(rotated.stdout)
    assert new["replaces"] == key["id"] and new["tiers"] == key["tiers"] and new["rpm"] == 100
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    assert door.openai(new["key"]).models.list().data
    listed = toolbag(door, "keys", "list").stdout
    assert new["id"] in listed and key["id"] not in listed and new["key"] not in listed
    assert toolbag(door, "keys", "revoke", new["id"]).exit_code == 0
    with pytest.raises(openai.AuthenticationError):
        door.openai(new["key"]).models.list()

    for bad in (["create", "--caller", "bad caller!"], ["create", "--caller", "x", "--tiers", "gold"],
                ["create", "--caller", "x", "--rpm", "0"],
                ["create", "--caller", "x", "--tier", "interactive", "--tiers", "batch"], ["rotate", "000000000000"],
                ["revoke", "not-an-id"]):
        refused = toolbag(door, "keys", *bad)
        assert refused.exit_code == 2 and refused.stderr.startswith("error: ") and refused.stderr.count("\n") == 1, (
            bad, refused.stderr)

    redis = door.fleet.client.store.redis
    with door.http() as http:
        exposition = http.get("/metrics").text
    for secret in (key["key"], new["key"], door.key):
        body = secret[4:]
        assert body not in exposition
        for name in redis.scan_iter(match=f"{door.fleet.client.store.keys.prefix}*", count=1000):
            kind = redis.type(name)
            dump = (str(redis.hgetall(name)) if kind == b"hash" else str(redis.xrange(name)) if kind == b"stream"
                    else str(redis.lrange(name, 0, -1)) if kind == b"list" else str(redis.get(name))
                    if kind == b"string" else "")
            assert body not in dump, name
    for log in door.fleet.tmp.glob("**/*.log"):
        assert all(secret[4:] not in log.read_text(errors="replace") for secret in (key["key"], new["key"]))


def test_two_replicas_share_revocation_and_the_rpm_count(door: FrontDoor) -> None:
    store = door.key_store
    key, secret = store.create("two-replicas", "interactive", rpm=2)
    fresh_minute()
    with replica(door.fleet) as other_url:
        here = door.openai(secret)
        there = openai.OpenAI(base_url=f"{other_url}/v1", api_key=secret, max_retries=0)
        ask = [{"role": "user", "content": PROMPT}]
        here.chat.completions.create(model="summarize", messages=ask)
        there.chat.completions.create(model="summarize", messages=ask)
        with pytest.raises(openai.RateLimitError):
            there.chat.completions.create(model="summarize", messages=ask)  # the third in the minute, anywhere
        with pytest.raises(openai.RateLimitError):
            here.chat.completions.create(model="summarize", messages=ask)
        assert there.models.list().data
        store.revoke(key.id)
        for client in (here, there):
            with pytest.raises(openai.AuthenticationError):
                client.models.list()


# -- the caller's own tools: offered to the model, its calls handed back, never run by toolbag ----------------

WEATHER_ARGS = {"city": "Paris"}
ASK_WEATHER = f"What is the weather? [[sim:tool=get_weather {json.dumps(WEATHER_ARGS)}]]"
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
OPENAI_TOOLS: list[Any] = [{"type": "function", "function": {"name": "get_weather", "description": "Weather now.",
                                                           "parameters": WEATHER_SCHEMA}}]
ANTHROPIC_TOOLS: list[Any] = [{"name": "get_weather", "description": "Weather now.", "input_schema": WEATHER_SCHEMA}]


def test_openai_tool_calls_whole_streamed_and_answered_with_a_tool_result(door: FrontDoor) -> None:
    client = door.openai()
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-luna", messages=user(ASK_WEATHER), tools=OPENAI_TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    choice = raw.parse().choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == WEATHER_ARGS
    sent = json.loads(door.fleet.client.store.get(raw.headers[JOB_ID_HEADER]).input)
    assert sent["tool_specs"] == [{"name": "get_weather", "description": "Weather now.", "parameters": WEATHER_SCHEMA}]
    assert sent["tool_choice"] == {"mode": "tool", "name": "get_weather"}

    chunks = list(client.chat.completions.create(model="gpt-luna", messages=user(ASK_WEATHER), tools=OPENAI_TOOLS,
                                                 stream=True))
    streamed: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in chunk.choices[0].delta.tool_calls or () if chunk.choices else ():
            slot = streamed.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            slot["id"] += delta.id or ""
            slot["name"] += delta.function.name or "" if delta.function else ""
            slot["arguments"] += delta.function.arguments or "" if delta.function else ""
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert list(streamed) == [0] and streamed[0]["name"] == "get_weather" and streamed[0]["id"]
    assert json.loads(streamed[0]["arguments"]) == WEATHER_ARGS

    follow_up: list[Any] = [*user(ASK_WEATHER), choice.message.model_dump(exclude_none=True),
                            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}]
    raw = client.chat.completions.with_raw_response.create(model="gpt-luna", messages=follow_up, tools=OPENAI_TOOLS)
    answer = raw.parse().choices[0]
    assert answer.finish_reason == "stop" and not answer.message.tool_calls
    assert "tool said: sunny, 21 C" in (answer.message.content or "")
    turns = json.loads(door.fleet.client.store.get(raw.headers[JOB_ID_HEADER]).input)["messages"]
    assert turns[1]["tool_calls"] == [{"id": call.id, "name": "get_weather", "arguments": WEATHER_ARGS}]
    assert turns[2]["tool_results"] == [{"call_id": call.id, "name": "get_weather", "content": "sunny, 21 C"}]


def test_anthropic_tool_use_whole_streamed_and_answered_with_a_tool_result(door: FrontDoor) -> None:
    client = door.anthropic()
    message = client.messages.create(model="claude-haiku", max_tokens=200, messages=user(ASK_WEATHER),
                                     tools=ANTHROPIC_TOOLS, tool_choice={"type": "any"})
    assert message.stop_reason == "tool_use"
    (use,) = [b for b in message.content if b.type == "tool_use"]
    assert use.name == "get_weather" and use.input == WEATHER_ARGS and use.id

    with client.messages.stream(model="claude-haiku", max_tokens=200, messages=user(ASK_WEATHER),
                                tools=ANTHROPIC_TOOLS) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert "input_json" in kinds and kinds[-1] == "message_stop"
    assert final.stop_reason == "tool_use"
    (streamed,) = [b for b in final.content if b.type == "tool_use"]
    assert streamed.name == "get_weather" and streamed.input == WEATHER_ARGS

    said = {"role": "assistant", "content": [b.model_dump() for b in message.content]}
    follow_up: list[Any] = [*user(ASK_WEATHER), said,
                            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                                          "content": "sunny, 21 C"}]}]
    answer = client.messages.create(model="claude-haiku", max_tokens=200, messages=follow_up, tools=ANTHROPIC_TOOLS)
    assert answer.stop_reason == "end_turn"
    assert "tool said: sunny, 21 C" in "".join(b.text for b in answer.content if b.type == "text")


def test_bad_tools_are_400_naming_the_field(door: FrontDoor) -> None:
    bad_openai: list[tuple[dict[str, Any], str]] = [
        ({"tools": [{"type": "function", "function": {"name": "no spaces", "parameters": WEATHER_SCHEMA}}]},
         r"tools\[0\]\.function\.name"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]},
         r"tools\[0\]\.function\.parameters"),
        ({"tools": OPENAI_TOOLS, "tool_choice": {"type": "function", "function": {"name": "other"}}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
    ]
    for extra, field in bad_openai:
        with pytest.raises(openai.BadRequestError, match=f"^Error code: 400 .*{field}: "):
            door.openai().chat.completions.create(model="gpt-luna", messages=user(PROMPT), **extra)
    with pytest.raises(openai.BadRequestError, match=r"messages\[1\]\.tool_call_id"):
        door.openai().chat.completions.create(
            model="gpt-luna", messages=[*user(PROMPT), {"role": "tool", "tool_call_id": "call_x", "content": "1"}])
    bad_anthropic: list[tuple[dict[str, Any], str]] = [
        ({"tools": [{"name": "get_weather"}]}, r"tools\[0\]\.input_schema"),
        ({"tools": [{**ANTHROPIC_TOOLS[0], "name": "x" * 65}]}, r"tools\[0\]\.name"),
        ({"tools": ANTHROPIC_TOOLS, "tool_choice": {"type": "tool"}}, r"tool_choice\.name"),
    ]
    for extra, field in bad_anthropic:
        with pytest.raises(anthropic.BadRequestError, match=field):
            door.anthropic().messages.create(model="claude-haiku", max_tokens=10, messages=user(PROMPT), **extra)
    skills = [m.id for m in door.openai().models.list() if m.owned_by == "toolbag-skill"]
    with pytest.raises(openai.BadRequestError, match="^Error code: 400 .*tools: .* is a skill"):
        door.openai().chat.completions.create(model=skills[0], messages=user(PROMPT), tools=OPENAI_TOOLS)
    with pytest.raises(anthropic.BadRequestError, match=r"messages\[0\]\.content\[0\]\.tool_use_id"):
        door.anthropic().messages.create(model="claude-haiku", max_tokens=10, messages=[
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "1"}]}])
