"""The batch tier through the vendors' batch APIs, on the job path: real Redis, the official SDKs against the
simulator, the in-process fleet stepping workers, supervisor and the vendor-batch poller.

Every test checks the two promises: each job ends once (one ``ok`` attempt at most, a terminal status), and
nothing a vendor batch held is left behind (``vb:held`` empty once the fleet is idle)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from toolbag.config import DEFAULT_CONFIG_PATH, Config, ConfigError, Features, Tier, load_config, parse_config
from toolbag.jobs import JobResult, JobStatus
from toolbag.routing.vendorbatch import attempt_path
from toolbag.simulator.server import SimulatorServer
from toolbag.testing import InProcessFleet, short_waits
from toolbag.vendorbatch.batcher import VendorBatcher
from toolbag.vendorbatch.store import BatchStore

MODEL_OF = {"anthropic": "claude-haiku", "openai": "gpt-luna", "gemini": "gemini-lite"}
BATCH_MS = 150  # the simulator's processing time of every vendor batch here
BOUND_S = 60.0  # every route's vendor_batch_bound_s: a job with a minute or more left takes the batch path


def batch_config(**vendor_batch: Any) -> Config:
    base = short_waits(load_config())
    models = {name: (m.model_copy(update={"features": Features(batch=True)}) if name in MODEL_OF.values() else m)
              for name, m in base.models.items()}
    settings = base.fleet.vendor_batch.model_copy(update={
        "max_requests": 50, "max_age_s": 0.2, "poll_interval_s": 0.1, "stuck_after_s": 1.5,
        "creating_timeout_s": 1.0, "lock_ttl_s": 5.0, **vendor_batch})
    routes = {capability: {tier: route.model_copy(update={"policy": route.policy.model_copy(update={
        "vendor_batch_bound_s": BOUND_S})}) for tier, route in per_tier.items()}
        for capability, per_tier in base.routes.items()}
    return base.model_copy(update={"models": models, "routes": routes,
                                   "fleet": base.fleet.model_copy(update={"vendor_batch": settings})})


CONFIG = batch_config()


@pytest.fixture(scope="module")
def shared_fleet(redis_server: str, sim: SimulatorServer) -> Iterator[InProcessFleet]:
    with InProcessFleet(CONFIG, redis_server, simulator=sim) as f:
        yield f


@pytest.fixture
def fleet(shared_fleet: InProcessFleet) -> Iterator[InProcessFleet]:
    shared_fleet.reset()
    shared_fleet.simulator.set_faults({"batches": {"*": {"processing_ms": BATCH_MS}}})
    yield shared_fleet
    shared_fleet.simulator.clear_faults()


def attempts(result: JobResult) -> list[dict[str, Any]]:
    return [a for a in result.attempts if a["type"] == "attempt"]


def settle(fleet: InProcessFleet, timeout_s: float = 60.0) -> None:
    fleet.run_until_idle(max_steps=100_000, timeout_s=timeout_s)
    assert fleet.store.redis.zcard(fleet.store.keys.vb_held) == 0
    assert fleet.store.redis.zcard(fleet.store.keys.leases) == 0


def ended_once(result: JobResult) -> None:
    assert result.status.terminal
    oks = [a for a in attempts(result) if a["outcome"] == "ok"]
    assert len(oks) == (1 if result.ok else 0)


def realtime_calls(sim: SimulatorServer) -> list[str]:
    return [e["path"] for e in sim.log() if e["path"].endswith(("/messages", "/chat/completions"))
            or ":generateContent" in e["path"] or ":streamGenerateContent" in e["path"]]


@pytest.mark.parametrize("provider", sorted(MODEL_OF))
def test_batch_tier_jobs_go_through_the_vendors_batch_api(fleet: InProcessFleet, provider: str) -> None:
    model = MODEL_OF[provider]
    fleet.simulator.clear_log()
    before = {b["id"] for b in fleet.simulator.batches()}
    jobs = [fleet.client.submit("summarize", input={"text": f"report {n}"}, tier="batch", candidates=(model,))
            for n in range(3)]
    settle(fleet)
    made = [b for b in fleet.simulator.batches() if b["id"] not in before]
    assert [(b["vendor"], b["model"], b["items"]) for b in made] == [
        (provider, fleet.config.models[model].model_id, 3)]  # the three attempts went as one vendor batch
    assert realtime_calls(fleet.simulator) == []  # no real-time call: no real-time rate-limit slot either
    assert not list(fleet.store.redis.scan_iter(match=fleet.store.keys.prefix + "rl:*"))
    batch_ids = set()
    for job in jobs:
        result = job.result(0)
        assert result.ok, result.error
        assert result.output == f"[{fleet.config.models[model].model_id}] report {jobs.index(job)}"
        ended_once(result)
        (attempt,) = attempts(result)
        assert attempt["path"] == "vendor_batch" and attempt["batch_id"]
        batch_ids.add(attempt["batch_id"])
        stored = fleet.store.get(job.id).result_value()
        assert stored["path"] == "vendor_batch" and stored["batch_id"] == attempt["batch_id"]
        price = fleet.config.models[model]
        full = price.cost_usd(result.usage["input_tokens"], result.usage["output_tokens"])
        assert result.cost_usd == pytest.approx(full / 2) and result.cost_usd > 0
    assert len(batch_ids) == 1 and made[0]["id"].endswith(batch_ids.pop().rsplit("/", 1)[-1])


@pytest.mark.parametrize("deadline_s", [30, BOUND_S])  # exactly the bound: less is left once batched
def test_a_short_deadline_goes_real_time(fleet: InProcessFleet, deadline_s: float) -> None:
    fleet.simulator.clear_log()
    job = fleet.client.submit("summarize", input={"text": "soon"}, tier="batch", candidates=("gpt-luna",),
                              deadline_s=deadline_s)
    settle(fleet)
    result = job.result(0)
    assert result.ok and attempts(result)[0]["path"] == "realtime"
    assert fleet.store.get(job.id).result_value()["path"] == "realtime"
    assert realtime_calls(fleet.simulator)


def test_the_job_path_asks_the_one_rule() -> None:
    def path(config: Config, tier: Tier, model: str, time_left_s: float) -> str:
        return attempt_path(config, "summarize", tier, model, time_left_s)

    assert path(CONFIG, "batch", "gpt-luna", BOUND_S + 1) == "vendor_batch"
    assert path(CONFIG, "batch", "gpt-luna", BOUND_S - 1) == "realtime"
    assert path(CONFIG, "standard", "gpt-luna", 600) == "realtime"
    assert path(CONFIG, "batch", "local-llama", 600) == "realtime"  # no features.batch
    route = CONFIG.routes["summarize"]["batch"]
    off = CONFIG.model_copy(update={"routes": {**CONFIG.routes, "summarize": {
        **CONFIG.routes["summarize"], "batch": route.model_copy(update={
            "policy": route.policy.model_copy(update={"vendor_batch": False})})}}})
    assert path(off, "batch", "gpt-luna", 600) == "realtime"


def test_refusals_and_item_errors_inside_a_batch_are_rerouted(fleet: InProcessFleet) -> None:
    plan = ("claude-haiku", "gpt-luna")
    refused = fleet.client.submit("summarize", input={"text": "no [[sim:refusal@claude-*]]"}, tier="batch",
                                  candidates=plan)
    errored = fleet.client.submit("summarize", input={"text": "x [[sim:bad_request@claude-*]]"}, tier="batch",
                                  candidates=plan)
    overloaded = fleet.client.submit("summarize", input={"text": "y [[sim:overloaded@claude-*]]"}, tier="batch",
                                     candidates=plan)
    fine = fleet.client.submit("summarize", input={"text": "fine"}, tier="batch", candidates=plan)
    settle(fleet)
    r = refused.result(0)
    assert r.ok and [(a["model"], a["outcome"], a["path"]) for a in attempts(r)] == [
        ("claude-haiku", "refused", "vendor_batch"), ("gpt-luna", "ok", "vendor_batch")]
    assert errored.result(0).status is JobStatus.FAILED  # a bad request fails, as in real time
    o = overloaded.result(0)
    assert o.ok and o.model == "gpt-luna" and all(a["path"] == "vendor_batch" for a in attempts(o))
    assert fine.result(0).ok and fine.result(0).model == "claude-haiku"
    for job in (refused, errored, overloaded, fine):
        ended_once(job.result(0))


@pytest.mark.parametrize("fault", ["expired", "cancelled", "stuck"])
def test_a_whole_batch_that_ends_badly_is_recovered(fleet: InProcessFleet, fault: str) -> None:
    fleet.simulator.set_faults({"batches": {"claude-*": {"processing_ms": 400, "fault": fault},
                                            "*": {"processing_ms": BATCH_MS}}})
    before = {b["id"] for b in fleet.simulator.batches()}
    jobs = [fleet.client.submit("summarize", input={"text": f"doc {n}"}, tier="batch",
                                candidates=("claude-haiku", "gpt-luna")) for n in range(4)]
    settle(fleet)
    for job in jobs:
        result = job.result(0)
        assert result.ok, result.error
        ended_once(result)
        assert result.model in ("claude-haiku", "gpt-luna")
        if result.model == "gpt-luna":
            assert attempts(result)[0]["model"] == "claude-haiku" and attempts(result)[0]["outcome"] != "ok"
        assert all(a["path"] == "vendor_batch" for a in attempts(result))
    faulty = [b for b in fleet.simulator.batches() if b["id"] not in before and b["fault"] == fault]
    assert faulty
    if fault == "stuck":  # cancelled at the vendor once past stuck_after_s
        assert all(b["cancel_requested"] for b in faulty)


def test_a_result_for_a_job_that_moved_on_is_dropped_and_counted(fleet: InProcessFleet) -> None:
    fleet.simulator.set_faults({"batches": {"*": {"processing_ms": 600}}})
    keep = fleet.client.submit("summarize", input={"text": "keep"}, tier="batch", candidates=("gpt-luna",))
    gone = fleet.client.submit("summarize", input={"text": "gone"}, tier="batch", candidates=("gpt-luna",))
    before = {b["id"] for b in fleet.simulator.batches()}
    fleet.step()
    deadline = time.monotonic() + 10
    while not ({b["id"] for b in fleet.simulator.batches()} - before) and time.monotonic() < deadline:
        time.sleep(0.05)
        fleet.sweep()
    assert {b["id"] for b in fleet.simulator.batches()} - before, "the batch was not submitted"
    dropped_before = fleet.vendor_batches.dropped
    assert gone.cancel()
    settle(fleet)
    assert keep.result(0).ok
    assert fleet.store.get(gone.id).status is JobStatus.CANCELLED
    assert fleet.vendor_batches.dropped == dropped_before + 1
    assert [a["outcome"] for a in attempts(gone.result(0))] == []  # its result was never written


def test_cancelling_a_pending_job_keeps_it_out_of_the_batch(fleet: InProcessFleet) -> None:
    before = {b["id"] for b in fleet.simulator.batches()}
    job = fleet.client.submit("summarize", input={"text": "never sent"}, tier="batch", candidates=("gpt-luna",))
    fleet.step()  # held in the pending collection
    assert fleet.in_flight().batched == 1
    assert job.cancel()
    settle(fleet)
    assert fleet.store.get(job.id).status is JobStatus.CANCELLED
    assert {b["id"] for b in fleet.simulator.batches()} == before  # no batch was made for it
    assert fleet.vendor_batches.dropped >= 1


def test_a_batch_taken_but_never_created_is_recovered(fleet: InProcessFleet) -> None:
    jobs = [fleet.client.submit("summarize", input={"text": f"lost {n}"}, tier="batch", candidates=("gpt-luna",))
            for n in range(2)]
    fleet.step()
    held = BatchStore(fleet.store.redis, fleet.store.keys)
    taken = held.take("openai", "gpt-luna", 10, 10_000_000)  # the taker dies here, before the vendor's create
    assert len(taken.items) == 2
    settle(fleet)
    for job in jobs:
        result = job.result(0)
        assert result.ok
        ended_once(result)
        outcomes = [a["outcome"] for a in attempts(result)]
        assert outcomes == ["lost", "ok"]


def test_one_poller_per_provider(fleet: InProcessFleet) -> None:
    own = fleet.vendor_batches.batchers[0]
    other = VendorBatcher(fleet.config, fleet.store, own.provider, own.batches)
    assert own.holds_lock()
    assert not other.holds_lock() and not other.run_once()
    own.release_lock()
    assert other.holds_lock() and not own.holds_lock()
    other.release_lock()


@pytest.mark.soak
@pytest.mark.timeout(900)
def test_five_thousand_bulk_lines_through_vendor_batches_each_end_once(redis_server: str,
                                                                       sim: SimulatorServer) -> None:
    n = 5_000
    config = batch_config(max_requests=1000, max_age_s=0.5)
    sim.set_faults({"batches": {"*": {"processing_ms": 300}}})
    sim.clear_log()
    before = {b["id"] for b in sim.batches()}
    inputs = [{"text": f"line {i} [[sim:refusal@gemini-*]]" if i % 50 == 0 else f"line {i}"} for i in range(n)]
    try:
        with InProcessFleet(config, redis_server, simulator=sim) as fleet:
            def run() -> list[Any]:
                return list(fleet.client.map(None, inputs, capability="summarize", tier="batch",
                                             max_in_flight=n))

            t0 = time.monotonic()
            results = fleet.run_producer(run, timeout_s=600)
            elapsed_s = time.monotonic() - t0
            settle(fleet)
            assert len(results) == n and all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
            ids = [r.job_id for r in results]
            assert len(set(ids)) == n
            assert sorted(r.index for r in results) == list(range(n))  # every line once
            snapshots = fleet.store.snapshot_many(ids)
            for snap in snapshots:
                assert snap is not None
                record, history = snap
                oks = [h for h in history if h.get("type") == "attempt" and h["outcome"] == "ok"]
                assert len(oks) == 1 and oks[0]["path"] == "vendor_batch"
                assert record.result_value()["path"] == "vendor_batch"
            made = [b for b in sim.batches() if b["id"] not in before]
            assert sum(b["items"] for b in made) == n + n // 50  # refused lines went again, to the next candidate
            assert realtime_calls(sim) == []
            print(f"\n{n} lines through {len(made)} vendor batches in {elapsed_s:.1f}s")
    finally:
        sim.clear_faults()


def test_a_batch_feature_on_a_provider_without_batches_is_refused_naming_the_field() -> None:
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    local = next(name for name, m in data["models"].items()
                 if data["providers"][m["provider"]]["kind"] == "openai-compatible")
    data["models"][local]["features"] = {"batch": True}
    with pytest.raises(ConfigError, match=rf"models\.{local}\.features\.batch"):
        parse_config(data)


@pytest.mark.parametrize("model", ["claude-haiku", "gemini-lite"])
def test_structured_output_through_a_vendor_batch(fleet: InProcessFleet, model: str) -> None:
    job = fleet.client.submit("extract", input={"text": "Ada Lovelace, 1815", "json_schema": {
        "type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}},
        tier="batch", candidates=(model,))
    settle(fleet)
    result = job.result(0)
    assert result.ok, result.error
    assert isinstance(result.output, dict) and isinstance(result.output.get("name"), str)
    assert attempts(result)[0]["path"] == "vendor_batch"


def test_a_batch_the_vendor_refuses_to_create_is_rerouted(fleet: InProcessFleet) -> None:
    openai_batcher = next(b for b in fleet.vendor_batches.batchers if b.provider == "openai")
    openai_batcher.extra_headers = {"x-sim-batch": "no-such-fault"}  # the simulator answers the create with 400
    try:
        jobs = [fleet.client.submit("summarize", input={"text": f"doc {n}"}, tier="batch",
                                    candidates=("gpt-luna", "claude-haiku")) for n in range(2)]
        settle(fleet)
    finally:
        openai_batcher.extra_headers = {}
    for job in jobs:
        result = job.result(0)
        assert result.ok and result.model == "claude-haiku", result.error
        ended_once(result)
        refused = [a for a in attempts(result) if a["model"] == "gpt-luna"]
        assert refused and all("refused the batch" in a["reason"] for a in refused)
        assert all(a["outcome"] == "server_error" for a in refused)


def test_a_request_waits_in_redis_and_comes_back_the_same() -> None:
    from toolbag.providers.base import Message, ModelRequest, Timeouts, ToolCall, ToolChoice, ToolResult, ToolSpec
    from toolbag.providers.request_json import request_from_dict, request_to_dict

    request = ModelRequest(
        messages=(Message("user", "hi"), Message("assistant", "", tool_calls=(ToolCall("c1", "f", {"a": 1}),)),
                  Message("user", "", tool_results=(ToolResult("c1", "f", "ok"),))),
        system="be brief", max_output_tokens=77, json_schema={"type": "object"}, json_schema_name="out",
        tools=(ToolSpec("f", "a tool", {"type": "object"}),), tool_choice=ToolChoice("tool", "f"),
        timeouts=Timeouts(1.0, 2.0, 3.0), stream=True, extra_headers={"x-a": "b"}, cache_key="k")
    assert request_from_dict(json.loads(json.dumps(request_to_dict(request)))) == request
