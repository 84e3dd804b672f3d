"""Rerouting and recovery speed.

1. Reroute: the primary refuses every job; time from the refusal outcome (the attempt's end) to the next
   attempt starting on another model, p50/p99. Target p99 ≤ 50 ms.
2. Recovery: a worker SIGKILLed mid-attempt; time until the fleet has the job moving again (lease expiry),
   against plain Celery's own redelivery of an acks_late task (visibility timeout + kombu's restore sweep),
   measured in the same run on the same Redis. Target ≤ 10 s where Celery alone takes its visibility timeout.

    .venv/bin/python -m bench.reroute [--jobs 200] [--celery-vt 30]
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import redis

from bench._common import bench_config, fleet, ground, percentile
from toolbag.client import Client
from toolbag.jobs import JobStatus


def reroute_latencies(client: Client, jobs_n: int) -> list[float]:
    """One job at a time, so the figure is the reroute path itself, not a queue of simultaneous refusals."""
    gaps = []
    for i in range(jobs_n):
        result = client.submit("summarize", input={"text": f"[[sim:refusal@claude-*]] doc {i}"},
                               tier="interactive").result(30)
        tries = [a for a in result.attempts if a["type"] == "attempt"]
        assert result.ok and tries[0]["outcome"] == "refused" and tries[1]["outcome"] == "ok", result
        gaps.append((tries[1]["started_ms"] - tries[0]["ended_ms"]) / 1000)
    return gaps


def fleet_recovery_s(client: Client, kill: Callable[[], None]) -> float:
    job = client.submit("classify", input={"text": "[[sim:hang:3@gemini-3.5*]] stuck"}, tier="standard")
    while job.status() is not JobStatus.RUNNING:
        time.sleep(0.01)
    kill()
    killed = time.monotonic()
    while not any(h.get("outcome") == "lost" for h in client.store.history(job.id)):
        time.sleep(0.01)
    return time.monotonic() - killed


CELERY_APP = textwrap.dedent('''
    import time
    from celery import Celery
    app = Celery("plain", broker="{broker}")
    app.conf.update(task_acks_late=True, worker_prefetch_multiplier=1, task_serializer="json",
                    accept_content=["json"], broker_transport_options={{
                        "visibility_timeout": {vt}, "unacked_restore_interval": 2, "unacked_restore_throttle": 1}})

    @app.task(name="plain.work")
    def work(marker):
        import redis
        r = redis.Redis.from_url("{broker}")
        r.rpush("bench:started", f"{{marker}}:{{time.time()}}")
        time.sleep(3)
''')


def celery_recovery_s(redis_url: str, vt_s: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "plainapp.py").write_text(CELERY_APP.format(broker=redis_url, vt=vt_s))
        env = {**os.environ, "PYTHONPATH": tmp}
        cmd = [sys.executable, "-m", "celery", "-A", "plainapp", "worker", "-P", "threads", "-c", "2",
               "--without-gossip", "--without-mingle", "-l", "WARNING"]
        r = redis.Redis.from_url(redis_url)
        first = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sys.path.insert(0, tmp)
        import plainapp

        plainapp.work.delay("m1")
        while r.llen("bench:started") < 1:
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed = time.monotonic()
        second = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while r.llen("bench:started") < 2:
                time.sleep(0.05)
            return time.monotonic() - killed
        finally:
            second.terminate()
            second.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--celery-vt", type=int, default=30, help="visibility timeout for plain Celery (s)")
    args = parser.parse_args()
    with ground("reroute") as (tmp, server, sim):
        with fleet(server.url, bench_config(sim.url, tmp), [("anthropic", 32), ("openai", 32)]) as procs:
            config, client = procs.config, procs.client
            reroute_latencies(client, 20)  # warm
            gaps = reroute_latencies(client, args.jobs)
            print(f"reroute after refusal ({args.jobs} jobs): p50 {percentile(gaps, 0.5) * 1000:.1f} ms, "
                  f"p99 {percentile(gaps, 0.99) * 1000:.1f} ms (target p99 ≤ 50 ms)")
            procs.worker("gemini", concurrency=None)
            procs.wait_workers(3)
            ours = fleet_recovery_s(client, functools.partial(procs.kill, "worker-gemini"))
        theirs = celery_recovery_s(f"{server.url}/5", args.celery_vt)
        print(f"recovery of a SIGKILLed worker's attempt: toolbag {ours:.2f} s (lease {config.fleet.lease_ttl_s:g} s); "
              f"plain Celery {theirs:.2f} s with visibility_timeout={args.celery_vt} s "
              f"(toolbag's must exceed the longest attempt: {config.fleet.visibility_timeout_s} s) — "
              f"ratio {theirs / ours:.1f}x")


if __name__ == "__main__":
    main()
