"""Prompt caching: a skill's stable instructions are marked cacheable the way each vendor takes it, the
simulator reports cache writes and reads as each vendor does, and the fleet records and prices them per
attempt (through the real SDKs)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from toolbag.attempt.request import build_request
from toolbag.config import DEFAULT_CONFIG_PATH, parse_config
from toolbag.providers.base import Usage
from toolbag.providers.registry import build_adapter
from toolbag.ratelimit import counted_tokens
from toolbag.simulator.server import SimulatorServer
from toolbag.skills import SkillLibrary, default_skills_dir
from toolbag.testing import InProcessFleet, short_waits

INVOICE = "Invoice 7 from ACME GmbH, dated 2026-11-02, total 12.50 EUR"
PRICES = {"input_usd_per_mtok": 1.0, "output_usd_per_mtok": 5.0, "cache_read_usd_per_mtok": 0.1,
          "cache_write_usd_per_mtok": 1.25}


def config() -> Any:
    data: dict[str, Any] = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    for name in ("claude-haiku", "gpt-luna", "gemini-flash"):
        data["models"][name].update(PRICES)
    return short_waits(parse_config(data))


def test_the_wire_marks_a_skills_instructions_cacheable() -> None:
    cfg = config()
    skill = SkillLibrary(default_skills_dir()).get("extract-invoice")
    request = build_request(cfg, capability="extract", tier="standard", model="claude-haiku",
                            job_input={"text": INVOICE}, skill=skill)
    assert request.cache_key.startswith("toolbag-skill-")
    again = build_request(cfg, capability="extract", tier="standard", model="claude-haiku",
                          job_input={"text": "another invoice"}, skill=skill)
    assert again.cache_key == request.cache_key  # the instructions, not the input, make the key
    anthropic = build_adapter("anthropic", cfg, environ={}).wire_request("claude-haiku-5-5", request)
    assert anthropic["system"] == [{"type": "text", "text": request.system, "cache_control": {"type": "ephemeral"}}]
    openai = build_adapter("openai", cfg, environ={}).wire_request("gpt-6-luna", request)
    assert openai["prompt_cache_key"] == request.cache_key
    plain = build_request(cfg, capability="summarize", tier="standard", model="claude-haiku", job_input={"text": "x"})
    assert plain.cache_key == ""
    assert isinstance(build_adapter("anthropic", cfg, environ={}).wire_request("m", plain)["system"], str)


@pytest.mark.parametrize(("model", "writes"), [("claude-haiku", True), ("gpt-luna", True), ("gemini-flash", False)])
def test_cache_writes_and_reads_are_recorded_and_priced(model: str, writes: bool, redis_url: str,
                                                        sim: SimulatorServer) -> None:
    cfg = config()
    prices = cfg.models[model]
    with InProcessFleet(cfg, redis_url, simulator=sim) as fleet:
        sim.state.prompt_cache.clear()
        first = fleet.client.submit(skill="extract-invoice", input={"text": INVOICE}, candidates=(model,))
        fleet.run_until_idle()
        second = fleet.client.submit(skill="extract-invoice", input={"text": INVOICE + " (copy)"},
                                     candidates=(model,))
        fleet.run_until_idle()
        one, two = first.result(timeout_s=0), second.result(timeout_s=0)
    assert one.ok and two.ok, (one, two)
    a1, a2 = one.attempts[-1], two.attempts[-1]
    assert a1["cache_read_tokens"] == 0
    assert (a1["cache_write_tokens"] > 0) is writes
    assert a2["cache_read_tokens"] > 0 and a2["cache_write_tokens"] == 0
    assert a2["cache_read_tokens"] < a2["input_tokens"]  # reads are part of the input, as the fleet counts it
    for attempt, result in ((a1, one), (a2, two)):
        expected = prices.cost_usd(attempt["input_tokens"], attempt["output_tokens"],
                                   cache_read_tokens=attempt["cache_read_tokens"],
                                   cache_write_tokens=attempt["cache_write_tokens"])
        assert attempt["cost_usd"] == pytest.approx(expected) == pytest.approx(result.cost_usd)
    uncached = prices.cost_usd(a2["input_tokens"], a2["output_tokens"])
    assert two.cost_usd < uncached  # a read costs a tenth of an input token here


def test_cache_prices_default_to_the_input_price() -> None:
    cfg = parse_config(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()))
    model = cfg.models["claude-haiku"]
    assert model.cost_usd(1000, 10, cache_read_tokens=600, cache_write_tokens=100) == model.cost_usd(1000, 10)


def test_the_limiter_counts_cached_input_as_the_vendor_does() -> None:
    usage = Usage(input_tokens=1000, output_tokens=50, cached_input_tokens=800, cache_write_tokens=100)
    assert counted_tokens("anthropic", usage) == 250  # cache reads do not count against Anthropic's input limits
    assert counted_tokens("openai", usage) == 1050
    assert counted_tokens("gemini", usage) == 1050
