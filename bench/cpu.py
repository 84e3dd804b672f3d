"""CPU per job of every fleet process, against the bare OpenAI SDK (sync in threads, and async) making the
same calls to the same simulator in the same run.

    .venv/bin/python -m bench.cpu [--jobs 2000] [--concurrency 256] [--latency-ms 1000] [--modes async,threads]

CPU is user + system time from ``/proc/<pid>/stat`` (Linux), read before and after the jobs: the worker, the
supervisor, Redis, and the submitting client (this process: ``submit_many`` and a completion inbox). The
simulator is the vendor and is not counted on either side. Target: worker CPU per attempt ≤ 1.5× the bare
async SDK's CPU per call.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
import openai

from bench._common import bench_config, flat_latency, fleet, ground
from toolbag.client import Client, JobRequest

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
MESSAGES: list[Any] = [{"role": "system", "content": "Task: bench."}, {"role": "user", "content": "job"}]


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def bare_sync(sim: str, jobs: int, concurrency: int) -> tuple[float, float]:
    """(CPU ms per call, calls/s) of the sync SDK in ``concurrency`` threads."""
    limits = httpx2.Limits(max_connections=concurrency + 16, max_keepalive_connections=concurrency + 16)
    sdk = openai.OpenAI(api_key="sk-bench", base_url=f"{sim}/v1", max_retries=2, timeout=120,
                        http_client=openai.DefaultHttpxClient(limits=limits))

    def call(_: int) -> None:
        sdk.chat.completions.create(model="gpt-6-luna", max_completion_tokens=256, messages=MESSAGES)

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(call, range(min(jobs, concurrency))))  # warm: connections and threads
        c0, t0 = time.process_time(), time.perf_counter()
        list(pool.map(call, range(jobs)))
        c1, t1 = time.process_time(), time.perf_counter()
    sdk.close()
    return (c1 - c0) * 1000 / jobs, jobs / (t1 - t0)


def bare_async(sim: str, jobs: int, concurrency: int) -> tuple[float, float]:
    """(CPU ms per call, calls/s) of the async SDK on one event loop, ``concurrency`` calls at once."""

    async def run() -> tuple[float, float]:
        limits = httpx2.Limits(max_connections=concurrency + 16, max_keepalive_connections=concurrency + 16)
        sdk = openai.AsyncOpenAI(api_key="sk-bench", base_url=f"{sim}/v1", max_retries=2, timeout=120,
                                 http_client=openai.DefaultAsyncHttpxClient(limits=limits))
        gate = asyncio.Semaphore(concurrency)

        async def call() -> None:
            async with gate:
                await sdk.chat.completions.create(model="gpt-6-luna", max_completion_tokens=256, messages=MESSAGES)

        await asyncio.gather(*(call() for _ in range(min(jobs, concurrency))))
        c0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(call() for _ in range(jobs)))
        c1, t1 = time.process_time(), time.perf_counter()
        await sdk.close()
        return (c1 - c0) * 1000 / jobs, jobs / (t1 - t0)

    return asyncio.run(run())


def through_fleet(client: Client, jobs_n: int, tag: str) -> float:
    """Seconds to run ``jobs_n`` jobs (submitted at once, awaited through an inbox); all must succeed."""
    inbox = f"bench:cpu:{tag}"
    t0 = time.perf_counter()
    jobs = client.submit_many([JobRequest("bench", {"text": "job"}, tier="batch") for _ in range(jobs_n)],
                              inbox=inbox)
    pending = {job.id for job in jobs}
    while pending:
        for job_id in client.store.pop_inbox(client.store.keys.inbox(inbox), 500, 5.0):
            pending.discard(job_id)
    elapsed = time.perf_counter() - t0
    if any(s != "succeeded" for s in client.store.statuses([job.id for job in jobs])):
        raise SystemExit(f"{tag}: not every job succeeded")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--latency-ms", type=int, default=1000)
    parser.add_argument("--modes", default="async,threads")
    args = parser.parse_args()
    print(f"{args.jobs} jobs, {args.concurrency} at once, {args.latency_ms} ms vendor latency")
    with ground("cpu", flat_latency(args.latency_ms)) as (tmp, server, sim):
        sync_ms, sync_rate = bare_sync(sim.url, args.jobs, args.concurrency)
        async_ms, async_rate = bare_async(sim.url, args.jobs, args.concurrency)
        print(f"  bare SDK, sync in threads: {sync_ms:.2f} ms CPU per call ({sync_rate:.0f} calls/s)")
        print(f"  bare SDK, async:           {async_ms:.2f} ms CPU per call ({async_rate:.0f} calls/s)")
        for mode in args.modes.split(","):
            with fleet(server.url, bench_config(sim.url, tmp), [("openai", args.concurrency)], mode=mode) as procs:
                through_fleet(procs.client, min(args.jobs, args.concurrency), f"warm-{mode}")
                pids = {name: proc.pid for name, proc in procs.procs.items()} | {"redis": server.proc.pid}
                before = {name: cpu_s(pid) for name, pid in pids.items()}
                c0 = time.process_time()
                elapsed = through_fleet(procs.client, args.jobs, mode)
                client_ms = (time.process_time() - c0) * 1000 / args.jobs
                used = {name: (cpu_s(pid) - before[name]) * 1000 / args.jobs for name, pid in pids.items()}
            used["client"] = client_ms
            worker_ms = sum(v for k, v in used.items() if k.startswith("worker"))
            print(f"  fleet [{mode}]: {args.jobs / elapsed:.0f} jobs/s; CPU per job: "
                  + ", ".join(f"{k} {v:.2f} ms" for k, v in sorted(used.items()))
                  + f"; all {sum(used.values()):.2f} ms")
            print(f"    worker / bare async SDK = {worker_ms / async_ms:.2f} (target ≤ 1.5); "
                  f"worker / bare sync SDK = {worker_ms / sync_ms:.2f}; "
                  f"all processes / bare sync SDK = {sum(used.values()) / sync_ms:.2f}")


if __name__ == "__main__":
    main()
