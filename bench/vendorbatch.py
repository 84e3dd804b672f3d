"""Bulk lines through vendor batches against the same lines as real-time batch-tier calls, in one run, on the
same simulator and Redis.

    .venv/bin/python -m bench.vendorbatch [--lines 2000] [--slots 64] [--batch-ms 2000] [--latency-ms 0]

The issue's figure is ``--lines 10000``. Each half is one ``toolbag batch run`` of the same JSONL file (a
subprocess: the bulk engine as a user runs it), at the batch tier, on a fleet of one OpenAI worker and a
supervisor (the supervisor runs the vendor-batch poller). The two halves differ only in the route's switch
``policy: {vendor_batch: ...}``; their deadline (two days) lets every job take a vendor batch.

Measured per job, for each half:

- jobs/s end to end (the run's own elapsed time, every line done once);
- Redis commands (``INFO commandstats``, scripts' commands included, as ``bench.rediscost`` counts them),
  minus the fleet's background over an idle window, scaled to the run's length;
- worker CPU (user + system of the worker process, ``/proc``), and the supervisor's, which runs the poller;
- cost: the summed ``cost_usd`` of the results (each at the price of the path that served it);
- real-time rate-limit slots the batch tier used: the real-time vendor calls the simulator answered (each holds
  one slot of the shared limiter), and whether the limiter's keys exist at all after the run.

Targets (vendor batches / real time): cost ≤ 0.55, worker CPU per job ≤ 0.2, real-time slots 0.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import yaml

from bench._common import REPO, bench_config, fleet, scratch_dir, write_faults
from bench.cpu import cpu_s
from bench.rediscost import commandstats
from toolbag.devfleet.harness import RedisServer, SimulatorProcess, private_redis, simulator_process

DEADLINE_S = 2 * 86_400  # a vendor batch may take a day: two leave every job eligible
REALTIME_PATHS = ("/chat/completions", "/responses", "/messages", ":generateContent", ":streamGenerateContent")


@dataclass(frozen=True)
class Half:
    """One half of the run, per job where it says so."""

    name: str
    lines: int
    elapsed_s: float
    redis_commands: float
    worker_cpu_ms: float
    supervisor_cpu_ms: float
    cost_usd: float
    realtime_calls: int
    limiter_keys: int

    @property
    def jobs_per_s(self) -> float:
        return self.lines / self.elapsed_s if self.elapsed_s > 0 else 0.0


def write_lines(path: Path, n: int) -> Path:
    with path.open("w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"doc-{i}", "text": f"document {i}: the quarterly numbers, the launch, "
                                                          "and what the customers said"}) + "\n")
    return path


def half_config(sim_url: str, tmp: Path, vendor_batch: bool, args: argparse.Namespace) -> Path:
    """The bench config with the route's switch set, and the batcher's thresholds short for a benchmark."""
    path = bench_config(sim_url, tmp)
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    data["routes"]["bench"]["batch"]["policy"] = {"vendor_batch": vendor_batch}
    if vendor_batch:
        data["fleet"]["vendor_batch"] = {"max_requests": args.batch_size, "max_age_s": args.max_age_s,
                                         "poll_interval_s": args.poll_s}
    path.write_text(yaml.safe_dump(data))
    return path


def realtime_calls(sim_url: str) -> int:
    """Real-time vendor calls in the simulator's request log (batch, file and upload requests excluded)."""
    with urllib.request.urlopen(f"{sim_url}/_sim/log", timeout=120) as reply:
        log = json.load(reply)
    return sum(1 for entry in log if str(entry["path"]).endswith(REALTIME_PATHS))


def clear_log(sim_url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{sim_url}/_sim/log", method="DELETE"), timeout=30).close()


def limiter_keys(rd: redis.Redis, prefix: str) -> int:
    """The rate limiter's keys of this fleet: none when no attempt ever asked it for a slot."""
    return sum(1 for _ in rd.scan_iter(f"{prefix}rl:*", count=1000))


def batch_run(env: dict[str, str], src: Path, out: Path, lines: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "toolbag.cli", "batch", "run", str(src), "--capability", "bench", "-o", str(out),
           "--tier", "batch", "--deadline-s", str(DEADLINE_S), "--max-in-flight", str(lines), "--json", "--quiet"]
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"batch run failed ({done.returncode}): {done.stderr[-2000:]}")
    summary: dict[str, Any] = json.loads(done.stdout)
    if summary["ok"] != lines or summary["errors"]:
        raise SystemExit(f"not every line succeeded once: {summary}")
    return summary


