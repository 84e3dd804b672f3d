"""The simulator's vendor batch APIs through the official SDKs: Anthropic Message Batches, OpenAI Files +
Batches, Gemini inline batches. Each item is answered as in real time (text, refusal, error); the batch faults
(expired, cancelled, stuck), a client cancel and processing time behave as documented. Processing times are
short (a few hundred milliseconds) and every wait polls with a deadline."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import anthropic
import httpx2
import openai
import pytest
from google import genai
from google.genai import types

from toolbag.simulator.faults import FaultPlan, FaultPlanError
from toolbag.simulator.server import SimulatorServer

T = TypeVar("T")
FAST = {"x-sim-batch-ms": "300"}
WAIT_S = 20.0


def until(fetch: Callable[[], T], done: Callable[[T], bool], timeout_s: float = WAIT_S) -> T:
    """Poll ``fetch`` until ``done`` holds (a deadline, not a speed assertion)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = fetch()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


@pytest.fixture(scope="module")
def claude(sim: SimulatorServer) -> Iterator[anthropic.Anthropic]:
    client = anthropic.Anthropic(api_key="sk-test", base_url=sim.url, max_retries=0, timeout=30.0)
    yield client
    client.close()


@pytest.fixture(scope="module")
def oai(sim: SimulatorServer) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(api_key="sk-test", base_url=sim.url + "/v1", max_retries=0, timeout=30.0)
    yield client
    client.close()


@pytest.fixture(scope="module", params=["v1", "v1beta"])
def gem(request: pytest.FixtureRequest, sim: SimulatorServer) -> genai.Client:
    return genai.Client(api_key="test",
                        http_options=types.HttpOptions(base_url=sim.url, api_version=request.param, timeout=30_000))


# ---------------------------------------------------------------------------------------------- Anthropic


def claude_item(custom_id: str, text: str, model: str = "claude-t") -> dict[str, Any]:
    return {"custom_id": custom_id,
            "params": {"model": model, "max_tokens": 200, "messages": [{"role": "user", "content": text}]}}


def claude_results(claude: anthropic.Anthropic, batch_id: str) -> dict[str, Any]:
    return {r.custom_id: r.result for r in claude.messages.batches.results(batch_id)}


def test_anthropic_batch_answers_each_item_as_real_time(claude: anthropic.Anthropic, sim: SimulatorServer) -> None:
    created = claude.messages.batches.create(requests=[
        claude_item("text", "Summarize the quarterly report"),
        claude_item("refused", "Tell me [[sim:refusal]]"),
        claude_item("overloaded", "Anything [[sim:overloaded]]"),
        claude_item("invalid", "Anything [[sim:bad_request]]"),
    ], extra_headers=FAST)
    assert created.processing_status == "in_progress"
    assert created.request_counts.processing == 4
    assert created.results_url is None
    ended = until(lambda: claude.messages.batches.retrieve(created.id), lambda b: b.processing_status == "ended")
    assert ended.processing_status == "ended"
    assert ended.request_counts.succeeded == 2 and ended.request_counts.errored == 2
    assert ended.request_counts.processing == 0
    assert ended.results_url == f"{sim.url}/v1/messages/batches/{created.id}/results"
    assert ended.ended_at is not None and ended.ended_at >= ended.created_at

    results = claude_results(claude, created.id)
    real_time = claude.messages.create(model="claude-t", max_tokens=200,
                                       messages=[{"role": "user", "content": "Summarize the quarterly report"}])
    text = results["text"]
    assert text.type == "succeeded"
    assert text.message.content == real_time.content
    assert text.message.usage.service_tier == "batch"
    assert results["refused"].type == "succeeded" and results["refused"].message.stop_reason == "refusal"
    assert results["overloaded"].type == "errored"
    assert results["overloaded"].error.error.type == "overloaded_error"
    assert results["invalid"].type == "errored"
    assert results["invalid"].error.error.type == "invalid_request_error"
    assert created.id in [b.id for b in claude.messages.batches.list(limit=100)]


