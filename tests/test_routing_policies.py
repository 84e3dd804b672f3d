"""Routing policies per route (order, cheapest, fastest, weighted), a job's max_cost_usd and max_latency_s,
and the decision in the job's history: chosen at submit on a controlled fleet (prices set per model, latencies
from the health data the workers record)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from toolbag.config import DEFAULT_CONFIG_PATH, TIERS, ConfigError, parse_config
from toolbag.jobs import SubmitError
from toolbag.providers.base import OutcomeKind
from toolbag.simulator.server import SimulatorServer
from toolbag.testing import InProcessFleet, short_waits

PRICES = {  # (input, output) USD per 1M tokens
    "claude-haiku": (1.0, 5.0),
    "gpt-luna": (0.2, 1.0),
    "gemini-lite": (0.5, 2.5),
}


def config_data(routing: str, **route: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    for name, (inp, out) in PRICES.items():
        data["models"][name].update({"input_usd_per_mtok": inp, "output_usd_per_mtok": out})
    data["routes"]["policy"] = {t: {"candidates": ["claude-haiku", "gemini-lite", "gpt-luna"], "routing": routing,
                                    **route} for t in TIERS}
    data["routes"]["extract"] = {t: {"candidates": ["local-llama", "claude-haiku"], "routing": "cheapest"}
                                 for t in TIERS}
    data["models"]["local-llama"]["features"] = {"json_schema": False, "tools": False}
    return data


@pytest.fixture
def fleet_of(redis_url: str, sim: SimulatorServer) -> Iterator[Any]:
    fleets: list[InProcessFleet] = []

    def make(routing: str, **route: Any) -> InProcessFleet:
        fleet = InProcessFleet(short_waits(parse_config(config_data(routing, **route))), redis_url, simulator=sim)
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.close()


def first_model(fleet: InProcessFleet, **kwargs: Any) -> tuple[str, list[str], list[dict[str, Any]]]:
    job = fleet.client.submit("policy", input={"text": kwargs.pop("text", "hello")}, tier="standard", **kwargs)
    record = fleet.store.get(job.id)
    return record.model, list(record.plan), fleet.store.history(job.id)


def test_order_keeps_the_route_and_writes_no_decision(fleet_of: Any) -> None:
    model, plan, history = first_model(fleet_of("order"))
    assert (model, plan, history) == ("claude-haiku", ["claude-haiku", "gemini-lite", "gpt-luna"], [])


def test_cheapest_picks_the_lowest_expected_cost_and_says_why(fleet_of: Any) -> None:
    fleet = fleet_of("cheapest")
    model, plan, history = first_model(fleet)
    assert model == "gpt-luna" and plan == ["gpt-luna", "gemini-lite", "claude-haiku"]  # reroutes go cheapest next
    assert history[0]["type"] == "decision" and history[0]["action"] == "route"
    assert history[0]["reason"].startswith("cheapest: gpt-luna (expected cost gpt-luna $")
    job = fleet.client.submit("policy", input={"text": "hello"}, tier="standard")
    fleet.run_until_idle()
    result = job.result(timeout_s=0)
    assert result.ok and result.model == "gpt-luna"
    assert [(h["type"], h.get("action")) for h in result.attempts] == [("decision", "route"), ("attempt", None)]


def test_cheapest_only_among_candidates_that_can_do_the_job(fleet_of: Any) -> None:
    fleet = fleet_of("cheapest")
    job = fleet.client.submit("extract", input={"text": "hi"}, tier="standard")
    assert fleet.store.get(job.id).model == "local-llama"  # free, and the job needs nothing special
    job = fleet.client.submit(skill="extract-invoice", tier="standard",
                              input={"text": "Invoice 7 from ACME, total 12.50 EUR"})
    record = fleet.store.get(job.id)
    assert (record.model, record.plan) == ("claude-haiku", ("claude-haiku",))  # structured output: not local-llama


def test_max_cost_usd_leaves_out_dearer_candidates_and_names_itself(fleet_of: Any) -> None:
    fleet = fleet_of("order")
    # 1024 output tokens: haiku ~$0.0051, gemini-lite ~$0.0026, luna ~$0.001
    model, plan, history = first_model(fleet, max_cost_usd=0.003)
    assert model == "gemini-lite" and plan == ["gemini-lite", "gpt-luna"]
    assert "over max_cost_usd $0.003: claude-haiku" in history[0]["reason"]
    with pytest.raises(SubmitError) as refused:
        first_model(fleet, max_cost_usd=0.0001)
    assert refused.value.field == "max_cost_usd" and "the cheapest, gpt-luna" in str(refused.value)
    for bad in (0, -1, "1", float("nan"), True):
        with pytest.raises(SubmitError, match="max_cost_usd: must be a positive number"):
            first_model(fleet, max_cost_usd=bad)


def test_fastest_picks_the_lowest_recent_latency_among_healthy_ones(fleet_of: Any) -> None:
    fleet = fleet_of("fastest")
    health = fleet.client.health
    for model, latency_s in (("claude-haiku", 0.9), ("gemini-lite", 0.3), ("gpt-luna", 0.6)):
        health.record(model, OutcomeKind.OK, latency_s, None)
    model, plan, history = first_model(fleet)
    assert model == "gemini-lite" and plan == ["gemini-lite", "gpt-luna", "claude-haiku"]
    assert history[0]["reason"].startswith("fastest: gemini-lite (recent latency gemini-lite 0.300s")
    for _ in range(3):  # the fastest one's circuit opens: the next fastest healthy one
        health.record("gemini-lite", OutcomeKind.SERVER_ERROR, 0.1, None)
    model, _plan, history = first_model(fleet)
    assert model == "gpt-luna" and "gemini-lite is not usable now" in history[0]["reason"]
    with pytest.raises(SubmitError) as refused:
        first_model(fleet, max_latency_s=0.2)
    assert refused.value.field == "max_latency_s"
    model, plan, _history = first_model(fleet, max_latency_s=0.7)
    assert "claude-haiku" not in plan and model == "gpt-luna"


def test_fastest_tries_an_unmeasured_candidate_first(fleet_of: Any) -> None:
    fleet = fleet_of("fastest")
    fleet.client.health.record("claude-haiku", OutcomeKind.OK, 0.1, None)
    fleet.client.health.record("gemini-lite", OutcomeKind.OK, 0.2, None)
    assert first_model(fleet)[0] == "gpt-luna"


def test_weighted_follows_the_shares(fleet_of: Any) -> None:
    fleet = fleet_of("weighted", weights=[0, 3, 1])
    counts = Counter(first_model(fleet, text=f"t{i}")[0] for i in range(200))
    assert counts["claude-haiku"] == 0
    assert 0.6 <= counts["gemini-lite"] / 200 <= 0.9, counts


@pytest.mark.parametrize(("route", "message"), [
    ({"routing": "weighted"}, "weights: required with routing: weighted"),
    ({"routing": "weighted", "weights": [1, 2]}, "weights: 2 given for 3 candidates"),
    ({"routing": "weighted", "weights": [0, 0, 0]}, "not all 0"),
    ({"routing": "cheapest-ish"}, "routes.policy.interactive.routing"),
])
def test_a_bad_policy_is_named(route: dict[str, Any], message: str) -> None:
    data = config_data("order")
    for tier in TIERS:
        data["routes"]["policy"][tier].update(route)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_config(data)
