"""One clock, Redis's: a worker or supervisor whose host clock is 8 s off loses no lease, and queues, expires,
re-sends and reports nothing early or late.

``time.time`` is skewed per thread: the worker's lease keeper and the supervisor's sweeper each run in a
thread of their own, so one test holds two hosts that disagree.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from toolbag.attempt.leases import LeaseKeeper
from toolbag.config import Config, load_config
from toolbag.jobs import AttemptRecord, JobStatus
from toolbag.store import JobStore, NewJob
from toolbag.store.keys import Keys
from toolbag.supervisor.sweeps import Sweeper

SKEW_S = 8.0
LEASE_TTL_S = 1.0
QUEUE = "openai.standard"
WORKER_THREAD = "toolbag-lease-keeper"
SUPERVISOR_THREAD = "toolbag-sweeper"
SWEEP_S = 0.05
LATE_MARGIN_S = 0.75  # a sweep interval, a beat and a loaded machine's scheduling


@pytest.fixture
def skews(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    """Seconds added to ``time.time`` in the thread of each name (the test's own thread is ``MainThread``)."""
    real = time.time
    by_thread: dict[str, float] = {}
    monkeypatch.setattr(time, "time", lambda: real() + by_thread.get(threading.current_thread().name, 0.0))
    return by_thread


@pytest.fixture
def store(redis_url: str) -> JobStore:
    return JobStore(redis.Redis.from_url(redis_url), Keys("skew:"), job_ttl_s=600)


@pytest.fixture
def config() -> Config:
    config = load_config()
    fleet = config.fleet.model_copy(update={"lease_ttl_s": LEASE_TTL_S, "stuck_deciding_s": 1.0})
    return config.model_copy(update={"fleet": fleet})


@pytest.fixture
def sweeper(config: Config, store: JobStore) -> Iterator[Sweeper]:
    sweeper = Sweeper(config, store, interval_s=SWEEP_S)
    yield sweeper
    sweeper.stop()


def submit(store: JobStore, job_id: str, deadline_s: float = 600) -> None:
    store.submit(NewJob(job_id=job_id, queue=QUEUE, deadline_s=deadline_s, caller="c", fields={
        "capability": "summarize", "tier": "standard", "input": "{}", "model": "gpt-luna", "provider": "openai",
        "queue": QUEUE, "plan": '["gpt-luna"]'}))


def lost_attempts(store: JobStore, job_ids: list[str]) -> int:
    return sum(1 for job_id in job_ids for entry in store.history(job_id) if entry.get("outcome") == "lost")


def seconds_until(done: Callable[[], bool], timeout_s: float) -> float:
    """How long until ``done()`` holds (monotonic); fails the test after ``timeout_s``."""
    t0 = time.monotonic()
    while not done():
        assert time.monotonic() - t0 < timeout_s, f"not done within {timeout_s}s"
        time.sleep(0.01)
    return time.monotonic() - t0


@pytest.mark.parametrize(("worker_skew_s", "supervisor_skew_s"), [(-SKEW_S, SKEW_S), (SKEW_S, -SKEW_S)],
                         ids=["worker-behind-supervisor-ahead", "worker-ahead-supervisor-behind"])
def test_a_live_worker_keeps_its_leases_and_a_dead_one_is_found_in_time(
    store: JobStore, sweeper: Sweeper, skews: dict[str, float], worker_skew_s: float, supervisor_skew_s: float
) -> None:
    skews.update({WORKER_THREAD: worker_skew_s, SUPERVISOR_THREAD: supervisor_skew_s})
    job_ids = [f"j{i}" for i in range(5)]
    keeper = LeaseKeeper(store, LEASE_TTL_S)
    for job_id in job_ids:
        submit(store, job_id)
        assert store.claim(job_id, "1", QUEUE, LEASE_TTL_S, "w") is not None
        keeper.add(f"{job_id}:1")
    keeper.start()
    sweeper.start()
    time.sleep(3 * LEASE_TTL_S)
    assert lost_attempts(store, job_ids) == 0, "a live worker's lease was swept as lost"
    assert [store.get(job_id).status for job_id in job_ids] == [JobStatus.RUNNING] * len(job_ids)

    keeper.stop()  # the worker dies: its leases run out one time to live after the last beat
    found_s = seconds_until(lambda: lost_attempts(store, job_ids) == len(job_ids), timeout_s=2 * SKEW_S)
    assert found_s <= LEASE_TTL_S + LATE_MARGIN_S, f"a dead worker's leases were found {found_s:.1f}s late"


@pytest.mark.parametrize("supervisor_skew_s", [SKEW_S, -SKEW_S], ids=["ahead", "behind"])
def test_delays_deadlines_and_stuck_decisions_come_due_on_redis_time(
    store: JobStore, sweeper: Sweeper, skews: dict[str, float], supervisor_skew_s: float
) -> None:
    skews[SUPERVISOR_THREAD] = supervisor_skew_s
    delay_s, deadline_s, stuck_s = 1.0, 1.5, 1.0
    for job_id in ("delayed", "stuck"):
        submit(store, job_id)
        store.claim(job_id, "1", QUEUE, 60, "w")
        outcome = AttemptRecord(n=1, model="gpt-luna", provider="openai", outcome="server_error").to_json()
        assert store.end_attempt(job_id, "1", "server_error", outcome).ok
    store.redis.delete(store.keys.supervisor_queue)
    submit(store, "deadline", deadline_s=deadline_s)
    assert store.dispatch("delayed", "1", model="gpt-luna", provider="openai", queue=QUEUE, record_json="{}",
                          delay_s=delay_s).ok
    t0 = time.monotonic()
    sweeper.start()
    due = {
        "delayed": (delay_s, lambda: store.get("delayed").status is JobStatus.QUEUED),
        "deadline": (deadline_s, lambda: store.get("deadline").status is JobStatus.EXPIRED),
        "stuck": (stuck_s, lambda: store.redis.llen(store.keys.supervisor_queue) > 0),
    }
    happened_s: dict[str, float] = {}
    while len(happened_s) < len(due):
        now_s = time.monotonic() - t0
        assert now_s < 2 * SKEW_S, f"still not due after {now_s:.1f}s: {sorted(set(due) - set(happened_s))}"
        happened_s.update({name: now_s for name, (_, done) in due.items() if name not in happened_s and done()})
        time.sleep(0.01)
    for name, (due_s, _) in due.items():
        at_s = happened_s[name]
        assert due_s - 0.05 <= at_s <= due_s + LATE_MARGIN_S, f"{name}: due after {due_s}s, happened at {at_s:.2f}s"


@pytest.mark.parametrize(("worker_skew_s", "supervisor_skew_s"), [(-SKEW_S, SKEW_S), (SKEW_S, -SKEW_S)],
                         ids=["worker-behind-supervisor-ahead", "worker-ahead-supervisor-behind"])
def test_presence_and_queue_age_read_on_redis_time(
    store: JobStore, skews: dict[str, float], worker_skew_s: float, supervisor_skew_s: float
) -> None:
    skews["MainThread"] = worker_skew_s
    store.worker_heartbeat("openai|w1")
    submit(store, "waiting")
    skews["MainThread"] = supervisor_skew_s
    assert store.live_workers(max_age_s=3 * LEASE_TTL_S) == ["openai|w1"]
    assert store.queue_stats(QUEUE)[1] < 1.0
    from toolbag.store.queues import queue_stats

    ages = {q.queue: q.oldest_age_s for q in queue_stats(store, ["openai"])}
    assert ages[QUEUE] < 1.0


@pytest.mark.parametrize("host_skew_s", [SKEW_S, -SKEW_S], ids=["ahead", "behind"])
def test_a_models_cooldown_and_open_circuit_read_on_redis_time(
    store: JobStore, config: Config, skews: dict[str, float], host_skew_s: float
) -> None:
    from toolbag.providers.base import OutcomeKind
    from toolbag.routing.health import HealthTracker

    skews["MainThread"] = host_skew_s
    health = HealthTracker(store.redis, store.keys, config)
    health.record("gpt-sol", OutcomeKind.RATE_LIMITED, 0.1, 2.0)  # a 2 s retry-after, on Redis's clock
    for _ in range(config.health.failures_to_open):
        health.record("gemini-flash", OutcomeKind.SERVER_ERROR, 0.1, None)
    cooling, opened = health.snapshot("gpt-sol"), health.snapshot("gemini-flash")
    assert 1.0 < cooling.cooling_for_s <= 2.0, cooling
    assert opened.state == "open" and 0 < opened.open_for_s <= config.health.open_s, opened
    assert health.usable(["gpt-luna", "gpt-sol", "gemini-flash"]) == ["gpt-luna"], "a cooling model is not usable"
