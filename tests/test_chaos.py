"""Chaos: hundreds of jobs, realistic vendor faults, workers SIGKILLed mid-attempt, the supervisor killed and
restarted — and the two promises still hold: nothing lost, nothing completed twice."""

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
from toolbag.config import DEFAULT_CONFIG_PATH, TIERS
from toolbag.jobs import JobStatus, ResultTimeout

JOBS = 540
CAPABILITIES = ("summarize", "extract", "classify", "translate", "answer", "code-review")
PROVIDERS = ("anthropic", "openai", "gemini")
FAULTS = {
    "seed": 11,
    "rules": [
        {"model": "*", "fault": "refusal", "probability": 0.10},
        {"model": "*", "fault": "rate_limit:1", "probability": 0.05},
        {"model": "*", "fault": "server_error", "probability": 0.025},
        {"model": "*", "fault": "overloaded", "probability": 0.025},
        {"model": "*", "fault": "hang", "probability": 0.02},
    ],
    "latency": {"*": {"ttft_ms": 150, "tokens_per_s": 400}},
}


@pytest.mark.slow
def test_chaos_nothing_lost_nothing_twice(redis_server: str, tmp_path: Path) -> None:
    fleet_cfg = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())["fleet"]
    fleet_cfg.update({"lease_ttl_s": 2, "key_prefix": "chaos:", "stuck_deciding_s": 4, "unclaimed_delivery_s": 5})
    with running_fleet(redis_server, tmp_path, providers=PROVIDERS, concurrency=40,
                       config_overrides={"fleet": fleet_cfg}) as fleet:
        fleet.supervisor("supervisor-2")  # two replicas sweeping and deciding at once
        fleet.simulator.set_faults(FAULTS)
        store = fleet.client.store
        lease_ttl_s = fleet.config.fleet.lease_ttl_s
        jobs = fleet.client.submit_many(
            JobRequest(CAPABILITIES[i % len(CAPABILITIES)], {"text": f"chaos job {i}: the fleet must hold"},
                       tier=TIERS[i % 3], caller=f"caller-{i % 7}")
            for i in range(JOBS)
        )
        recoveries: list[float] = []

        def kill_worker_mid_attempt(provider: str, restart_as: str) -> None:
            name = next(n for n in reversed(list(fleet.procs)) if n.startswith(f"worker-{provider}"))
            deadline = time.monotonic() + 30
            while True:  # wait until this worker really holds attempts
                running = [m for m in store.redis.zrange(store.keys.leases, 0, -1)]
                mine = [m.decode().rpartition(":")[0] for m in running
                        if store.get(m.decode().rpartition(":")[0]).provider == provider]
                if mine or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            assert mine, f"no attempt in flight on {provider} to kill"
            pid = fleet.procs[name].pid
            fleet.kill(name, signal.SIGKILL)
            killed_at = time.monotonic()
            # the attempts this worker really held when it died (others may have ended just before)
            pending = {j for j in mine if store.get(j).status == "running"
                       and store.get(j).worker.endswith(f":{pid}")}
            assert pending, "the kill caught no attempt mid-flight"
            fleet.worker(provider, concurrency=40, name=restart_as)
            while pending:
                for job_id in list(pending):
                    if any(h.get("outcome") == "lost" for h in store.history(job_id)) or \
                            JobStatus(store.get(job_id).status).terminal:
                        pending.discard(job_id)
                        recoveries.append(time.monotonic() - killed_at)
                assert time.monotonic() - killed_at < 2 * lease_ttl_s + 2, (
                    f"not recovered in time: {[(store.get(j), store.history(j)) for j in pending]}; "
                    f"leases {store.redis.zrange(store.keys.leases, 0, -1, withscores=True)}, now {time.time()}")
                time.sleep(0.05)

        time.sleep(1.0)
        kill_worker_mid_attempt("openai", "worker-openai-2")
        fleet.kill("supervisor", signal.SIGKILL)
        time.sleep(1.0)
        fleet.supervisor("supervisor-restarted")
        kill_worker_mid_attempt("anthropic", "worker-anthropic-2")

        try:
            results = {r.job_id: r for r in fleet.client.results(jobs, timeout_s=240)}
        except ResultTimeout:
            stuck = [j.id for j in jobs if not JobStatus(store.get(j.id).status).terminal]
            pytest.fail(f"{len(stuck)} jobs never finished: {[pointer_report(store, j) for j in stuck[:5]]}")

        # 1. Nothing lost: every job is terminal.
        statuses = collections.Counter(r.status for r in results.values())
        assert len(results) == JOBS and all(s.terminal for s in statuses), statuses

        # 2. Nothing twice: one completion per succeeded job in the audit ledger, none for the others.
        completions: collections.Counter[str] = collections.Counter()
        last = "-"
        while True:
            batch: Any = store.redis.xrange(store.keys.audit, min=f"({last}" if last != "-" else "-", count=5000)
            if not batch:
                break
            for _entry_id, fields in batch:
                if fields.get(b"kind") == b"completed":
                    completions[fields[b"job"].decode()] += 1
            last = batch[-1][0].decode()
        for job_id, result in results.items():
            expected = 1 if result.status is JobStatus.SUCCEEDED else 0
            assert completions[job_id] == expected, (job_id, result.status, completions[job_id])
            ok_attempts = [a for a in result.attempts if a["type"] == "attempt" and a["outcome"] == "ok"]
            assert len(ok_attempts) == expected

        # 3. Refused work went elsewhere or to a human; never back to a model that refused.
        refused_jobs = 0
        for result in results.values():
            tries = [a for a in result.attempts if a["type"] == "attempt"]
            refusers = {a["model"] for a in tries if a["outcome"] == "refused"}
            if not refusers:
                continue
            refused_jobs += 1
            assert result.status in (JobStatus.SUCCEEDED, JobStatus.ESCALATED, JobStatus.FAILED), result.status
            after_refusal = [a["model"] for a in tries[[a["outcome"] for a in tries].index("refused") + 1:]]
            first_refuser = next(a["model"] for a in tries if a["outcome"] == "refused")
            assert first_refuser not in after_refusal, "a refused job went back to the model that refused it"
            if result.status is JobStatus.SUCCEEDED:
                assert result.model not in refusers
                assert result.provider != fleet.config.provider_of(first_refuser) or all(
                    fleet.config.provider_of(m) == result.provider
                    for m in fleet.config.route(result.capability, result.tier).candidates if m not in refusers
                ), "a refused job should succeed on another vendor when the route has one"
        assert refused_jobs >= 20, "the simulator's refusal rate did not show up"

        # 4. Killed workers' attempts were recovered within two lease TTLs (plus one sweep tick).
        assert recoveries and max(recoveries) <= 2 * lease_ttl_s + 0.5, recoveries
        assert statuses[JobStatus.SUCCEEDED] >= JOBS * 0.8, statuses
