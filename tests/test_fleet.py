"""The fleet end to end: real Redis, real Celery worker processes, real SDKs against the simulator."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fleet import Fleet, running_fleet
from toolbag.config import TIERS
from toolbag.jobs import JobStatus

PROBE_MODELS = {"anthropic": "claude-haiku", "openai": "gpt-luna", "gemini": "gemini-flash", "local": "local-llama"}


def probe_routes() -> dict[str, Any]:
    """One capability per provider, every tier, so each (provider, tier) queue is exercised."""
    import yaml

    from toolbag.config import DEFAULT_CONFIG_PATH

    routes: dict[str, Any] = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())["routes"]
    for provider, model in PROBE_MODELS.items():
        routes[f"probe-{provider}"] = {tier: {"candidates": [model]} for tier in TIERS}
    return routes


@pytest.fixture(scope="module")
def fleet(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(redis_server, tmp_path_factory.mktemp("fleet"),
                       config_overrides={"routes": probe_routes()}) as f:
        yield f


def sim_log(fleet: Fleet) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{fleet.simulator.url}/_sim/log") as resp:
        data = json.load(resp)
    return data if isinstance(data, list) else data.get("requests", data.get("log", []))


@pytest.mark.parametrize("provider", sorted(PROBE_MODELS))
@pytest.mark.parametrize("tier", TIERS)
def test_submit_to_result_on_every_provider_and_tier(fleet: Fleet, provider: str, tier: str) -> None:
    job = fleet.client.submit(f"probe-{provider}", input={"text": f"hello {provider} {tier}"}, tier=tier)
    result = job.result(timeout_s=30)
    assert result.status is JobStatus.SUCCEEDED, (result, fleet.log(f"worker-{provider}"))
    assert result.provider == provider and result.model == PROBE_MODELS[provider]
    assert isinstance(result.output, str) and result.output
    assert result.usage["input_tokens"] > 0 and result.usage["output_tokens"] > 0
    attempts = [a for a in result.attempts if a["type"] == "attempt"]
    assert [a["outcome"] for a in attempts] == ["ok"]
    assert result.cost_usd == pytest.approx(
        fleet.config.models[PROBE_MODELS[provider]].cost_usd(result.usage["input_tokens"],
                                                               result.usage["output_tokens"])
    )


def test_idempotency_key_gives_the_same_job_and_one_vendor_call(fleet: Fleet) -> None:
    text = f"idempotent {time.time_ns()}"
    first = fleet.client.submit("probe-openai", input={"text": text}, idempotency_key="order-17", caller="shop")
    second = fleet.client.submit("probe-openai", input={"text": text}, idempotency_key="order-17", caller="shop")
    assert first.id == second.id and first.created and not second.created
    assert first.result(30).ok
    other_caller = fleet.client.submit("probe-openai", input={"text": text}, idempotency_key="order-17",
                                       caller="another-shop")
    assert other_caller.id != first.id, "idempotency keys are scoped by caller"
    assert other_caller.result(30).ok
    for job_id in (first.id, other_caller.id):
        assert len([a for a in fleet.client.store.history(job_id) if a["type"] == "attempt"]) == 1


def test_duplicate_delivery_is_dropped_and_counted(fleet: Fleet) -> None:
    store = fleet.client.store
    text = f"duplicate me {time.time_ns()}"
    job = fleet.client.submit("probe-gemini", input={"text": text}, tier="batch")
    # Make kombu see the same pointer twice, as its visibility-timeout restore does.
    raw = store.redis.lindex(store.keys.queue("gemini.batch"), 0)
    if raw is not None:
        store.redis.lpush(store.keys.queue("gemini.batch"), raw)
    result = job.result(30)
    assert result.ok
    time.sleep(0.5)  # let the duplicate be delivered and dropped
    attempts = [a for a in store.history(job.id) if a["type"] == "attempt"]
    assert len(attempts) == 1, attempts
    assert store.get(job.id).status == "succeeded"


def test_cancel_a_queued_job(fleet: Fleet) -> None:
    # A worker may pick the job up before cancel() lands: either order is fine, but the final status
    # must agree with cancel()'s answer.
    job = fleet.client.submit("probe-local", input={"text": "cancel me"}, tier="batch")
    cancelled = fleet.client.cancel(job.id)
    result = job.result(30)
    assert result.status is (JobStatus.CANCELLED if cancelled else JobStatus.SUCCEEDED)
    assert not fleet.client.cancel(job.id), "cancelling a finished job is refused"


def test_submit_many_then_results(fleet: Fleet) -> None:
    from toolbag.client import JobRequest

    jobs = fleet.client.submit_many(
        [JobRequest(f"probe-{p}", {"text": f"many {i}"}, tier=TIERS[i % 3]) for i, p in
         enumerate(sorted(PROBE_MODELS) * 10)]
    )
    assert len({j.id for j in jobs}) == 40
    results = list(fleet.client.results(jobs, timeout_s=60))
    assert all(r.ok for r in results), [r for r in results if not r.ok][:3]


def test_tier_priority_interactive_overtakes_batch_backlog(redis_server: str, tmp_path: Path) -> None:
    """One worker slot, a batch backlog: interactive jobs submitted later run next, not after the backlog."""
    with running_fleet(redis_server, tmp_path, providers=("gemini",), concurrency=1,
                       config_overrides={"routes": probe_routes()}) as fleet:
        body = json.dumps({"latency": {"*": {"ttft_ms": 40, "tokens_per_s": 100000}}}).encode()
        req = urllib.request.Request(f"{fleet.simulator.url}/_sim/faults", data=body, method="POST",
                                     headers={"content-type": "application/json"})
        urllib.request.urlopen(req).close()
        batch = [fleet.client.submit("probe-gemini", input={"text": f"batch {i}"}, tier="batch") for i in range(30)]
        time.sleep(0.2)
        interactive = [fleet.client.submit("probe-gemini", input={"text": f"urgent {i}"}, tier="interactive")
                       for i in range(3)]
        finished = {}
        for job in batch + interactive:
            assert job.result(60).ok
            finished[job.id] = int(fleet.client.store.get(job.id).finished_ms)
        batch_done = sorted(finished[j.id] for j in batch)
        for job in interactive:
            overtaken = sum(1 for t in batch_done if t > finished[job.id])
            assert overtaken >= 20, f"interactive job finished ahead of only {overtaken} of 30 batch jobs"
