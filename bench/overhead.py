"""Fleet overhead: N jobs through the fleet vs the same N calls made directly with the OpenAI SDK to the
same simulator, at zero injected latency.

    .venv/bin/python -m bench.overhead [--jobs 300] [--parallel 16] [--load-jobs 2000] [--load-share 0.8]
                                       [--mode async|threads]

Prints the added latency per job (p50/p99, sequential), the throughput ratio (parallel callers), and the added
latency under load: the fleet's capacity is measured (jobs submitted at once, awaited through an inbox), then
jobs arrive at ``--load-share`` of it, evenly paced, and each job's time from submit to its id in the inbox is
compared with a direct SDK call paced the same way. Targets under load: p50 ≤ 20 ms, p99 ≤ 100 ms added.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import openai

from bench._common import bench_config, fleet, ground, percentile, summary_ms
from toolbag.client import Client, JobRequest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--parallel", type=int, default=16)
    parser.add_argument("--load-jobs", type=int, default=2000)
    parser.add_argument("--load-share", type=float, default=0.8)
    parser.add_argument("--mode", default="async", help="the worker's --attempt-loop")
    args = parser.parse_args()
    with ground("overhead") as (tmp, server, sim):
        sdk = openai.OpenAI(api_key="sk-bench", base_url=f"{sim.url}/v1", max_retries=0, timeout=30)

        def direct(i: int) -> float:
            t0 = time.perf_counter()
            sdk.chat.completions.create(model="gpt-6-luna", max_completion_tokens=256, messages=[
                {"role": "system", "content": "Task: bench."}, {"role": "user", "content": f"hello {i}"}])
            return time.perf_counter() - t0

        with fleet(server.url, bench_config(sim.url, tmp), [("openai", 64)], mode=args.mode) as procs:
            client = procs.client

            def through_fleet(i: int) -> float:
                t0 = time.perf_counter()
                result = client.submit("bench", input={"text": f"hello {i}"}, tier="interactive").result(30)
                assert result.ok, result
                return time.perf_counter() - t0

            for i in range(30):  # warm both paths: connections, imports, JIT-free but cache-warm
                direct(i)
                through_fleet(i)
            direct_s, fleet_s = [], []
            for i in range(args.jobs):  # interleaved, so both see the same background load
                direct_s.append(direct(i))
                fleet_s.append(through_fleet(i))
            added_p50_ms = (percentile(fleet_s, 0.5) - percentile(direct_s, 0.5)) * 1000
            added_p99_ms = (percentile(fleet_s, 0.99) - percentile(direct_s, 0.99)) * 1000
            print(f"sequential, {args.jobs} jobs")
            print(f"  direct SDK   {summary_ms(direct_s)}")
            print(f"  fleet        {summary_ms(fleet_s)}")
            print(f"  added per job: p50 {added_p50_ms:.2f} ms, p99 {added_p99_ms:.2f} ms "
                  f"(targets ≤ 5 ms p50, ≤ 20 ms p99)")

            def rate(fn: Callable[[int], float]) -> float:
                jobs: int = args.jobs
                t0 = time.perf_counter()
                with ThreadPoolExecutor(args.parallel) as pool:
                    list(pool.map(fn, range(jobs)))
                return jobs / (time.perf_counter() - t0)

            direct_rate, fleet_rate = rate(direct), rate(through_fleet)
            print(f"parallel ({args.parallel} callers): direct {direct_rate:.0f}/s, fleet {fleet_rate:.0f}/s, "
                  f"ratio fleet/direct = {fleet_rate / direct_rate:.2f}")

            capacity = _capacity(client, args.load_jobs)
            load_rate = args.load_share * capacity
            fleet_load = _paced_fleet(client, args.load_jobs, load_rate)
            direct_load = _paced(direct, args.load_jobs, load_rate)
            added_p50_ms = (percentile(fleet_load, 0.5) - percentile(direct_load, 0.5)) * 1000
            added_p99_ms = (percentile(fleet_load, 0.99) - percentile(direct_load, 0.99)) * 1000
            print(f"under load: capacity {capacity:.0f} jobs/s, {args.load_jobs} jobs arriving at {load_rate:.0f}/s "
                  f"({args.load_share:.0%})")
            print(f"  direct SDK   {summary_ms(direct_load)}")
            print(f"  fleet        {summary_ms(fleet_load)}")
            print(f"  added per job: p50 {added_p50_ms:.2f} ms, p99 {added_p99_ms:.2f} ms "
                  f"(targets ≤ 20 ms p50, ≤ 100 ms p99)")


def _capacity(client: Client, jobs_n: int) -> float:
    """Jobs per second with every job submitted at once (``submit_many``) and awaited through an inbox."""
    inbox = client.store.keys.inbox("bench-overhead-capacity")
    t0 = time.perf_counter()
    jobs = client.submit_many([JobRequest("bench", {"text": f"load {i}"}, tier="batch") for i in range(jobs_n)],
                              inbox="bench-overhead-capacity")
    pending = {job.id for job in jobs}
    while pending:
        for job_id in client.store.pop_inbox(inbox, 500, 5.0):
            pending.discard(job_id)
    return jobs_n / (time.perf_counter() - t0)


def _paced_fleet(client: Client, jobs_n: int, rate: float) -> list[float]:
    """Seconds from submit to the job's id in the inbox, for jobs submitted evenly at ``rate`` per second."""
    name = "bench-overhead-load"
    inbox = client.store.keys.inbox(name)
    submitted: dict[str, float] = {}
    done: dict[str, float] = {}
    lock = threading.Lock()
    finished = threading.Event()

    def collect() -> None:
        while len(done) < jobs_n:
            for job_id in client.store.pop_inbox(inbox, 500, 1.0):
                done[job_id] = time.perf_counter()
        finished.set()

    threading.Thread(target=collect, daemon=True).start()
    t0 = time.perf_counter()
    for i in range(jobs_n):
        delay_s = t0 + i / rate - time.perf_counter()
        if delay_s > 0:
            time.sleep(delay_s)
        at = time.perf_counter()
        job = client.submit_many([JobRequest("bench", {"text": f"paced {i}"}, tier="interactive")], inbox=name)[0]
        with lock:
            submitted[job.id] = at
    if not finished.wait(300):
        raise SystemExit(f"only {len(done)}/{jobs_n} paced jobs finished")
    return [done[job_id] - at for job_id, at in submitted.items()]


def _paced(call: Callable[[int], float], jobs_n: int, rate: float) -> list[float]:
    """Durations of ``call`` started evenly at ``rate`` per second (a pool wide enough never to queue them)."""
    out: list[float] = []
    with ThreadPoolExecutor(256) as pool:
        futures = []
        t0 = time.perf_counter()
        for i in range(jobs_n):
            delay_s = t0 + i / rate - time.perf_counter()
            if delay_s > 0:
                time.sleep(delay_s)
            futures.append(pool.submit(call, i))
        out = [f.result() for f in futures]
    return out


if __name__ == "__main__":
    main()
