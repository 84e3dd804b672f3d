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

import anthropic
import openai
import pytest

from tests.api_door import FrontDoor, front_door
from tests.fleet import REPO, free_port, terminate, wait_http
from toolbag.api.app import JOB_ID_HEADER, TIER_HEADER

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


def test_keys_cli_create_list_revoke_and_a_revoked_key_fails_next(door: FrontDoor) -> None:
    def toolbag(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "toolbag.cli", *args], env=door.fleet.env, cwd=REPO,
                              capture_output=True, text=True, timeout=60)

    created = toolbag("keys", "create", "--caller", "cli-made", "--tier", "standard")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    listed = toolbag("keys", "list")
    assert key["id"] in listed.stdout and key["key"] not in listed.stdout
    client = door.openai(key["key"])
    assert client.models.list().data
    assert toolbag("keys", "revoke", key["id"]).returncode == 0
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    assert toolbag("keys", "create", "--caller", "bad caller!").returncode == 2


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
