"""Attempts in flight per worker process: the simulator answers after 1 s; how many calls does ONE worker
process hold open at the vendor, how many jobs per second does it sustain, and how long does each attempt
hold its lease? Baseline, in the same run: the bare async SDK with the same number of calls at once.

    .venv/bin/python -m bench.concurrency [--jobs 3000] [--concurrency 1000] [--latency-ms 1000]
                                          [--modes async,threads]

"Open at the vendor" is the simulator's own count of requests it is answering (``GET /_sim/calls``), not the
leases held. The lease time of a job is its completion minus its claim (Redis's clock, from the job record).
Targets: ≥ 1,000 calls open at once, lease p50 ≤ vendor time + 50 ms.
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
            vendor_s = args.latency_ms / 1000
            lease_p50_s = percentile(lease_s, 0.5)
            print(f"  fleet [{mode}]: {fleet_rate:.0f} jobs/s; peak open at the simulator {peak} "
                  f"(leases held at most {leases_peak}); lease p50 {percentile(lease_s, 0.5) * 1000:.0f} ms "
                  f"p99 {percentile(lease_s, 0.99) * 1000:.0f} ms: p50 +{(lease_p50_s - vendor_s) * 1000:.0f}"
                  f" ms over the configured latency, +{(lease_p50_s - call_p50_s) * 1000:.0f} ms over the "
                  f"bare SDK's call p50")
            print(f"    ratio fleet/bare async SDK: throughput {fleet_rate / direct_rate:.2f}, "
                  f"open calls {peak / max(1, direct_peak):.2f}")


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
    records = [snap for snap in client.store.snapshot_many([job.id for job in jobs]) if snap is not None]
    ok = [record for record, _ in records if record.status.value == "succeeded"]
    if len(ok) != jobs_n:
        raise SystemExit(f"only {len(ok)}/{jobs_n} jobs succeeded")
    lease_s = [(record.finished_ms - record.started_ms) / 1000 for record in ok]
    return jobs_n / elapsed, peak[0], lease_s


if __name__ == "__main__":
    main()
