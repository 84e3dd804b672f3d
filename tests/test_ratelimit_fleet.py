"""Fleet-wide limits with several real worker processes against the simulator: the vendor's own log is
the judge. Counts per window, never wall-clock speed."""

from __future__ import annotations

import bisect
import copy
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.fleet import Fleet, running_fleet
from toolbag.config import DEFAULT_CONFIG_PATH, TIERS
from toolbag.jobs import JobResult

WINDOW_S = 4.0
MARGIN_S = 0.12  # 3%: absorbs the jitter between a call's start and its arrival at the vendor
RPM = 32  # per WINDOW_S
TPM = 1200  # per WINDOW_S
MAX_OUTPUT = 64
CONCURRENCY = 3
WORKERS = 3

MODELS: dict[str, dict[str, Any]] = {
    "rl-rpm": {"limits": {"rpm": RPM, "concurrency": CONCURRENCY, "window_s": WINDOW_S, "margin_s": MARGIN_S}},
    "rl-tpm": {"limits": {"tpm": TPM, "window_s": WINDOW_S, "margin_s": MARGIN_S}},
    "rl-tier": {"limits": {"rpm": 40, "window_s": WINDOW_S, "margin_s": MARGIN_S, "interactive_reserve": 0.2}},
    "rl-spill-a": {"limits": {"rpm": 2, "window_s": 60}},
    "rl-spill-b": {"limits": {}},
    "rl-warm": {"limits": {}},
}


def overrides() -> dict[str, Any]:
    defaults = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    models = copy.deepcopy(defaults["models"])
    for name, extra in MODELS.items():
        models[name] = {"provider": "openai", "model_id": f"gpt-{name}", "max_output_tokens": MAX_OUTPUT, **extra}
    routes = copy.deepcopy(defaults["routes"])
    for name in ("rl-rpm", "rl-tpm", "rl-tier", "rl-warm"):
        routes[name] = {tier: {"candidates": [name]} for tier in TIERS}
    routes["rl-spill"] = {"interactive": {"candidates": ["rl-spill-a", "rl-spill-b"]}}
    return {"models": models, "routes": routes}


