"""The vendor-batch path in a real fleet: Celery workers and two supervisors as OS processes, a supervisor and a
worker SIGKILLed while vendor batches are pending, submitted and running, and every job still ends exactly once."""

from __future__ import annotations

import collections
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fleet import pointer_report, running_fleet
from toolbag.client import JobRequest
from toolbag.config import DEFAULT_CONFIG_PATH
from toolbag.jobs import JobStatus, ResultTimeout


def completions(store: Any) -> collections.Counter[str]:
    """Completions per job in the audit stream (complete.lua writes one per successful completion)."""
    counted: collections.Counter[str] = collections.Counter()
    for _entry_id, fields in store.redis.xrange(store.keys.audit, count=100_000):
        if fields.get(b"kind") == b"completed":
            counted[fields[b"job"].decode()] += 1
    return counted


@pytest.mark.slow
def test_killed_supervisor_and_worker_during_vendor_batches_lose_nothing(redis_server: str, tmp_path: Path) -> None:
    defaults = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    models = defaults["models"]
    for name in ("gpt-luna", "claude-haiku"):
        models[name]["features"] = {**models[name].get("features", {}), "batch": True}
    fleet_cfg = defaults["fleet"]
    fleet_cfg.update({"lease_ttl_s": 2, "key_prefix": "vbkill:", "stuck_deciding_s": 4, "unclaimed_delivery_s": 5,
                      "vendor_batch": {"max_requests": 25, "max_age_s": 0.5, "poll_interval_s": 0.2,
                                       "stuck_after_s": 30, "creating_timeout_s": 3,
                                       "lock_ttl_s": 2}})
    routes = defaults["routes"]
    routes["summarize"]["batch"]["policy"] = {"vendor_batch_bound_s": 60}  # a day's deadline is plenty
    with running_fleet(redis_server, tmp_path, providers=("openai", "anthropic"), concurrency=20,
                       config_overrides={"fleet": fleet_cfg, "models": models, "routes": routes}) as fleet:
        fleet.supervisor("supervisor-2")  # two supervisors: one poller per provider between them
        fleet.simulator.set_faults({"batches": {"*": {"processing_ms": 1500}}})
        store = fleet.client.store

        def wave(n: int, start: int) -> list[Any]:
            return fleet.client.submit_many(
                JobRequest("summarize", {"text": f"line {start + i} [[sim:refusal@claude-*]]" if i % 5 == 0
                                         else f"line {start + i}"},
                           tier="batch", candidates=("claude-haiku", "gpt-luna") if i % 2 else ("gpt-luna",))
                for i in range(n))

        jobs = wave(100, 0)
        deadline = time.monotonic() + 30
        while not any(store.redis.zcard(store.keys.vb_open(p)) for p in ("openai", "anthropic")):
            assert time.monotonic() < deadline, "no vendor batch was taken"
            time.sleep(0.02)
        fleet.kill("supervisor", signal.SIGKILL)  # one poller dies with batches open
        jobs += wave(60, 100)
        time.sleep(0.05)
        fleet.kill("worker-openai", signal.SIGKILL)  # a worker dies while claiming and holding
        time.sleep(0.5)
        fleet.worker("openai", 20, name="worker-openai-2")
        fleet.supervisor("supervisor-restarted")
        jobs += wave(40, 160)
        fleet.kill("supervisor-2", signal.SIGKILL)  # the other poller dies too; the restarted one takes over
        try:
            results = {r.job_id: r for r in fleet.client.results(jobs, timeout_s=180)}
        except ResultTimeout:
            stuck = [j.id for j in jobs if not JobStatus(store.get(j.id).status).terminal]
            pytest.fail(f"{len(stuck)} jobs never finished: {[pointer_report(store, j) for j in stuck[:3]]}")
        assert len(results) == len(jobs) == 200
        statuses = collections.Counter(r.status for r in results.values())
        assert statuses == {JobStatus.SUCCEEDED: 200}, statuses
        counted = completions(store)
        paths: collections.Counter[str] = collections.Counter()
        for job_id, result in results.items():
            assert counted[job_id] == 1, (job_id, result.attempts)
            oks = [a for a in result.attempts if a["type"] == "attempt" and a["outcome"] == "ok"]
            assert len(oks) == 1
            paths[oks[0]["path"]] += 1
        assert paths["vendor_batch"] == 200, paths
        deadline = time.monotonic() + 10
        while store.redis.zcard(store.keys.vb_held) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert store.redis.zcard(store.keys.vb_held) == 0