def test_anthropic_cancel_a_batch_that_never_ends(claude: anthropic.Anthropic) -> None:
    created = claude.messages.batches.create(requests=[claude_item("a", "one"), claude_item("b", "two")],
                                             extra_headers={**FAST, "x-sim-batch": "stuck"})
    time.sleep(0.5)  # well past its processing time
    assert claude.messages.batches.retrieve(created.id).processing_status == "in_progress"
    with pytest.raises(anthropic.AnthropicError, match="results_url"):
        claude.messages.batches.results(created.id)
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.batches.delete(created.id)
    canceling = claude.messages.batches.cancel(created.id)
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at is not None
    ended = claude.messages.batches.retrieve(created.id)
    assert ended.processing_status == "ended"
    assert ended.request_counts.canceled == 2
    assert {r.type for r in claude_results(claude, created.id).values()} == {"canceled"}
    assert claude.messages.batches.delete(created.id).type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.batches.retrieve(created.id)


def test_anthropic_expired_and_cancelled_batches(claude: anthropic.Anthropic) -> None:
    items = [claude_item(f"i{n}", f"item {n}") for n in range(4)]
    expired = claude.messages.batches.create(requests=items, extra_headers={**FAST, "x-sim-batch": "expired"})
    cancelled = claude.messages.batches.create(requests=items, extra_headers={**FAST, "x-sim-batch": "cancelled"})
    for batch_id in (expired.id, cancelled.id):
        until(lambda b=batch_id: claude.messages.batches.retrieve(b), lambda b: b.processing_status == "ended")
    # the items done by half the processing time are answered; the rest expire / are canceled
    ended = claude.messages.batches.retrieve(expired.id)
    assert (ended.request_counts.succeeded, ended.request_counts.expired) == (2, 2)
    assert ended.cancel_initiated_at is None
    assert [r.type for _, r in sorted(claude_results(claude, expired.id).items())] == [
        "succeeded", "succeeded", "expired", "expired"]
    ended = claude.messages.batches.retrieve(cancelled.id)
    assert (ended.request_counts.succeeded, ended.request_counts.canceled) == (2, 2)
    assert ended.cancel_initiated_at is not None
    assert {r.type for r in claude_results(claude, cancelled.id).values()} == {"succeeded", "canceled"}


def test_anthropic_plan_sets_batch_time_fault_and_item_faults(claude: anthropic.Anthropic,
                                                              sim: SimulatorServer) -> None:
    sim.set_faults({"batches": {"claude-planned": {"processing_ms": 100, "fault": "expired"}},
                    "rules": [{"model": "claude-planned", "match": "invoice", "fault": "server_error"}]})
    try:
        created = claude.messages.batches.create(requests=[
            claude_item("invoice", "the invoice", "claude-planned"), claude_item("b", "other", "claude-planned")])
        ended = until(lambda: claude.messages.batches.retrieve(created.id), lambda b: b.processing_status == "ended")
    finally:
        sim.clear_faults()
    assert (ended.request_counts.errored, ended.request_counts.expired) == (1, 1)
    result = claude_results(claude, created.id)["invoice"]
    assert result.type == "errored" and result.error.error.type == "api_error"


def test_anthropic_bad_batches_are_native_400s(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="Duplicate custom_id"):
        claude.messages.batches.create(requests=[claude_item("a", "x"), claude_item("a", "y")])
    with pytest.raises(anthropic.BadRequestError, match="x-sim-batch header"):
        claude.messages.batches.create(requests=[claude_item("a", "x")], extra_headers={"x-sim-batch": "lost"})
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.batches.retrieve("msgbatch_missing")


def test_anthropic_async_batch(sim: SimulatorServer) -> None:
    async def run() -> list[str]:
        async with anthropic.AsyncAnthropic(api_key="sk-test", base_url=sim.url, max_retries=0) as client:
            created = await client.messages.batches.create(requests=[claude_item("a", "async text")],
                                                           extra_headers=FAST)
            deadline = time.monotonic() + WAIT_S
            while (await client.messages.batches.retrieve(created.id)).processing_status != "ended":
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            return [r.result.type async for r in await client.messages.batches.results(created.id)]

    assert asyncio.run(run()) == ["succeeded"]


# ---------------------------------------------------------------------------------------------- OpenAI


def openai_input(texts: list[str], url: str = "/v1/chat/completions", model: str = "gpt-t") -> bytes:
    lines = []
    for n, text in enumerate(texts):
        body: dict[str, Any] = ({"model": model, "messages": [{"role": "user", "content": text}]}
                                if url == "/v1/chat/completions" else {"model": model, "input": text})
        lines.append(json.dumps({"custom_id": f"r{n}", "method": "POST", "url": url, "body": body}))
    return ("\n".join(lines) + "\n").encode()


