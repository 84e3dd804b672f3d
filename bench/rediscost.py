"""Redis work per job: every command Redis executed (``INFO commandstats``, the commands scripts run
included) and the script calls, per job on the happy path, for each attempt mode of the worker.

    .venv/bin/python -m bench.rediscost [--jobs 1000] [--modes async,threads] [--limits on,off] [--window-s 60]

The jobs are submitted with ``submit_many`` and awaited through a completion inbox, as a batch caller does.
Every model has an rpm, a tpm and a concurrency limit (far above what the run reaches: the limiter's work is
measured, its decisions never bind); ``--limits off`` measures the same without any limit. The limits' window
is a minute, longer than the run: ``--window-s 0.5`` shows the steady state of a long run instead, where every
admission also prunes the calls that left the window from the call log. The fleet's own
background work in the same time (sweeps, heartbeats, the consumers' polls) is measured over an
idle window of the same length and shown apart: "per job" is the run minus that background. Redis's CPU per job
(``INFO cpu``, user + system, the same background subtracted) says how many jobs per second one Redis core
carries.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any

import redis

from bench._common import bench_config, fleet, ground
from toolbag.client import Client, JobRequest

SCRIPT_COMMANDS = ("evalsha", "eval", "evalsha_ro", "eval_ro", "fcall", "fcall_ro")
NOT_COUNTED = ("info", "config|resetstat", "config")  # the measurement's own


def commandstats(client: redis.Redis) -> Counter[str]:
    stats: dict[str, Any] = client.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()
                    if name.removeprefix("cmdstat_") not in NOT_COUNTED})


def redis_cpu_s(client: redis.Redis) -> float:
    """CPU seconds the Redis server has used (user + system), scripts and networking included."""
    cpu: dict[str, Any] = client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def window(client: redis.Redis, seconds: float) -> tuple[Counter[str], float]:
    client.config_resetstat()
    cpu0 = redis_cpu_s(client)
    time.sleep(seconds)
    return commandstats(client), redis_cpu_s(client) - cpu0


def run_jobs(client: Client, rd: redis.Redis, jobs_n: int, tag: str) -> tuple[Counter[str], float, float]:
    """(commands, seconds, Redis CPU seconds) of ``jobs_n`` jobs from submit to their completion."""
    inbox = f"bench:inbox:{tag}"
    rd.config_resetstat()
    cpu0 = redis_cpu_s(rd)
    t0 = time.perf_counter()
    jobs = client.submit_many([JobRequest("bench", {"text": f"job {i}"}, tier="batch") for i in range(jobs_n)],
                              inbox=inbox)
    pending = {job.id for job in jobs}
    while pending:
        for job_id in client.store.pop_inbox(client.store.keys.inbox(inbox), 500, 5.0):
            pending.discard(job_id)
    elapsed = time.perf_counter() - t0
    counts = commandstats(rd)
    cpu_s = redis_cpu_s(rd) - cpu0
    statuses = client.store.statuses([job.id for job in jobs])
    if any(s != "succeeded" for s in statuses):
        raise SystemExit(f"{tag}: not every job succeeded: {Counter(statuses)}")
    return counts, elapsed, cpu_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--modes", default="async,threads")
    parser.add_argument("--limits", default="on", help="on, off, or on,off: rate limits on every model or none")
    parser.add_argument("--window-s", type=float, default=60.0, help="the limits' window (s)")
    args = parser.parse_args()
    print(f"{args.jobs} jobs, one openai worker (64 slots) and a supervisor, simulator at 0 ms latency")
    with ground("rediscost") as (tmp, server, sim):
        rd = redis.Redis.from_url(server.url)
        for limits, mode in [(lim, m) for lim in args.limits.split(",") for m in args.modes.split(",")]:
            config = bench_config(sim.url, tmp, limits=limits == "on", window_s=args.window_s)
            with fleet(server.url, config, [("openai", 64)], mode=mode) as procs:
                run_jobs(procs.client, rd, 100, f"warm-{mode}")
                counts, elapsed, cpu_s = run_jobs(procs.client, rd, args.jobs, mode)
                idle, idle_cpu_s = window(rd, elapsed)
            scripts = sum(counts[c] for c in SCRIPT_COMMANDS)
            idle_scripts = sum(idle[c] for c in SCRIPT_COMMANDS)
            total, idle_total = sum(counts.values()), sum(idle.values())
            per_job = (total - idle_total) / args.jobs
            print(f"[{mode}, limits {limits}] {elapsed:.1f} s: {per_job:.1f} commands per job "
                  f"({total / args.jobs:.1f} with the background of {idle_total / args.jobs:.1f}), "
                  f"{(scripts - idle_scripts) / args.jobs:.2f} script calls per job, "
                  f"Redis CPU {(cpu_s - idle_cpu_s) / args.jobs * 1000:.3f} ms per job")
            top = [(name, n) for name, n in (counts - idle).most_common() if n / args.jobs >= 0.01]
            print("   " + ", ".join(f"{name} {n / args.jobs:.2f}" for name, n in top))


if __name__ == "__main__":
    main()
