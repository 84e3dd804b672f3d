"""Enqueue rate: ``Client.submit_many`` (validated jobs, atomic job record + message each) vs plain Celery
``apply_async`` of a trivial task to the same Redis, measured in the same run.

    .venv/bin/python -m bench.enqueue [--jobs 5000]

Target: submit_many ≥ 5× apply_async.
"""

from __future__ import annotations

import argparse
import time

from celery import Celery

from toolbag.client import Client, JobRequest
from toolbag.config import load_config
from toolbag.devfleet.harness import private_redis


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=5000)
    args = parser.parse_args()
    with private_redis() as server:
        redis_url = server.url
        app = Celery("bench", broker=redis_url)
        app.conf.update(task_serializer="json", accept_content=["json"], task_ignore_result=True)

        @app.task(name="bench.noop")
        def noop(job_id: str, token: str) -> None:
            return None

        noop.apply_async(("warm", "1"), queue="bench.plain")
        t0 = time.perf_counter()
        for i in range(args.jobs):
            noop.apply_async((f"job-{i}", "1"), queue="bench.plain")
        plain_s = time.perf_counter() - t0

        client = Client(load_config(), redis_url)
        client.submit_many([JobRequest("summarize", {"text": "warm"}, tier="batch")])
        requests = [JobRequest("summarize", {"text": f"document {i}"}, tier="batch") for i in range(args.jobs)]
        t0 = time.perf_counter()
        client.submit_many(requests)
        fleet_s = time.perf_counter() - t0
        plain_rate, fleet_rate = args.jobs / plain_s, args.jobs / fleet_s
        print(f"{args.jobs} jobs: apply_async {plain_rate:,.0f}/s, submit_many {fleet_rate:,.0f}/s, "
              f"ratio {fleet_rate / plain_rate:.1f}x (target ≥ 5x)")


if __name__ == "__main__":
    main()
