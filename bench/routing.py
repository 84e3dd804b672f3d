"""Routing policies on one fixed workload: cost of ``cheapest`` and p50 latency of ``fastest`` against
``order`` (today's default), in one run.

    .venv/bin/python -m bench.routing [--jobs 1000] [--wave 100]

Three candidates with the embedded defaults' prices and a latency set per model in the simulator: the route's
first (claude-sonnet) is dear and middling, gemini-flash is mid-priced and fastest, gpt-luna cheapest and
slowest. Each policy runs the same 1,000 jobs in waves (so the health data ``fastest`` reads is fed by the
waves before), after a few warm-up calls on every candidate. Cost is what the fleet priced from the
simulator's reported usage; latency is each job's vendor call.
"""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path
from typing import Any

import yaml

from bench._common import fleet, ground, percentile
from toolbag.client import Client, JobRequest
from toolbag.config import DEFAULT_CONFIG_PATH, TIERS
from toolbag.jobs import JobResult

CANDIDATES = ["claude-sonnet", "gemini-flash", "gpt-luna"]
LATENCY = {  # per vendor model id: time to first token (ms) and pace
    "claude-sonnet-*": {"ttft_ms": 150, "tokens_per_s": 4000},
    "gemini-3.8-flash": {"ttft_ms": 40, "tokens_per_s": 4000},
    "gpt-6-luna": {"ttft_ms": 250, "tokens_per_s": 4000},
}
POLICIES = ("order", "cheapest", "fastest", "weighted")


def write_config(tmp: Path, sim_url: str) -> Path:
    data: dict[str, Any] = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["simulator_url"] = sim_url
    data["fleet"]["key_prefix"] = f"b{uuid.uuid4().hex[:6]}:"
    for tier in data["tiers"].values():
        tier["stream"] = False
    for model in data["models"].values():
        model["limits"] = {"rpm": 10_000_000, "tpm": 10_000_000_000, "concurrency": 100_000}
    for policy in POLICIES:
        route: dict[str, Any] = {"candidates": CANDIDATES, "routing": policy}
        if policy == "weighted":
            route["weights"] = [1, 1, 1]
        data["routes"][f"route-{policy}"] = {t: route for t in TIERS}
    path = tmp / "toolbag.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_policy(client: Client, policy: str, jobs: int, wave: int) -> list[JobResult]:
    results: list[JobResult] = []
    for start in range(0, jobs, wave):
        batch = client.submit_many([JobRequest(f"route-{policy}", {"text": f"workload item {i}: " + "word " * (i % 40)},
                                               tier="standard") for i in range(start, min(jobs, start + wave))])
        results += client.results(batch, timeout_s=600)
    bad = [r for r in results if not r.ok]
    if bad:
        raise SystemExit(f"{len(bad)} {policy} jobs failed, e.g. {bad[0]}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--wave", type=int, default=100, help="jobs submitted at once (health is read at submit)")
    args = parser.parse_args()
    with ground("routing", LATENCY) as (tmp, server, sim):
        config_path = write_config(tmp, sim.url)
        workers = [("anthropic", 32), ("openai", 32), ("gemini", 32)]
        with fleet(server.url, config_path, workers) as procs:
            client = procs.client
            for model in CANDIDATES:  # warm every worker and give the health data a first measurement
                warm = client.submit_many([JobRequest("route-order", {"text": f"warm {i}"}, candidates=(model,))
                                           for i in range(10)])
                list(client.results(warm, timeout_s=120))
            rows: dict[str, tuple[float, float, dict[str, int]]] = {}
            for policy in POLICIES:
                results = run_policy(client, policy, args.jobs, args.wave)
                cost = sum(r.cost_usd for r in results)
                latency = [float(r.attempts[-1]["latency_s"]) for r in results]
                served: dict[str, int] = {}
                for r in results:
                    served[str(r.model)] = served.get(str(r.model), 0) + 1
                rows[policy] = (cost, percentile(latency, 0.5), served)
                print(f"{policy:9s} cost ${cost:.4f}  p50 latency {percentile(latency, 0.5) * 1000:6.0f} ms  "
                      f"served by {served}", flush=True)
    base_cost, base_p50, _ = rows["order"]
    print()
    print(f"{args.jobs} jobs per policy; route order: {', '.join(CANDIDATES)}")
    print(f"cheapest: cost ${rows['cheapest'][0]:.4f} vs order ${base_cost:.4f} = "
          f"{rows['cheapest'][0] / base_cost:.3f}x")
    print(f"fastest:  p50 latency {rows['fastest'][1] * 1000:.0f} ms vs order {base_p50 * 1000:.0f} ms = "
          f"{rows['fastest'][1] / base_p50:.3f}x")


if __name__ == "__main__":
    main()