def openai_batch(oai: openai.OpenAI, texts: list[str], headers: dict[str, str] | None = None,
                 url: str = "/v1/chat/completions") -> openai.types.Batch:
    uploaded = oai.files.create(file=("in.jsonl", openai_input(texts, url)), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.bytes > 0
    return oai.batches.create(input_file_id=uploaded.id, endpoint=url,
                              completion_window="24h", metadata={"job": "t"}, extra_headers=headers or FAST)


def lines_of(oai: openai.OpenAI, file_id: str | None) -> dict[str, dict[str, Any]]:
    if file_id is None:
        return {}
    return {line["custom_id"]: line for line in map(json.loads, oai.files.content(file_id).text.splitlines())}


def wait_openai(oai: openai.OpenAI, batch_id: str) -> openai.types.Batch:
    return until(lambda: oai.batches.retrieve(batch_id), lambda b: b.status not in ("validating", "in_progress"))


def test_openai_batch_output_and_error_files(oai: openai.OpenAI) -> None:
    created = openai_batch(oai, ["Summarize the quarterly report", "Say [[sim:refusal]]", "x [[sim:bad_request]]",
                                 "y [[sim:rate_limit]]"])
    assert created.status == "validating" and created.metadata == {"job": "t"}
    done = wait_openai(oai, created.id)
    assert done.status == "completed" and done.completed_at is not None
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (4, 2, 2)
    assert done.usage is not None and done.usage.input_tokens > 0
    output, errors = lines_of(oai, done.output_file_id), lines_of(oai, done.error_file_id)
    assert set(output) == {"r0", "r1"} and set(errors) == {"r2", "r3"}
    real_time = oai.chat.completions.create(model="gpt-t",
                                            messages=[{"role": "user", "content": "Summarize the quarterly report"}])
    first = output["r0"]["response"]
    assert first["status_code"] == 200
    assert first["body"]["choices"][0]["message"]["content"] == real_time.choices[0].message.content
    assert output["r1"]["response"]["body"]["choices"][0]["message"]["refusal"]
    assert errors["r2"]["response"]["status_code"] == 400
    assert errors["r3"]["response"]["status_code"] == 429
    assert errors["r3"]["response"]["body"]["error"]["code"] == "rate_limit_exceeded"
    assert created.id in [b.id for b in oai.batches.list(limit=100)]


def test_openai_responses_endpoint_batch(oai: openai.OpenAI) -> None:
    done = wait_openai(oai, openai_batch(oai, ["hello batch"], url="/v1/responses").id)
    assert done.status == "completed" and done.error_file_id is None
    body = lines_of(oai, done.output_file_id)["r0"]["response"]["body"]
    assert body["object"] == "response" and body["output"][0]["content"][0]["text"] == "[gpt-t] hello batch"


def test_openai_expired_cancelled_and_stuck_batches(oai: openai.OpenAI) -> None:
    texts = ["a", "b", "c", "d"]
    expired = openai_batch(oai, texts, {**FAST, "x-sim-batch": "expired"})
    cancelled = openai_batch(oai, texts, {**FAST, "x-sim-batch": "cancelled"})
    stuck = openai_batch(oai, texts, {**FAST, "x-sim-batch": "stuck"})

    done = wait_openai(oai, expired.id)
    assert done.status == "expired" and done.expired_at is not None
    assert set(lines_of(oai, done.output_file_id)) == {"r0", "r1"}
    expired_lines = lines_of(oai, done.error_file_id)
    assert set(expired_lines) == {"r2", "r3"}
    assert {line["error"]["code"] for line in expired_lines.values()} == {"batch_expired"}

    done = wait_openai(oai, cancelled.id)
    assert done.status == "cancelled" and done.cancelled_at is not None
    assert {line["error"]["code"] for line in lines_of(oai, done.error_file_id).values()} == {"batch_cancelled"}

    time.sleep(0.4)
    assert oai.batches.retrieve(stuck.id).status == "in_progress"
    assert oai.batches.cancel(stuck.id).status == "cancelling"
    done = oai.batches.retrieve(stuck.id)
    assert done.status == "cancelled" and done.output_file_id is None
    assert len(lines_of(oai, done.error_file_id)) == 4
    with pytest.raises(openai.BadRequestError, match="Cannot cancel"):
        oai.batches.cancel(stuck.id)


def test_openai_invalid_input_file_fails_the_batch(oai: openai.OpenAI) -> None:
    good = json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": "gpt-t", "messages": [{"role": "user", "content": "x"}]}})
    content = "\n".join([good, "{not json", good, json.dumps({"custom_id": "b", "method": "GET",
                                                                "url": "/v1/chat/completions", "body": {}})])
    uploaded = oai.files.create(file=("bad.jsonl", content.encode()), purpose="batch")
    batch = oai.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert batch.status == "failed" and batch.errors is not None and batch.errors.data is not None
    assert [(e.line, e.code) for e in batch.errors.data] == [
        (2, "invalid_json_line"), (3, "duplicate_custom_id"), (4, "invalid_method")]
    with pytest.raises(openai.BadRequestError, match="endpoint"):
        oai.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h")
    with pytest.raises(openai.BadRequestError, match="input_file_id"):
        oai.batches.create(input_file_id="file-missing", endpoint="/v1/chat/completions", completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        oai.batches.retrieve("batch_missing")
    with pytest.raises(openai.NotFoundError):
        oai.files.content("file-missing")


def test_openai_list_pages(oai: openai.OpenAI) -> None:
    made = [openai_batch(oai, ["page"]).id for _ in range(3)]
    first = oai.batches.list(limit=2)
    assert [b.id for b in first.data] == made[::-1][:2] and first.has_more
    assert made[0] in [b.id for b in first.iter_pages().__next__().data] + [
        b.id for b in oai.batches.list(limit=2, after=made[1]).data]


def test_openai_async_batch(sim: SimulatorServer) -> None:
    async def run() -> str:
        async with openai.AsyncOpenAI(api_key="sk-test", base_url=sim.url + "/v1", max_retries=0) as client:
            uploaded = await client.files.create(file=("in.jsonl", openai_input(["async"])), purpose="batch")
            batch = await client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                                completion_window="24h", extra_headers=FAST)
            deadline = time.monotonic() + WAIT_S
            while (batch := await client.batches.retrieve(batch.id)).status == "in_progress":
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert batch.output_file_id is not None
            return (await client.files.content(batch.output_file_id)).text

    assert json.loads(asyncio.run(run()))["response"]["body"]["choices"][0]["message"]["content"] == "[gpt-t] async"


# ---------------------------------------------------------------------------------------------- Gemini


def gemini_src(texts: list[str]) -> list[Any]:
    return [{"contents": [{"parts": [{"text": text}], "role": "user"}], "metadata": {"key": f"k{n}"}}
            for n, text in enumerate(texts)]


def gemini_batch(gem: genai.Client, texts: list[str], headers: dict[str, str] | None = None) -> types.BatchJob:
    return gem.batches.create(model="gemini-t", src=gemini_src(texts),
                              config={"display_name": "job", "http_options": {"headers": headers or FAST}})


def wait_gemini(gem: genai.Client, name: str | None) -> types.BatchJob:
    assert name is not None
    return until(lambda: gem.batches.get(name=name), lambda b: b.done)


def test_gemini_inline_batch(gem: genai.Client) -> None:
    created = gemini_batch(gem, ["Summarize the quarterly report", "x [[sim:refusal]]", "y [[sim:server_error]]"])
    assert created.state == types.JobState.JOB_STATE_PENDING
    assert created.name is not None and created.name.startswith("batches/")
    assert created.display_name == "job" and created.model == "models/gemini-t"
    done = wait_gemini(gem, created.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED and done.end_time is not None
    assert done.dest is not None and done.dest.inlined_responses is not None
    text, refused, failed = done.dest.inlined_responses
    real_time = gem.models.generate_content(model="gemini-t", contents="Summarize the quarterly report")
    assert text.response is not None and text.response.text == real_time.text
    assert text.metadata == {"key": "k0"}
    assert refused.response is not None and refused.response.prompt_feedback is not None
    assert refused.response.prompt_feedback.block_reason == types.BlockedReason.SAFETY
    assert failed.response is None and failed.error is not None and failed.error.code == 500
    assert created.name in [b.name for b in gem.batches.list(config={"page_size": 100})]


def test_gemini_expired_cancelled_and_stuck_batches(gem: genai.Client) -> None:
    texts = ["a", "b", "c", "d"]
    expired = gemini_batch(gem, texts, {**FAST, "x-sim-batch": "expired"})
    cancelled = gemini_batch(gem, texts, {**FAST, "x-sim-batch": "cancelled"})
    stuck = gemini_batch(gem, texts, {**FAST, "x-sim-batch": "stuck"})

    done = wait_gemini(gem, expired.name)
    assert done.state == types.JobState.JOB_STATE_EXPIRED
    assert done.dest is not None and done.dest.inlined_responses is not None
    assert [r.error.code if r.error else 200 for r in done.dest.inlined_responses] == [200, 200, 504, 504]

    done = wait_gemini(gem, cancelled.name)
    assert done.state == types.JobState.JOB_STATE_CANCELLED

    assert stuck.name is not None
    time.sleep(0.4)
    assert gem.batches.get(name=stuck.name).state == types.JobState.JOB_STATE_RUNNING
    gem.batches.cancel(name=stuck.name)
    done = gem.batches.get(name=stuck.name)
    assert done.state == types.JobState.JOB_STATE_CANCELLED
    assert done.dest is not None and done.dest.inlined_responses is not None
    assert {r.error.code for r in done.dest.inlined_responses if r.error} == {499}
    gem.batches.delete(name=stuck.name)
    with pytest.raises(genai.errors.ClientError) as missing:
        gem.batches.get(name=stuck.name)
    assert missing.value.code == 404


def test_gemini_async_batch(sim: SimulatorServer) -> None:
    client = genai.Client(api_key="test", http_options=types.HttpOptions(base_url=sim.url, api_version="v1beta"))

    async def run() -> str | None:
        created = await client.aio.batches.create(model="gemini-t", src=gemini_src(["async"]),
                                                  config={"http_options": {"headers": FAST}})
        assert created.name is not None
        deadline = time.monotonic() + WAIT_S
        while not (job := await client.aio.batches.get(name=created.name)).done:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert job.dest is not None and job.dest.inlined_responses
        response = job.dest.inlined_responses[0].response
        return response.text if response is not None else None

    assert asyncio.run(run()) == "[gemini-t] async"


# ---------------------------------------------------------------------------------------------- routing


def test_shared_v1_batches_path_goes_by_credential(sim: SimulatorServer, oai: openai.OpenAI) -> None:
    gem = genai.Client(api_key="test", http_options=types.HttpOptions(base_url=sim.url, api_version="v1"))
    gemini_name = gemini_batch(gem, ["which vendor"]).name
    openai_id = openai_batch(oai, ["which vendor"]).id
    assert gemini_name not in [b.id for b in oai.batches.list(limit=100)]
    assert openai_id not in [b.name for b in gem.batches.list(config={"page_size": 100})]
    unauthenticated = httpx2.get(f"{sim.url}/v1/batches/{openai_id}", timeout=10.0)
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"]["type"] == "invalid_request_error"


def test_error_faults_on_the_batch_calls_themselves(claude: anthropic.Anthropic, oai: openai.OpenAI,
                                                    gem: genai.Client) -> None:
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        claude.messages.batches.create(requests=[claude_item("a", "x")], extra_headers={"x-sim-fault": "overloaded"})
    assert overloaded.value.status_code == 529
    created = openai_batch(oai, ["x"])
    with pytest.raises(openai.RateLimitError):
        oai.batches.retrieve(created.id, extra_headers={"x-sim-fault": "rate_limit:30"})
    job = gemini_batch(gem, ["x"])
    assert job.name is not None
    with pytest.raises(genai.errors.ServerError) as failed:
        gem.batches.get(name=job.name, config={"http_options": {"headers": {"x-sim-fault": "server_error"}}})
    assert failed.value.code == 500
    with pytest.raises(anthropic.BadRequestError, match="x-sim-fault"):
        claude.messages.batches.list(extra_headers={"x-sim-fault": "nonsense"})


@pytest.mark.parametrize(("section", "names"), [
    ({"x": {"fault": "lost"}}, r"batches\['x'\]\.fault: unknown batch fault 'lost'"),
    ({"x": {"processing_ms": -1}}, r"batches\['x'\]\.processing_ms: must be a non-negative number"),
    ({"x": {"speed": 1}}, r"batches\['x'\]: unknown key\(s\) speed"),
    ({"x": 5}, r"batches\['x'\]: must be a mapping"),
])
def test_plan_batches_section_names_its_errors(section: dict[str, Any], names: str) -> None:
    with pytest.raises(FaultPlanError, match=names):
        FaultPlan.from_dict({"batches": section})
    plan = FaultPlan.from_dict({"batches": {"claude-*": {"processing_ms": 5, "fault": "stuck"}}})
    assert plan.to_dict()["batches"] == {"claude-*": {"processing_ms": 5.0, "fault": "stuck"}}


def test_sim_batches_lists_every_batch(sim: SimulatorServer, claude: anthropic.Anthropic) -> None:
    created = claude.messages.batches.create(requests=[claude_item("a", "x"), claude_item("b", "y")],
                                             extra_headers={"x-sim-batch": "stuck", "x-sim-batch-ms": "50"})
    held = {b["id"]: b for b in sim.batches()}[created.id]
    assert held == {**held, "vendor": "anthropic", "model": "claude-t", "items": 2, "fault": "stuck",
                    "processing_ms": 50.0, "ending": None, "cancel_requested": False}
    claude.messages.batches.cancel(created.id)
    held = {b["id"]: b for b in sim.batches()}[created.id]
    assert held["ending"] == "cancelled" and held["cancel_requested"]


def test_gemini_file_batch(gem: genai.Client) -> None:
    lines = "".join(json.dumps({"key": f"k{n}", "request": {"contents": [{"parts": [{"text": text}], "role": "user"}]}})
                    + "\n" for n, text in enumerate(["hello file", "x [[sim:refusal]]", "y [[sim:rate_limit]]"]))
    uploaded = gem.files.upload(file=io.BytesIO(lines.encode()),
                                config={"mime_type": "application/jsonl", "display_name": "input"})
    assert uploaded.name is not None and uploaded.state == types.FileState.ACTIVE
    assert uploaded.size_bytes == len(lines.encode())
    assert gem.files.get(name=uploaded.name).display_name == "input"
    job = gem.batches.create(model="gemini-t", src=uploaded.name, config={"http_options": {"headers": FAST}})
    done = wait_gemini(gem, job.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    assert done.dest is not None and done.dest.file_name is not None and done.dest.inlined_responses is None
    out = {line["key"]: line for line in map(json.loads, gem.files.download(file=done.dest.file_name).splitlines())}
    assert out["k0"]["response"]["candidates"][0]["content"]["parts"][0]["text"] == "[gemini-t] hello file"
    assert out["k1"]["response"]["promptFeedback"]["blockReason"] == "SAFETY"
    assert out["k2"]["error"]["code"] == 429
    with pytest.raises(genai.errors.ClientError, match="does not exist"):
        gem.batches.create(model="gemini-t", src="files/missing")


# ---------------------------------------------------------------------------------------------- paging


def test_every_vendor_lists_its_batches_newest_first_a_page_at_a_time(
    claude: anthropic.Anthropic, oai: openai.OpenAI, gem: genai.Client,
) -> None:
    """The SDKs' auto-paging walks each vendor's whole list in small pages, newest first, with nothing
    repeated or skipped (Anthropic after_id / before_id, OpenAI after, Gemini pageToken)."""
    made = [claude.messages.batches.create(requests=[claude_item("p", "page")], extra_headers=FAST).id
            for _ in range(5)]
    listed = [b.id for b in claude.messages.batches.list(limit=2)]
    assert [i for i in listed if i in made] == made[::-1] and len(listed) == len(set(listed))
    first = claude.messages.batches.list(limit=2)
    assert first.has_more and first.first_id == made[-1] and first.last_id == made[-2]
    before = claude.messages.batches.list(limit=2, before_id=made[2])
    assert [b.id for b in before.data] == [made[4], made[3]]

    made = [openai_batch(oai, ["page"]).id for _ in range(5)]
    listed = [b.id for b in oai.batches.list(limit=2)]
    assert [i for i in listed if i in made] == made[::-1] and len(listed) == len(set(listed))

    names = [gemini_batch(gem, ["page"]).name for _ in range(5)]
    listed_names = [b.name for b in gem.batches.list(config={"page_size": 2})]
    assert [n for n in listed_names if n in names] == names[::-1] and len(listed_names) == len(set(listed_names))
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.batches.retrieve("msgbatch_missing")
