"""Metrics: bounded label sets, fleet-wide job counters from Redis, queue truth, multiprocess mode, promtool.

Real Redis, the real store scripts, the real SDKs against the simulator (in-process attempt runner, no Celery).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from tests.fleet import REPO, fleet_config_dict
from toolbag.attempt.leases import LeaseKeeper
from toolbag.attempt.runner import AttemptRunner
from toolbag.client import Client, JobRequest
from toolbag.config import TIERS, Config, parse_config
from toolbag.jobs import AttemptRecord, DecisionRecord, JobStatus, SubmitError
from toolbag.providers.registry import build_adapter
from toolbag.simulator.server import SimulatorServer
from toolbag.store import JobStore
from toolbag.store.keys import Keys
from toolbag.store.queues import queue_stats
from toolbag.supervisor import Sweeper
from toolbag.telemetry import metrics

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s")


def _config(sim_url: str) -> Config:
    data = fleet_config_dict(sim_url)
    data["routes"]["bounded"] = {tier: {"candidates": ["gpt-luna"]} for tier in TIERS}
    return parse_config(data)


def _exposition(*registries: CollectorRegistry) -> str:
    return "".join(generate_latest(r).decode() for r in registries)


def _series(text: str) -> set[str]:
    """Every series (name and labels) on a /metrics page, values dropped."""
    return {m.group(1) + (m.group(2) or "") for line in text.splitlines() if (m := _SAMPLE.match(line))}


def _value(text: str, name: str, **labels: str) -> float:
    """The sum of ``name`` samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m or m.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _store(config: Config, redis_url: str) -> JobStore:
    return JobStore.from_url(redis_url, Keys(config.fleet.key_prefix), config.fleet.job_ttl_s)


# --- bounded label sets -----------------------------------------------------------------------------


def test_a_thousand_callers_add_no_series(redis_url: str, sim: SimulatorServer) -> None:
    """The same work from 1,000 more distinct callers leaves every /metrics series set unchanged."""
    config = _config(sim.url)
    store = _store(config, redis_url)
    client = Client(config, redis_url)
    runner = AttemptRunner(config, store, "openai", build_adapter("openai", config), LeaseKeeper(store, 2),
                           "test-worker")
    sweeper = Sweeper(config, store)
    fleet = CollectorRegistry()
    fleet.register(metrics.FleetCounters(store.redis, store.keys.stats))

    def run(callers: list[str]) -> str:
        jobs = client.submit_many(
            [JobRequest("bounded", {"text": f"hello from {c}"}, tier=TIERS[i % 3], caller=c)
             for i, c in enumerate(callers)]
        )
        assert client.cancel(jobs[-1].id)  # one cancellation per round: a finished status of its own
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda job: runner.run(job.id, "1", store.get(job.id).queue), jobs[:-1]))
        assert all(r.ok for r in client.results(jobs[:-1], timeout_s=10))
        sweeper.update_gauges()
        return _exposition(REGISTRY, fleet)

    first = run([f"first-caller-{i}" for i in range(9)] + ["first-caller-cancelled"])
    callers = [f"caller-{i:04d}@example.com" for i in range(1000)]
    second = run(callers[:-1] + ["caller-cancelled"])

    assert _series(second) == _series(first), sorted(_series(second) ^ _series(first))[:10]
    assert not any(c in second for c in callers), "a caller appears in a label value"
    assert _value(second, "toolbag_jobs_submitted_total", capability="bounded") == 1010
    assert _value(second, "toolbag_jobs_finished_total", capability="bounded", status="succeeded") == 1008
    assert _value(second, "toolbag_jobs_finished_total", capability="bounded", status="cancelled") == 2
    ok_before = _value(first, "toolbag_attempts_total", model="gpt-luna", outcome="ok")
    assert _value(second, "toolbag_attempts_total", model="gpt-luna", outcome="ok") - ok_before == 999


# --- fleet-wide counters (Lua) ------------------------------------------------------------------------