def run_half(name: str, vendor_batch: bool, server: RedisServer, sim: SimulatorProcess, tmp: Path, src: Path,
             args: argparse.Namespace) -> Half:
    work = tmp / name
    work.mkdir()
    config = half_config(sim.url, work, vendor_batch, args)
    prefix = str(yaml.safe_load(config.read_text())["fleet"]["key_prefix"])
    rd = redis.Redis.from_url(server.url)
    with fleet(server.url, config, [("openai", args.slots)]) as procs:
        pids = {n: p.pid for n, p in procs.procs.items()}
        clear_log(sim.url)
        before = {n: cpu_s(pid) for n, pid in pids.items()}
        rd.config_resetstat()
        summary = batch_run(dict(procs.env), src, work / "out.jsonl", args.lines)
        counts = commandstats(rd)
        used = {n: cpu_s(pid) - before[n] for n, pid in pids.items()}
        calls = realtime_calls(sim.url)
        keys = limiter_keys(rd, prefix)
        elapsed_s = float(summary["elapsed_s"])
        idle_s = min(elapsed_s, args.idle_s)  # the fleet's own background (sweeps, heartbeats, polls) ...
        rd.config_resetstat()
        time.sleep(idle_s)
        idle = commandstats(rd)
    background = sum(idle.values()) * elapsed_s / idle_s  # ... scaled to the run's length
    n = args.lines
    worker_s = sum(v for k, v in used.items() if k.startswith("worker"))
    return Half(name, n, elapsed_s, (sum(counts.values()) - background) / n, worker_s * 1000 / n,
                used.get("supervisor", 0.0) * 1000 / n, float(summary["cost_usd"]), calls, keys)


def show(h: Half) -> None:
    print(f"  {h.name:13} {h.jobs_per_s:8.1f} jobs/s ({h.elapsed_s:.1f} s); {h.redis_commands:6.1f} Redis commands/job;"
          f" CPU/job: worker {h.worker_cpu_ms:.3f} ms, supervisor {h.supervisor_cpu_ms:.3f} ms;"
          f" cost ${h.cost_usd:.4f}; real-time calls {h.realtime_calls}, limiter keys {h.limiter_keys}")


def ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=2000, help="bulk lines per half (the issue's figure: 10000)")
    parser.add_argument("--slots", type=int, default=64, help="the worker's concurrency")
    parser.add_argument("--latency-ms", type=int, default=0, help="the simulator's real-time latency")
    parser.add_argument("--batch-ms", type=int, default=2000, help="the simulator's processing time per batch")
    parser.add_argument("--batch-size", type=int, default=1000, help="fleet.vendor_batch.max_requests")
    parser.add_argument("--max-age-s", type=float, default=2.0, help="fleet.vendor_batch.max_age_s")
    parser.add_argument("--poll-s", type=float, default=1.0, help="fleet.vendor_batch.poll_interval_s")
    parser.add_argument("--idle-s", type=float, default=10.0, help="longest idle window for the background")
    args = parser.parse_args()
    tmp = scratch_dir("vendorbatch")
    plan: dict[str, Any] = {"batches": {"*": {"processing_ms": args.batch_ms}}}
    if args.latency_ms:
        plan["latency"] = {"*": {"ttft_ms": args.latency_ms, "tokens_per_s": 1_000_000}}
    src = write_lines(tmp / "lines.jsonl", args.lines)
    print(f"{args.lines} bulk lines per half (toolbag batch run, batch tier), one openai worker ({args.slots} slots) "
          f"and a supervisor; simulator: real-time latency {args.latency_ms} ms, {args.batch_ms} ms per vendor batch")
    with private_redis() as server, simulator_process(tmp, faults=write_faults(tmp, plan), cwd=REPO) as sim:
        realtime = run_half("real time", False, server, sim, tmp, src, args)
        show(realtime)
        batched = run_half("vendor batch", True, server, sim, tmp, src, args)
        show(batched)
    print("vendor batches / real time:")
    print(f"  cost               {ratio(batched.cost_usd, realtime.cost_usd):.3f}  (target ≤ 0.55)")
    both = ratio(batched.worker_cpu_ms + batched.supervisor_cpu_ms, realtime.worker_cpu_ms + realtime.supervisor_cpu_ms)
    print(f"  worker CPU per job {ratio(batched.worker_cpu_ms, realtime.worker_cpu_ms):.3f}  (target ≤ 0.2); "
          f"worker + supervisor {both:.3f}")
    print(f"  real-time slots    {batched.realtime_calls} used by the batch tier through vendor batches "
          f"(target 0; real time used {realtime.realtime_calls})")
    print(f"  Redis commands/job {ratio(batched.redis_commands, realtime.redis_commands):.3f}; "
          f"jobs/s {ratio(batched.jobs_per_s, realtime.jobs_per_s):.3f}")


if __name__ == "__main__":
    main()
