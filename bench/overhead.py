"""Fleet overhead: N jobs through the fleet vs the same N calls made directly with the OpenAI SDK to the
same simulator, at zero injected latency.

    .venv/bin/python -m bench.overhead [--jobs 300] [--parallel 16]

Prints the added latency per job (p50/p99, sequential) and the throughput ratio (parallel callers).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import openai

from bench._common import REPO, bench_config, fleet, percentile, scratch_dir, summary_ms
from toolbag.devfleet.harness import private_redis, simulator_process


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--parallel", type=int, default=16)
    args = parser.parse_args()
    tmp = scratch_dir("overhead")
    with private_redis() as server, simulator_process(tmp, cwd=REPO) as sim:
        sdk = openai.OpenAI(api_key="sk-bench", base_url=f"{sim.url}/v1", max_retries=0, timeout=30)

        def direct(i: int) -> float:
            t0 = time.perf_counter()
            sdk.chat.completions.create(model="gpt-6-luna", max_completion_tokens=256, messages=[
                {"role": "system", "content": "Task: bench."}, {"role": "user", "content": f"hello {i}"}])
            return time.perf_counter() - t0

        with fleet(server.url, bench_config(sim.url, tmp), [("openai", 64)]) as procs:
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


if __name__ == "__main__":
    main()
