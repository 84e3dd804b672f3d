"""Bulk runs: how fast a file goes through the fleet, and how fast the runner enqueues.

    .venv/bin/python -m bench.bulk [--lines 5000] [--concurrency 64] [--enqueue 5000]

1. Enqueue rate (no workers): the runner's submit path — JSONL lines read, an idempotency key each,
   validated, submitted in pipelined chunks through the bounded pipeline — vs plain Celery ``apply_async``
   of a trivial task to the same Redis.
2. End to end at zero vendor latency: ``toolbag batch run`` over a JSONL file (a subprocess, start-up
   included) vs the same number of jobs through the plain client (``submit_many``, then ``result()`` per
   job), on the same fleet: one OpenAI worker process and the supervisor. Also the runner's own CPU per
   1,000 lines, which shows whether the runner or the fleet sets the pace.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from celery import Celery

from bench._common import REPO, bench_config, fleet
from toolbag.bulk.files import InputSpec, read_input
from toolbag.bulk.pipeline import Pipeline, Submitted
from toolbag.client import Client, JobRequest
from toolbag.config import load_config
from toolbag.devfleet.harness import private_redis, simulator_process


def write_lines(path: Path, n: int, tag: str) -> Path:
    with path.open("w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"{tag}-{i}", "text": f"{tag} document {i}: quarterly numbers"}) + "\n")
    return path


def enqueue_rates(n: int, tmp: Path) -> tuple[float, float]:
    with private_redis() as server:
        redis_url = server.url
        app = Celery("bench", broker=redis_url)
        app.conf.update(task_serializer="json", accept_content=["json"], task_ignore_result=True)

        @app.task(name="bench.noop")
        def noop(job_id: str, token: str) -> None:
            return None

        noop.apply_async(("warm", "1"), queue="bench.plain")
        t0 = time.perf_counter()
        for i in range(n):
            noop.apply_async((f"job-{i}", "1"), queue="bench.plain")
        plain_s = time.perf_counter() - t0

        client = Client(load_config(), redis_url)
        client.submit_many([JobRequest("summarize", {"text": "warm"}, tier="batch")])
        src = write_lines(tmp / "enqueue.jsonl", n, "enq")
        t0 = time.perf_counter()
        items = ((line.id, JobRequest("summarize", line.input, None, "batch", "bench", f"bench:{line.key}"))
                 for line in read_input(InputSpec(src, "jsonl")))
        pipeline: Pipeline[object] = Pipeline(client, "bench-enqueue", max_in_flight=n, chunk_size=500)
        submitted = 0
        for events in pipeline.run(items):
            submitted += sum(isinstance(e, Submitted) for e in events)
            if submitted >= n:
                break
        bulk_s = time.perf_counter() - t0
    return n / plain_s, n / bulk_s


def end_to_end(n: int, concurrency: int, tmp: Path) -> tuple[float, float, float]:
    with private_redis() as server, simulator_process(tmp, cwd=REPO) as sim, \
            fleet(server.url, bench_config(sim.url, tmp), [("openai", concurrency)]) as procs:
        client = procs.client
        warm = client.submit_many([JobRequest("bench", {"text": f"warm {i}"}, tier="batch") for i in range(50)])
        list(client.results(warm, timeout_s=120))

        t0 = time.perf_counter()
        jobs = client.submit_many([JobRequest("bench", {"text": f"plain document {i}"}, tier="batch")
                                   for i in range(n)])
        results = list(client.results(jobs, timeout_s=300))
        plain_s = time.perf_counter() - t0
        assert all(r.ok for r in results)

        src = write_lines(tmp / "e2e.jsonl", n, "bulk")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "toolbag.cli", "batch", "run", str(src), "--capability",
                               "bench", "-o", str(tmp / "e2e.out.jsonl"), "--json"], env=procs.env, cwd=REPO,
                              capture_output=True, text=True, timeout=1800)
        bulk_s = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        summary = json.loads(done.stdout)
        assert done.returncode == 0 and summary["ok"] == n, done.stderr[-2000:]
        cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return n / plain_s, n / bulk_s, cpu_s / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=5000, help="lines for the end-to-end run")
    parser.add_argument("--concurrency", type=int, default=64, help="threads of the one worker process")
    parser.add_argument("--enqueue", type=int, default=5000, help="jobs for the enqueue-rate run")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tb-bench-bulk-"))
    plain_rate, bulk_rate = enqueue_rates(args.enqueue, tmp)
    print(f"enqueue, {args.enqueue} jobs: apply_async {plain_rate:,.0f}/s, batch runner (file → keys → validated → "
          f"pipelined) {bulk_rate:,.0f}/s, ratio {bulk_rate / plain_rate:.1f}x")
    client_rate, runner_rate, cpu_ms = end_to_end(args.lines, args.concurrency, tmp)
    print(f"end to end, {args.lines} lines at zero vendor latency, one worker x {args.concurrency} threads:")
    print(f"  submit_many + result() per job: {client_rate:,.0f} lines/s")
    print(f"  toolbag batch run (process start-up included): {runner_rate:,.0f} lines/s, "
          f"ratio {runner_rate / client_rate:.2f}; runner CPU {cpu_ms:.2f} ms per line")


if __name__ == "__main__":
    main()