def test_fleet_counters_count_each_transition_once(redis_url: str, sim: SimulatorServer) -> None:
    config = _config(sim.url)
    store = _store(config, redis_url)
    client = Client(config, redis_url)
    first = client.submit("bounded", input={"text": "a"}, tier="batch", idempotency_key="k1", caller="shop")
    again = client.submit("bounded", input={"text": "a"}, tier="batch", idempotency_key="k1", caller="shop")
    other = client.submit("summarize", input={"text": "b"}, tier="interactive")
    assert first.id == again.id and not again.created
    assert client.cancel(first.id)
    assert not client.cancel(first.id), "a second cancel is refused and not counted"
    with pytest.raises(SubmitError):
        client.submit("no-such-capability", input={"text": "c"})
    with pytest.raises(SubmitError):
        Client(config, redis_url).submit("bounded", input={"text": "d"}, tier="urgent")  # another producer
    record = DecisionRecord("fail", "test").to_json()
    assert store.finish(other.id, JobStatus.FAILED, "test", record).ok

    registry = CollectorRegistry()
    registry.register(metrics.FleetCounters(store.redis, store.keys.stats))
    page = _exposition(registry)
    assert _value(page, "toolbag_jobs_submitted_total") == 2
    assert _value(page, "toolbag_jobs_submitted_total", capability="bounded", tier="batch") == 1
    assert _value(page, "toolbag_jobs_submitted_total", capability="summarize", tier="interactive") == 1
    assert _value(page, "toolbag_jobs_finished_total", capability="bounded", tier="batch", status="cancelled") == 1
    assert _value(page, "toolbag_jobs_finished_total", capability="summarize", status="failed") == 1
    assert _value(page, "toolbag_jobs_finished_total") == 2
    assert _value(page, "toolbag_jobs_rejected_total", reason="capability") == 1
    assert _value(page, "toolbag_jobs_rejected_total", reason="tier") == 1
    assert _value(page, "toolbag_jobs_submitted_total") == 2, "a rejected submission is not a submission"


def test_fleet_counters_survive_a_redis_outage_without_failing_the_scrape() -> None:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    registry = CollectorRegistry()
    registry.register(metrics.FleetCounters(dead, "tb:stats"))
    page = _exposition(registry)
    assert "# TYPE toolbag_jobs_submitted_total counter" in page
    assert _value(page, "toolbag_jobs_submitted_total") == 0


# --- queue truth --------------------------------------------------------------------------------------


def test_queue_depth_counts_queued_reserved_and_delayed(redis_url: str, sim: SimulatorServer) -> None:
    config = _config(sim.url)
    store = _store(config, redis_url)
    client = Client(config, redis_url)
    jobs = [client.submit("bounded", input={"text": f"q{i}"}, tier="standard") for i in range(4)]
    queue = "openai.standard"
    # A worker reserved one message (kombu moved it off the list) but has not started it: still waiting.
    # Another worker took the next one and started it.
    queue_key = store.keys.queue(queue)
    assert store.redis.rpop(queue_key) is not None and store.redis.rpop(queue_key) is not None
    # One attempt started and ended; the supervisor parks the job for a minute, bound for gemini.standard.
    running = jobs[3]
    assert store.claim(running.id, "1", queue, 30, "w") is not None
    attempt = AttemptRecord(n=1, model="gpt-luna", provider="openai", outcome="server_error").to_json()
    assert store.end_attempt(running.id, "1", "server_error", attempt).ok
    assert store.dispatch(running.id, "1", model="gemini-flash", provider="gemini", queue="gemini.standard",
                          record_json=DecisionRecord("reroute", "test").to_json(), delay_s=60).ok
    # Pretend the oldest queued job has waited 30 s, and the delayed one 50 s since its attempt ended
    # (enqueued 80 s ago: its wait for the next attempt began when the last one ended, not then).
    now_ms = int(time.time() * 1000)
    store.redis.zadd(store.keys.waiting(queue), {jobs[0].id: now_ms - 30_000}, xx=True)
    store.redis.hset(store.keys.job(running.id), mapping={"enqueued_ms": now_ms - 80_000, "started_ms": now_ms - 60_000,
                                                          "decide_ms": now_ms - 50_000})

    stats = {(q.provider, q.tier): q for q in queue_stats(store, config.providers)}
    openai, gemini = stats[("openai", "standard")], stats[("gemini", "standard")]
    assert (openai.waiting, openai.delayed, openai.depth) == (3, 0, 3)
    assert openai.oldest_age_s == pytest.approx(30, abs=3)
    assert (gemini.waiting, gemini.delayed, gemini.depth) == (0, 1, 1)
    assert gemini.oldest_age_s == pytest.approx(50, abs=3)
    assert sum(q.depth for q in stats.values()) == 4
    assert store.redis.llen(store.keys.queue(queue)) == 2, "the Celery list alone undercounts"

    Sweeper(config, store).update_gauges()
    sample = REGISTRY.get_sample_value
    assert sample("toolbag_queue_depth", {"provider": "openai", "tier": "standard"}) == 3
    assert sample("toolbag_queue_depth", {"provider": "gemini", "tier": "standard"}) == 1
    assert sample("toolbag_delayed_jobs", {"provider": "gemini", "tier": "standard"}) == 1
    assert sample("toolbag_delayed_jobs", {"provider": "openai", "tier": "standard"}) == 0
    assert sample("toolbag_queue_oldest_age_seconds", {"provider": "gemini", "tier": "standard"}) == (
        pytest.approx(50, abs=3)
    )


