"""The supervisor's judgement on the in-process fleet (real store, SDKs, simulator and supervisor): a context
error rerouted by the vendor's own numbers, a same-model retry not sent to a circuit that just opened, a
breaker that forgives a recovered model, and an interactive job that waits out a short retry-after when no
other candidate has capacity."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from toolbag.config import DEFAULT_CONFIG_PATH, Config, parse_config
from toolbag.jobs import JobResult, JobStatus
from toolbag.routing.health import HealthTracker
from toolbag.simulator.server import SimulatorServer
from toolbag.testing import InProcessFleet, short_waits

OPEN_S = 0.2
MAX_OPEN_S = 1.6  # three doublings
VENDORS = ("anthropic", "openai", "gemini")


def judgement_config() -> Config:
    """The embedded defaults with short timeouts, a circuit that opens on the first 5xx, and test routes:
    ``ctx-<vendor>``: that vendor's 128k model then another vendor's (equal declared windows); ``flaky``;
    ``recover``; ``rl``: an interactive route whose second model allows one request a minute."""
    data: dict[str, Any] = copy.deepcopy(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()))
    for vendor in VENDORS:
        data["models"][f"ctx-{vendor}"] = {"provider": vendor, "model_id": f"sim-ctx-{vendor}",
                                           "context_window": 128_000}
    for vendor, other in zip(VENDORS, VENDORS[1:] + VENDORS[:1], strict=True):
        data["routes"][f"ctx-{vendor}"] = {"standard": {"candidates": [f"ctx-{vendor}", f"ctx-{other}"]}}
    data["models"]["rl-a"] = {"provider": "openai", "model_id": "sim-rl-a"}
    data["models"]["rl-b"] = {"provider": "anthropic", "model_id": "sim-rl-b", "limits": {"rpm": 1}}
    data["routes"]["rl"] = {"interactive": {"candidates": ["rl-a", "rl-b"]}}
    data["routes"]["rl-b-only"] = {"interactive": {"candidates": ["rl-b"]}}
    data["routes"]["flaky"] = {"standard": {"candidates": ["gpt-luna", "claude-haiku"]}}
    data["routes"]["recover"] = {"standard": {"candidates": ["gemini-flash", "gpt-sol"]}}
    data["health"] = {"failures_to_open": 1, "open_s": OPEN_S, "max_open_s": MAX_OPEN_S}
    for tier in data["tiers"].values():
        tier.update({"connect_timeout_s": 2, "first_token_timeout_s": 2, "total_timeout_s": 10})
    return short_waits(parse_config(data))


@pytest.fixture(scope="module")
def shared_fleet(redis_server: str) -> Iterator[InProcessFleet]:
    with SimulatorServer() as sim, InProcessFleet(judgement_config(), redis_server, simulator=sim) as fleet:
        yield fleet


@pytest.fixture
def fleet(shared_fleet: InProcessFleet) -> Iterator[InProcessFleet]:
    shared_fleet.reset()
    yield shared_fleet
    shared_fleet.simulator.clear_faults()


def run(fleet: InProcessFleet, capability: str, text: str, tier: str = "standard") -> JobResult:
    job = fleet.client.submit(capability, input={"text": text}, tier=tier)
    fleet.run_until_idle()
    return job.result(0)


def attempts(result: JobResult) -> list[tuple[str, str]]:
    return [(a["model"], a["outcome"]) for a in result.attempts if a["type"] == "attempt"]


def decisions(result: JobResult) -> list[dict[str, Any]]:
    return [a for a in result.attempts if a["type"] == "decision"]


# ------------------------------------------------------------------------------------------ context


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_context_error_reroutes_between_equal_windows_by_the_vendors_numbers(fleet: InProcessFleet,
                                                                               vendor: str) -> None:
    result = run(fleet, f"ctx-{vendor}", f"[[sim:context_length:100000:120000@sim-ctx-{vendor}]] long report")
    assert result.ok and [o for _, o in attempts(result)] == ["context_too_long", "ok"]
    failed = result.attempts[0]
    assert failed["reason"].startswith("[context: request 120000 tokens, limit 100000 tokens] "), failed["reason"]
    [reroute] = decisions(result)
    assert reroute["action"] == "reroute"
    assert f"ctx-{vendor} says the request is 120000 tokens and its limit is 100000 tokens" in reroute["reason"]
    assert "this job takes 100000 as its window" in reroute["reason"]


def test_a_request_no_candidate_can_hold_fails_after_one_attempt(fleet: InProcessFleet) -> None:
    result = run(fleet, "ctx-openai", "[[sim:context_length:128000:300000@sim-ctx-*]] a whole archive")
    assert result.status is JobStatus.FAILED and attempts(result) == [("ctx-openai", "context_too_long")]
    assert result.error and "no other candidate's window holds 300000 tokens" in result.error


# ---------------------------------------------------------------------------------------- breakers


def test_a_5xx_that_opens_the_circuit_is_rerouted_not_retried_there(fleet: InProcessFleet) -> None:
    result = run(fleet, "flaky", "[[sim:server_error@gpt-*]] busy")
    assert result.ok and attempts(result) == [("gpt-luna", "server_error"), ("claude-haiku", "ok")]
    [reroute] = decisions(result)
    assert reroute["action"] == "reroute" and "circuit is open" in reroute["reason"]


def open_time_left_s(health: HealthTracker, model: str) -> float:
    return health.snapshot(model).open_for_s


def test_a_recovered_model_gets_its_traffic_back_and_a_later_blip_is_not_punished_for_the_outage(
        fleet: InProcessFleet) -> None:
    health = fleet.client.health
    primary = "gemini-flash"
    fleet.simulator.set_faults({"rules": [{"model": "gemini-3.8-flash*", "fault": "server_error"}]})
    for i in range(4):
        result = run(fleet, "recover", f"outage {i}")
        assert result.ok and attempts(result) == [(primary, "server_error"), ("gpt-sol", "ok")]
        time.sleep(open_time_left_s(health, primary) + 0.05)
    assert health.snapshot(primary).doublings == 3, "each failed probe doubled the open time, up to the bound"

    fleet.simulator.clear_faults()
    probe = run(fleet, "recover", "recovered?")
    assert attempts(probe) == [(primary, "ok")], "the probe succeeded"
    assert health.snapshot(primary).state == "closed"
    back = run(fleet, "recover", "and the next job")
    assert attempts(back) == [(primary, "ok")], "traffic came back at once"

    time.sleep(3 * OPEN_S + 0.1)  # healthy long enough to undo the outage's three doublings
    fleet.simulator.set_faults({"rules": [{"model": "gemini-3.8-flash*", "sequence": ["server_error"]}]})
    blip = run(fleet, "recover", "a blip")
    assert attempts(blip) == [(primary, "server_error"), ("gpt-sol", "ok")]
    assert open_time_left_s(health, primary) <= OPEN_S, "the blip opens for the base time, not the outage's"
    time.sleep(OPEN_S + 0.05)
    assert attempts(run(fleet, "recover", "after the blip")) == [(primary, "ok")]


# ---------------------------------------------------------------------------- interactive retry-after


def use_up_rl_b(fleet: InProcessFleet) -> None:
    """rl-b allows one request a minute: this job takes it."""
    assert run(fleet, "rl-b-only", "first", tier="interactive").ok


def test_a_short_retry_after_is_waited_out_when_no_other_candidate_has_capacity(fleet: InProcessFleet) -> None:
    use_up_rl_b(fleet)
    fleet.simulator.set_faults({"rules": [{"model": "sim-rl-a", "match": "patience", "sequence": ["rate_limit:1"]}]})
    started = time.monotonic()
    result = run(fleet, "rl", "patience please", tier="interactive")
    assert result.ok and attempts(result) == [("rl-a", "rate_limited"), ("rl-a", "ok")]
    assert time.monotonic() - started >= 0.9, "the job waited for the vendor's retry-after"
    [wait] = decisions(result)
    assert wait["action"] == "wait" and wait["delay_s"] == pytest.approx(1.0)
    assert "no other candidate has capacity now" in wait["reason"]


def test_a_short_retry_after_still_spills_to_a_candidate_with_capacity_now(fleet: InProcessFleet) -> None:
    fleet.simulator.set_faults({"rules": [{"model": "sim-rl-a", "match": "hurry", "sequence": ["rate_limit:1"]}]})
    result = run(fleet, "rl", "hurry please", tier="interactive")
    assert result.ok and attempts(result) == [("rl-a", "rate_limited"), ("rl-b", "ok")]
    [spill] = decisions(result)
    assert spill["action"] == "reroute" and "capacity now" in spill["reason"]


def test_a_long_retry_after_spills_even_without_capacity_elsewhere(fleet: InProcessFleet) -> None:
    use_up_rl_b(fleet)
    fleet.simulator.set_faults({"rules": [{"model": "sim-rl-a", "match": "later", "sequence": ["rate_limit:30"]}]})
    job = fleet.client.submit("rl", input={"text": "later is fine"}, tier="interactive")
    fleet.step()  # the attempt on rl-a
    fleet.step()  # the decision
    spill = [h for h in fleet.store.history(job.id) if h.get("type") == "decision"]
    assert [(d["action"], d["model"]) for d in spill] == [("reroute", "rl-b")]
    assert "spilling over anyway" in spill[0]["reason"]
    fleet.client.cancel(job.id)
