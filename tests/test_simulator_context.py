"""The simulator's context-length errors state the numbers the way each vendor does, and every adapter reads
them (through its real SDK) into the note its failure's reason starts with."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from toolbag.providers.anthropic_provider import AnthropicAdapter
from toolbag.providers.base import Adapter, AttemptFailure, Message, ModelRequest, OutcomeKind
from toolbag.providers.gemini_provider import GeminiAdapter
from toolbag.providers.openai_provider import OpenAIAdapter
from toolbag.providers.reasons import ContextReport
from toolbag.simulator.faults import Fault, FaultPlan, FaultPlanError, parse_fault
from toolbag.simulator.generate import count_tokens
from toolbag.simulator.server import SimulatorServer

VENDORS = ("anthropic", "openai", "gemini")
WINDOW_TOKENS = 50


@pytest.fixture(scope="module")
def adapters() -> Iterator[dict[str, Adapter]]:
    plan = FaultPlan.from_dict({"context_windows": {"*-small": WINDOW_TOKENS}})
    with SimulatorServer(plan=plan) as sim:
        made: dict[str, Adapter] = {
            "anthropic": AnthropicAdapter(api_key="sk-ctx-a", base_url=sim.url),
            "openai": OpenAIAdapter(api_key="sk-ctx-o", base_url=sim.url + "/v1"),
            "gemini": GeminiAdapter(api_key="sk-ctx-g", base_url=sim.url),
        }
        yield made
        for adapter in made.values():
            adapter.close()


def failure(adapter: Adapter, model: str, text: str, fault: str | None = None) -> AttemptFailure:
    request = ModelRequest(messages=(Message("user", text),), extra_headers={"x-sim-fault": fault} if fault else {})
    with pytest.raises(AttemptFailure) as info:
        adapter.call(model, request)
    assert info.value.kind is OutcomeKind.CONTEXT_TOO_LONG, info.value.reason
    return info.value


@pytest.mark.parametrize("vendor", VENDORS)
def test_the_faults_numbers_reach_the_reason(adapters: dict[str, Adapter], vendor: str) -> None:
    stated = failure(adapters[vendor], f"{vendor}-m", "long document", "context_length:100000:125000")
    assert ContextReport.read(stated.reason) == ContextReport(125000, 100000)
    at_least = failure(adapters[vendor], f"{vendor}-m", "long document", "context_length:100000")
    assert ContextReport.read(at_least.reason) == ContextReport(100001, 100000), "a request never said to fit"


@pytest.mark.parametrize(("vendor", "requested", "limit"), [
    ("anthropic", 250000, 200000), ("openai", 250000, 128000), ("gemini", 2000000, 1048576)])
def test_without_numbers_each_vendor_states_its_own(adapters: dict[str, Adapter], vendor: str, requested: int,
                                                    limit: int) -> None:
    assert ContextReport.read(failure(adapters[vendor], f"{vendor}-m", "x", "context_length").reason) == \
        ContextReport(requested, limit)


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_context_window_of_the_plan_states_that_window_and_the_tokens_counted(adapters: dict[str, Adapter],
                                                                                vendor: str) -> None:
    text = "word " * 80
    report = ContextReport.read(failure(adapters[vendor], f"{vendor}-small", text).reason)
    assert report.limit_tokens == WINDOW_TOKENS
    assert report.requested_tokens is not None and report.requested_tokens >= count_tokens(text) > WINDOW_TOKENS


def test_the_fault_parameter_is_checked() -> None:
    assert parse_fault("context_length:4096:5000") == Fault("context_length", "4096:5000")
    for bad in ("context_length:0", "context_length:12k", "context_length:1:2:3", "context_length:-5"):
        with pytest.raises(FaultPlanError, match="LIMIT or LIMIT:REQUESTED"):
            parse_fault(bad)
