"""Attempts in flight per worker process: the simulator answers after 1 s; how many jobs per second
does ONE worker process sustain? Baseline: the ideal for that many slots, concurrency / latency.

    .venv/bin/python -m bench.concurrency [--jobs 1500] [--concurrency 256] [--latency-ms 1000]

Target: ≥ 200 in flight, ≥ 150 jobs/s at 1 s vendor latency.
"""

from __future__ import annotations

import argparse
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2
import openai

from bench._common import REPO, bench_config, fleet, scratch_dir, write_faults
from toolbag.client import Client, JobRequest
from toolbag.devfleet.harness import private_redis, simulator_process


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--latency-ms", type=int, default=1000)
    args = parser.parse_args()
    latency = {"*": {"ttft_ms": args.latency_ms, "tokens_per_s": 1_000_000}}
    tmp = scratch_dir("concurrency")
    with private_redis() as server, simulator_process(tmp, faults=write_faults(tmp, {"latency": latency}),
                                                      cwd=REPO) as sim:
        direct_rate = _direct_rate(sim.url, args.jobs, args.concurrency)
        with fleet(server.url, bench_config(sim.url, tmp), [("openai", args.concurrency)]) as procs:
            fleet_rate, peak = _fleet_rate(procs.client, args.jobs)
    ideal = args.concurrency / (args.latency_ms / 1000)
    print(f"one process, {args.concurrency} threads, {args.latency_ms} ms vendor latency, {args.jobs} jobs")
    print(f"  bare SDK in {args.concurrency} threads: {direct_rate:.0f} calls/s")
    print(f"  one fleet worker process: {fleet_rate:.0f} jobs/s, peak attempts in flight {peak}")
    print(f"  ratio fleet/bare SDK {fleet_rate / direct_rate:.2f}; "
          f"fleet/ideal ({ideal:.0f}/s) {fleet_rate / ideal:.2f}")


def _direct_rate(sim: str, jobs: int, threads: int) -> float:
    limits = httpx2.Limits(max_connections=threads + 16, max_keepalive_connections=threads + 16)
    sdk = openai.OpenAI(api_key="sk-bench", base_url=f"{sim}/v1", max_retries=0,
                        http_client=openai.DefaultHttpxClient(limits=limits))

    def call(i: int) -> None:
        sdk.chat.completions.create(model="gpt-6-luna", max_completion_tokens=256, messages=[
            {"role": "system", "content": "Task: bench."}, {"role": "user", "content": f"job {i}"}])

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(call, range(jobs)))
    return jobs / (time.perf_counter() - t0)


def _fleet_rate(client: Client, jobs_n: int) -> tuple[float, int]:
    peak = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.05):
            peak[0] = max(peak[0], client.store.redis.zcard(client.store.keys.leases))

    threading.Thread(target=watch, daemon=True).start()
    t0 = time.perf_counter()
    jobs = client.submit_many([JobRequest("bench", {"text": f"job {i}"}, tier="batch") for i in range(jobs_n)])
    ok = sum(1 for r in client.results(jobs, timeout_s=600) if r.ok)
    elapsed = time.perf_counter() - t0
    stop.set()
    if ok != jobs_n:
        raise SystemExit(f"only {ok}/{jobs_n} jobs succeeded")
    return ok / elapsed, peak[0]


if __name__ == "__main__":
    main()
