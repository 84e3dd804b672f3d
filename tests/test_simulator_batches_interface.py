"""toolbag.providers.batch over each vendor's SDK against the simulator: items submitted under custom ids come
back as outcomes in the real-time taxonomy (answer, refusal, rate limit, overload), and expired, cancelled and
stuck batches end their items as the vendor reports them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from toolbag.providers.base import AttemptFailure, Message, ModelRequest, OutcomeKind, ToolSpec
from toolbag.providers.batch import (
    AnthropicBatches,
    BatchEnding,
    BatchInputError,
    BatchItem,
    BatchOutcome,
    BatchStatus,
    GeminiBatches,
    ItemEnd,
    OpenAIBatches,
    VendorBatches,
)
from toolbag.simulator.server import SimulatorServer

VENDORS = ("anthropic", "openai", "gemini")
MODELS = {"anthropic": "claude-t", "openai": "gpt-t", "gemini": "gemini-t"}
FAST = {"x-sim-batch-ms": "300"}
WAIT_S = 20.0


@pytest.fixture(scope="module", params=VENDORS)
def batches(request: pytest.FixtureRequest, sim: SimulatorServer) -> Iterator[VendorBatches[Any]]:
    made: VendorBatches[Any]
    if request.param == "anthropic":
        made = AnthropicBatches(api_key="sk-test", base_url=sim.url)
    elif request.param == "openai":
        made = OpenAIBatches(api_key="sk-test", base_url=sim.url + "/v1")
    else:
        made = GeminiBatches(api_key="sk-test", base_url=sim.url)
    yield made
    made.close()


def item(custom_id: str, text: str) -> BatchItem:
    return BatchItem(custom_id, ModelRequest(messages=(Message("user", text),), max_output_tokens=200))


def wait(batches: VendorBatches[Any], batch_id: str) -> BatchStatus:
    deadline = time.monotonic() + WAIT_S
    while not (status := batches.status(batch_id)).done and time.monotonic() < deadline:
        time.sleep(0.05)
    return status


def outcomes(batches: VendorBatches[Any], batch_id: str) -> dict[str, BatchOutcome]:
    return {o.custom_id: o for o in batches.results(batch_id)}


def kind(outcome: BatchOutcome) -> OutcomeKind | None:
    return outcome.failure.kind if outcome.failure is not None else None


def test_items_end_in_the_real_time_taxonomy(batches: VendorBatches[Any]) -> None:
    model = MODELS[batches.vendor]
    batch_id = batches.submit(model, [item("text", "Summarize the quarterly report"),
                                      item("refused", "no [[sim:refusal]]"),
                                      item("limited", "x [[sim:rate_limit]]"),
                                      item("overloaded", "y [[sim:overloaded]]")], extra_headers=FAST)
    assert not batches.status(batch_id).done
    assert wait(batches, batch_id).ending is BatchEnding.COMPLETED
    ends = outcomes(batches, batch_id)
    assert set(ends) == {"text", "refused", "limited", "overloaded"}
    answered = ends["text"]
    assert answered.end is ItemEnd.OK and answered.response is not None
    assert answered.response.text == f"[{model}] Summarize the quarterly report"
    assert answered.response.usage.input_tokens > 0 and answered.response.usage.output_tokens > 0
    assert (ends["refused"].end, kind(ends["refused"])) == (ItemEnd.FAILED, OutcomeKind.REFUSED)
    assert (ends["limited"].end, kind(ends["limited"])) == (ItemEnd.FAILED, OutcomeKind.RATE_LIMITED)
    assert (ends["overloaded"].end, kind(ends["overloaded"])) == (ItemEnd.FAILED, OutcomeKind.OVERLOADED)


def test_expired_batch(batches: VendorBatches[Any]) -> None:
    batch_id = batches.submit(MODELS[batches.vendor], [item(f"i{n}", f"item {n}") for n in range(4)],
                              extra_headers={**FAST, "x-sim-batch": "expired"})
    assert wait(batches, batch_id).ending is BatchEnding.EXPIRED
    ends = outcomes(batches, batch_id)
    assert [ends[f"i{n}"].end for n in range(4)] == [ItemEnd.OK, ItemEnd.OK, ItemEnd.EXPIRED, ItemEnd.EXPIRED]


def test_cancelled_batch(batches: VendorBatches[Any]) -> None:
    batch_id = batches.submit(MODELS[batches.vendor], [item(f"i{n}", f"item {n}") for n in range(4)],
                              extra_headers={**FAST, "x-sim-batch": "cancelled"})
    assert wait(batches, batch_id).ending is BatchEnding.CANCELLED
    assert sorted(o.end for o in outcomes(batches, batch_id).values()) == sorted(
        [ItemEnd.OK, ItemEnd.OK, ItemEnd.CANCELED, ItemEnd.CANCELED])


def test_cancel_a_batch_that_never_ends(batches: VendorBatches[Any]) -> None:
    batch_id = batches.submit(MODELS[batches.vendor], [item("a", "one"), item("b", "two")],
                              extra_headers={**FAST, "x-sim-batch": "stuck"})
    time.sleep(0.4)
    assert not batches.status(batch_id).done
    batches.cancel(batch_id)
    assert wait(batches, batch_id).ending is BatchEnding.CANCELLED
    assert {o.end for o in outcomes(batches, batch_id).values()} == {ItemEnd.CANCELED}


def test_bad_input_and_unknown_batch(batches: VendorBatches[Any]) -> None:
    with pytest.raises(BatchInputError, match="used twice"):
        batches.submit(MODELS[batches.vendor], [item("a", "x"), item("a", "y")])
    with pytest.raises(BatchInputError, match="at least one"):
        batches.submit(MODELS[batches.vendor], [])
    missing = "batches/missing" if batches.vendor == "gemini" else "missing_batch"
    with pytest.raises(AttemptFailure) as failure:
        batches.status(missing)
    assert failure.value.kind is OutcomeKind.BAD_REQUEST


def test_structured_output_tools_and_system_go_through_a_batch(batches: VendorBatches[Any]) -> None:
    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"],
              "additionalProperties": False}
    weather = ToolSpec("get_weather", "Current weather",
                       {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
    batch_id = batches.submit(MODELS[batches.vendor], [
        BatchItem("schema", ModelRequest(messages=(Message("user", "make a title"),), system="be brief",
                                         json_schema=schema, cache_key="stable")),
        BatchItem("tool", ModelRequest(messages=(Message("user", "weather [[sim:tool=get_weather]]"),),
                                       tools=(weather,))),
    ], extra_headers=FAST)
    assert wait(batches, batch_id).ending is BatchEnding.COMPLETED
    ends = outcomes(batches, batch_id)
    shaped, called = ends["schema"].response, ends["tool"].response
    assert shaped is not None and json.loads(shaped.text) == {"title": "make a title"}
    assert called is not None and [c.name for c in called.tool_calls] == ["get_weather"]
    assert called.tool_calls[0].arguments == {"city": "weather"}
