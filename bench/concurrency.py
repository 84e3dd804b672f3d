"""Attempts in flight per worker process: the simulator answers after 1 s; how many calls does ONE worker
process hold open at the vendor, how many jobs per second does it sustain, and how long does each attempt
hold its lease? Baseline, in the same run: the bare async SDK with the same number of calls at once.

    .venv/bin/python -m bench.concurrency [--jobs 3000] [--concurrency 1000] [--latency-ms 1000]
                                          [--modes async,threads] [--paced-jobs 1500] [--load-share 0.8]

"Open at the vendor" is the simulator's own count of requests it is answering (``GET /_sim/calls``), not the
leases held. The lease time of a job is its completion minus its claim (Redis's clock, from the job record).
Targets: ≥ 1,000 calls open at once, lease p50 ≤ vendor time + 50 ms.

Every job is submitted at once first (saturated: the worker, the simulator, Redis and this process share the
machine, so a lease then also holds its wait for CPU). Then ``--paced-jobs`` arrive evenly at ``--load-share``
of the rate the saturated run reached, and the bare async SDK makes as many calls paced the same way: the lease
time below saturation, against the bare call's time at the same rate. Both are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time

import httpx2
import openai

from bench._common import bench_config, flat_latency, fleet, ground, percentile
from toolbag.client import Client, JobRequest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--latency-ms", type=int, default=1000)
    parser.add_argument("--modes", default="async")
    parser.add_argument("--paced-jobs", type=int, default=1500)
    parser.add_argument("--load-share", type=float, default=0.8)
    args = parser.parse_args()
    print(f"one worker process, {args.concurrency} slots, {args.latency_ms} ms vendor latency, {args.jobs} jobs")
    with ground("concurrency", flat_latency(args.latency_ms)) as (tmp, server, sim):
        http = httpx2.Client(base_url=sim.url)
        http.delete("/_sim/calls")
        direct_rate, call_s = _direct_rate(sim.url, args.jobs, args.concurrency)
        direct_peak = int(http.get("/_sim/calls").json()["peak"])
        call_p50_s = percentile(call_s, 0.5)
        print(f"  bare async SDK, {args.concurrency} at once: {direct_rate:.0f} calls/s, "
              f"peak open at the simulator {direct_peak}, call p50 {call_p50_s * 1000:.0f} ms")
        for mode in args.modes.split(","):
            with fleet(server.url, bench_config(sim.url, tmp), [("openai", args.concurrency)], mode=mode) as procs:
                http.delete("/_sim/calls")
                fleet_rate, leases_peak, lease_s = _fleet_rate(procs.client, args.jobs)
                peak = int(http.get("/_sim/calls").json()["peak"])
                paced_rate = args.load_share * fleet_rate
                http.delete("/_sim/calls")
                paced_lease_s = _paced_fleet(procs.client, args.paced_jobs, paced_rate)
                paced_peak = int(http.get("/_sim/calls").json()["peak"])
            paced_call_s = _paced_direct(sim.url, args.paced_jobs, paced_rate)
            vendor_s = args.latency_ms / 1000
            lease_p50_s = percentile(lease_s, 0.5)
            print(f"  fleet [{mode}]: {fleet_rate:.0f} jobs/s; peak open at the simulator {peak} "
                  f"(leases held at most {leases_peak}); lease p50 {percentile(lease_s, 0.5) * 1000:.0f} ms "
                  f"p99 {percentile(lease_s, 0.99) * 1000:.0f} ms: p50 +{(lease_p50_s - vendor_s) * 1000:.0f}"
                  f" ms over the configured latency, +{(lease_p50_s - call_p50_s) * 1000:.0f} ms over the "
                  f"bare SDK's call p50")
            print(f"    ratio fleet/bare async SDK: throughput {fleet_rate / direct_rate:.2f}, "
                  f"open calls {peak / max(1, direct_peak):.2f}")
            paced_p50_s, call_paced_p50_s = percentile(paced_lease_s, 0.5), percentile(paced_call_s, 0.5)
            print(f"  paced [{mode}]: {args.paced_jobs} jobs arriving at {paced_rate:.0f}/s ({args.load_share:.0%} of "
                  f"the saturated rate), peak open at the simulator {paced_peak}; lease p50 "
                  f"{paced_p50_s * 1000:.0f} ms p99 {percentile(paced_lease_s, 0.99) * 1000:.0f} ms: p50 "
                  f"+{(paced_p50_s - vendor_s) * 1000:.0f} ms over the configured latency (target ≤ 50), "
                  f"+{(paced_p50_s - call_paced_p50_s) * 1000:.0f} ms over the bare SDK's call p50 at the same rate "
                  f"({call_paced_p50_s * 1000:.0f} ms)")


def _direct_rate(sim: str, jobs: int, concurrency: int) -> tuple[float, list[float]]:
    """(calls/s, each call's duration) of the bare async SDK, ``concurrency`` calls at once."""
    durations: list[float] = []

    async def run() -> float:
        limits = httpx2.Limits(max_connections=concurrency + 16, max_keepalive_connections=concurrency + 16)
        sdk = openai.AsyncOpenAI(api_key="sk-bench", base_url=f"{sim}/v1", max_retries=2, timeout=120,
                                 http_client=openai.DefaultAsyncHttpxClient(limits=limits))
        gate = asyncio.Semaphore(concurrency)

        async def call(i: int) -> None:
            async with gate:
                started = time.perf_counter()
                await sdk.chat.completions.create(model="gpt-6-luna", max_completion_tokens=256, messages=[
                    {"role": "system", "content": "Task: bench."}, {"role": "user", "content": f"job {i}"}])
                durations.append(time.perf_counter() - started)

        t0 = time.perf_counter()
        await asyncio.gather(*(call(i) for i in range(jobs)))
        rate = jobs / (time.perf_counter() - t0)
        await sdk.close()
        return rate

    return asyncio.run(run()), durations


def _paced_direct(sim: str, jobs: int, rate: float) -> list[float]:
    """Each call's duration, the bare async SDK's calls started evenly at ``rate`` per second."""
    durations: list[float] = []

    async def run() -> None:
        limits = httpx2.Limits(max_connections=1016, max_keepalive_connections=1016)
        sdk = openai.AsyncOpenAI(api_key="sk-bench", base_url=f"{sim}/v1", max_retries=2, timeout=120,
                                 http_client=openai.DefaultAsyncHttpxClient(limits=limits))

        async def call(i: int) -> None:
            started = time.perf_counter()
            await sdk.chat.completions.create(model="gpt-6-luna", max_completion_tokens=256, messages=[
                {"role": "system", "content": "Task: bench."}, {"role": "user", "content": f"paced {i}"}])
            durations.append(time.perf_counter() - started)

        calls = []
        t0 = time.perf_counter()
        for i in range(jobs):
            delay_s = t0 + i / rate - time.perf_counter()
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            calls.append(asyncio.create_task(call(i)))
        await asyncio.gather(*calls)
        await sdk.close()

    asyncio.run(run())
    return durations


def _paced_fleet(client: Client, jobs_n: int, rate: float) -> list[float]:
    """Lease times (s) of ``jobs_n`` jobs submitted evenly at ``rate`` per second; all must succeed."""
    inbox = "bench:concurrency:paced"
    ids: list[str] = []
    t0 = time.perf_counter()
    for i in range(jobs_n):
        delay_s = t0 + i / rate - time.perf_counter()
        if delay_s > 0:
            time.sleep(delay_s)
        ids.append(client.submit_many([JobRequest("bench", {"text": f"paced {i}"}, tier="batch")], inbox=inbox)[0].id)
    pending = set(ids)
    while pending:
        for job_id in client.store.pop_inbox(client.store.keys.inbox(inbox), 500, 5.0):
            pending.discard(job_id)
    return _lease_times(client, ids)


def _lease_times(client: Client, ids: list[str]) -> list[float]:
    """Each job's completion minus its claim (s), on Redis's clock; exits unless every job succeeded."""
    records = [snap for snap in client.store.snapshot_many(ids) if snap is not None]
    ok = [record for record, _ in records if record.status.value == "succeeded"]
    if len(ok) != len(ids):
        raise SystemExit(f"only {len(ok)}/{len(ids)} jobs succeeded")
    return [(record.finished_ms - record.started_ms) / 1000 for record in ok]


def _fleet_rate(client: Client, jobs_n: int) -> tuple[float, int, list[float]]:
    peak = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.05):
            peak[0] = max(peak[0], client.store.redis.zcard(client.store.keys.leases))

    threading.Thread(target=watch, daemon=True).start()
    inbox = "bench:concurrency"
    t0 = time.perf_counter()
    jobs = client.submit_many([JobRequest("bench", {"text": f"job {i}"}, tier="batch") for i in range(jobs_n)],
                              inbox=inbox)
    pending = {job.id for job in jobs}
    while pending:
        for job_id in client.store.pop_inbox(client.store.keys.inbox(inbox), 500, 5.0):
            pending.discard(job_id)
    elapsed = time.perf_counter() - t0
    stop.set()
    return jobs_n / elapsed, peak[0], _lease_times(client, [job.id for job in jobs])


if __name__ == "__main__":
    main()
