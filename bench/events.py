"""The cost of Celery task events: N jobs through one openai worker started plainly, then through one started
with ``--events`` (each attempt is then named, its outcome read back and three events published), alternated
over rounds in the same run so both see the same background load.

    .venv/bin/python -m bench.events [--jobs 2000] [--rounds 2] [--threads 64]

Prints jobs per second for each and the ratio events/plain.
"""

from __future__ import annotations

import argparse
import signal
import time

from bench._common import REPO, bench_config, ground
from toolbag.client import JobRequest
from toolbag.config import load_config
from toolbag.devfleet.harness import LocalFleet


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=64)
    args = parser.parse_args()
    with ground("events") as (tmp, server, sim):
        config_path = bench_config(sim.url, tmp)
        procs = LocalFleet(load_config(config_path), server.url, tmp, config_path=config_path, cwd=REPO)
        procs.env.pop("TOOLBAG_SIMULATOR_URL", None)
        rates: dict[str, list[float]] = {"plain": [], "events": []}
        try:
            procs.supervisor()
            for n in range(args.rounds):
                for mode in ("plain", "events"):
                    extra = ["--events"] if mode == "events" else []
                    name = f"worker-{mode}-{n}"
                    procs.start(name, "worker", "--provider", "openai", "--concurrency", str(args.threads), *extra)
                    procs.wait_workers(1, timeout_s=300, max_age_s=5)
                    jobs = [JobRequest("bench", {"text": f"{mode} {n} {i}"}, tier="standard")
                            for i in range(args.jobs)]
                    t0 = time.perf_counter()
                    handles = procs.client.submit_many(jobs)
                    assert all(r.ok for r in procs.client.results(handles, timeout_s=600))
                    rates[mode].append(args.jobs / (time.perf_counter() - t0))
                    procs.kill(name, signal.SIGTERM)
                    del procs.procs[name]  # stopped on purpose: not a worker that "exited early"
                    time.sleep(6)  # the stopped worker's presence ages out before the next one is awaited
        finally:
            procs.stop()
        plain, events = max(rates["plain"]), max(rates["events"])
        print(f"{args.jobs} jobs x {args.rounds} rounds, one worker with {args.threads} threads: plain "
              f"{plain:,.0f} jobs/s, --events {events:,.0f} jobs/s (best round each); ratio events/plain = "
              f"{events / plain:.2f}")


if __name__ == "__main__":
    main()