# --- multiprocess mode --------------------------------------------------------------------------------

_CHILD = """
import os, sys
from toolbag.telemetry import metrics
metrics.ATTEMPTS.labels("openai", "gpt-luna", "batch", "ok").inc(int(sys.argv[1]))
metrics.INFLIGHT.labels("openai").inc()
print(os.getpid())
"""

_PARENT = """
import json, sys, urllib.request
from celery.signals import worker_process_shutdown
from toolbag.telemetry import metrics
import workers.signals
workers.signals.connect()
port = metrics.serve(0, "worker:openai", addr="127.0.0.1")
def page():
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as resp:
        return resp.read().decode()
before = page()
worker_process_shutdown.send(sender=None, pid=int(sys.argv[1]), exitcode=0)
print(json.dumps({"before": before, "after": page()}))
"""


def test_multiprocess_mode_sums_processes_and_forgets_dead_children(tmp_path: Path) -> None:
    env = {**os.environ, metrics.MULTIPROC_ENV: str(tmp_path)}

    def python(code: str, *args: str) -> str:
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    first_pid = python(_CHILD, "3").strip()
    python(_CHILD, "4")
    pages = json.loads(python(_PARENT, first_pid))
    for page in pages.values():
        assert _value(page, "toolbag_attempts_total", provider="openai", outcome="ok") == 7
        assert _value(page, "toolbag_build_info", role="worker:openai") == 1
    assert _value(pages["before"], "toolbag_inflight_attempts", provider="openai") == 2
    assert _value(pages["after"], "toolbag_inflight_attempts", provider="openai") == 1, "a dead child's live gauge"


# --- promtool -----------------------------------------------------------------------------------------


def promtool_check(page: str) -> None:
    """``promtool check metrics`` accepts ``page`` (lint included)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: run scripts/install-test-tools.sh")
    done = subprocess.run([promtool, "check", "metrics"], input=page, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_accepts_every_metric_we_define(redis_url: str) -> None:
    """Every family, with a sample each (what a busy process would serve), passes promtool's lint."""
    registry = CollectorRegistry()
    store = JobStore.from_url(redis_url)
    store.redis.hset(store.keys.stats, mapping={"submitted|batch|summarize": 2, "finished|batch|failed|summarize": 1})
    registry.register(metrics.FleetCounters(store.redis, store.keys.stats))
    page = _exposition(REGISTRY, registry)
    promtool_check(page)
    names = {m.group(1) for line in page.splitlines() if (m := re.match(r"# TYPE (\S+)", line))}
    for obj in vars(metrics).values():
        if isinstance(obj, metrics.Counter | metrics.Gauge | metrics.Histogram):
            assert obj._name in names or f"{obj._name}_total" in names, obj._name