@pytest.fixture(scope="module")
def fleet(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(redis_server, tmp_path_factory.mktemp("rl"), providers=("openai",),
                       concurrency=8, config_overrides=overrides()) as f:
        for n in range(2, WORKERS + 1):
            f.worker("openai", 8, name=f"worker-openai-{n}")
        f.wait_workers(WORKERS)
        sim_post(f, "faults", {"latency": {"gpt-rl-*": {"ttft_ms": 60, "tokens_per_s": 2000}}})
        # Warm every worker (SDK clients, connections): a process's first call can take long enough to
        # reach the vendor after later calls were already sent, which no limiter can see.
        run_all(f, "rl-warm", 10 * WORKERS)
        yield f


def sim_post(fleet: Fleet, path: str, body: dict[str, Any]) -> None:
    req = urllib.request.Request(f"{fleet.simulator.url}/_sim/{path}", data=json.dumps(body).encode(),
                                 method="POST", headers={"content-type": "application/json"})
    urllib.request.urlopen(req).close()


def sim_calls(fleet: Fleet, model_id: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{fleet.simulator.url}/_sim/log") as resp:
        entries: list[dict[str, Any]] = json.load(resp)
    return sorted((e for e in entries if e.get("model") == model_id), key=lambda e: e["time"])


def max_in_window(times_s: list[float], window_s: float) -> int:
    times_s = sorted(times_s)
    return max((bisect.bisect_left(times_s, t + window_s) - i for i, t in enumerate(times_s)), default=0)


def run_all(fleet: Fleet, capability: str, n: int, tier: str = "batch", text: str = "document") -> list[JobResult]:
    from toolbag.client import JobRequest

    jobs = fleet.client.submit_many([JobRequest(capability, {"text": f"{text} {i}"}, tier=tier) for i in range(n)])
    results = list(fleet.client.results(jobs, timeout_s=120))
    assert all(r.ok for r in results), [r for r in results if not r.ok][:2]
    return results


def test_rpm_holds_across_worker_processes_and_is_used(fleet: Fleet) -> None:
    results = run_all(fleet, "rl-rpm", 3 * RPM)
    calls = sim_calls(fleet, "gpt-rl-rpm")
    times = [c["time"] for c in calls]
    assert len(calls) == 3 * RPM, "one vendor call per job: hand-backs are not attempts"
    assert max_in_window(times, WINDOW_S) <= RPM
    achieved = (len(times) - 1) / (times[-1] - times[0]) * WINDOW_S / RPM
    # The limit is used, not just kept. bench/ratelimit.py measures the >= 0.95 target; here, on a shared CI
    # machine where a stalled process shifts calls by tenths of a second, the bound only has to catch a
    # limiter that wastes capacity (no refund, coarse waits, slots held by hand-backs).
    assert achieved >= 0.85, achieved
    # the in-flight limit held at the vendor too
    edges = sorted([(c["time"], 1) for c in calls] + [(c["time"] + c["duration_ms"] / 1000, -1) for c in calls],
                   key=lambda e: (e[0], e[1]))
    inflight = peak = 0
    for _, step in edges:
        inflight += step
        peak = max(peak, inflight)
    assert peak <= CONCURRENCY
    # jobs that could not be served within the short wait went back through the delayed set, not as attempts
    throttled = [r for r in results if any(a.get("action") == "throttle" for a in r.attempts)]
    assert throttled, "a backlog three windows long must be handed back, not held in worker slots"
    assert all(sum(a["type"] == "attempt" for a in r.attempts) == 1 for r in results)
    served_by = {c["request_id"] for c in calls}
    assert all(r.attempts[-1]["request_id"] in served_by for r in results)


def test_tpm_overshoot_is_bounded_by_one_jobs_output(fleet: Fleet) -> None:
    results = run_all(fleet, "rl-tpm", 110, text="a somewhat longer document to summarize, number")
    tokens = {r.attempts[-1]["request_id"]: r.usage["input_tokens"] + r.usage["output_tokens"] for r in results}
    calls = sim_calls(fleet, "gpt-rl-tpm")
    assert len(calls) == len(results)
    starts = [c["time"] for c in calls]
    used = [tokens[c["request_id"]] for c in calls]
    worst = 0
    for i, t in enumerate(starts):
        j = bisect.bisect_left(starts, t + WINDOW_S)
        worst = max(worst, sum(used[i:j]))
    assert worst <= TPM + MAX_OUTPUT, worst
    span = starts[-1] - starts[0]
    assert sum(used[:-1]) / span * WINDOW_S >= 0.5 * TPM  # the reservations are refunded: the limit is used


def test_interactive_is_not_queued_behind_a_saturated_batch_backlog(fleet: Fleet) -> None:
    from toolbag.client import JobRequest

    backlog = fleet.client.submit_many([JobRequest("rl-tier", {"text": f"bulk {i}"}, tier="batch")
                                        for i in range(90)])
    time.sleep(1.5)  # let batch saturate the model
    urgent = []
    for i in range(6):
        urgent.append(fleet.client.submit("rl-tier", input={"text": f"urgent {i}"}, tier="interactive"))
        time.sleep(WINDOW_S / 6)  # 6 per window: inside the interactive share (8 of 40 per window)
    done_urgent = [job.result(60) for job in urgent]
    done_batch = list(fleet.client.results(backlog, timeout_s=120))
    assert all(r.ok for r in done_urgent + done_batch)
    calls = sim_calls(fleet, "gpt-rl-tier")
    assert max_in_window([c["time"] for c in calls], WINDOW_S) <= 40
    batch_ids = {r.attempts[-1]["request_id"] for r in done_batch}
    batch_times = sorted(c["time"] for c in calls if c["request_id"] in batch_ids)
    call_time = {c["request_id"]: c["time"] for c in calls}
    for job, result in zip(urgent, done_urgent, strict=True):
        assert [a["type"] for a in result.attempts] == ["attempt"], "never handed back, never spilled"
        submitted_s = int(fleet.client.store.get(job.id).created_ms) / 1000
        started_s = call_time[result.attempts[-1]["request_id"]]
        batch_in_between = bisect.bisect_left(batch_times, started_s) - bisect.bisect_left(batch_times, submitted_s)
        # the batch lane runs one call per 4.12 s / 32; interactive waits at most about one slot of its own
        # lane (4.12 s / 8): a handful of batch calls, never the backlog of dozens still queued
        assert batch_in_between <= 6, batch_in_between
        still_queued = len(batch_times) - bisect.bisect_left(batch_times, started_s)
        assert still_queued >= 20


def test_interactive_spills_to_the_next_candidate_with_capacity(fleet: Fleet) -> None:
    jobs = [fleet.client.submit("rl-spill", input={"text": f"chat {i}"}, tier="interactive") for i in range(5)]
    results = [job.result(60) for job in jobs]
    assert all(r.ok for r in results)
    assert sorted(r.model or "" for r in results) == ["rl-spill-a"] * 2 + ["rl-spill-b"] * 3
    for r in results:
        assert sum(a["type"] == "attempt" for a in r.attempts) == 1
        if r.model == "rl-spill-b":
            assert [a.get("action") for a in r.attempts if a["type"] == "decision"] == ["spill"]
