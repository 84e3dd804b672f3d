"""Process-wide state of a worker or supervisor process, built once at start (fail fast on bad config)."""

from __future__ import annotations

import concurrent.futures
import logging
import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from toolbag.attempt.leases import LeaseKeeper
from toolbag.attempt.loop import AttemptLoop
from toolbag.attempt.runner import AttemptRunner
from toolbag.config import Config
from toolbag.escalations import OutboxSender
from toolbag.store import JobStore
from toolbag.store.keys import Keys
from toolbag.store.replication import Replication
from toolbag.supervisor import Supervisor, Sweeper
from workers import heap

if TYPE_CHECKING:
    from toolbag.vendorbatch.batcher import VendorBatchService


@dataclass
class Runtime:
    config: Config
    store: JobStore
    attempts_runner: AttemptRunner | None = None
    supervisor_: Supervisor | None = None
    sweeper: Sweeper | None = None
    keeper: LeaseKeeper | None = None
    outbox_sender: OutboxSender | None = None
    attempt_loop: AttemptLoop | None = None
    vendor_batches: VendorBatchService | None = None

    def attempt(self, job_id: str, token: str, queue: str) -> concurrent.futures.Future[Any] | None:
        """One delivered attempt: handed to the event loop (async; the future of its call, None when it was not
        handed), or run on this thread (threads; None)."""
        if self.attempt_loop is not None:
            return self.attempt_loop.hand(job_id, token, queue)
        self.attempts.run(job_id, token, queue)
        return None

    @property
    def attempts(self) -> AttemptRunner:
        if self.attempts_runner is None:
            raise RuntimeError("this process is not a provider worker (no adapter configured)")
        return self.attempts_runner

    @property
    def supervisor(self) -> Supervisor:
        if self.supervisor_ is None:
            raise RuntimeError("this process is not a supervisor")
        return self.supervisor_

    def stop(self) -> None:
        if self.attempt_loop:
            self.attempt_loop.stop(drain_s=max(t.total_timeout_s for t in self.config.tiers.values()))
        if self.keeper:
            self.keeper.stop()
        if self.sweeper:
            self.sweeper.stop()
        if self.outbox_sender:
            self.outbox_sender.stop()
        if self.vendor_batches:
            self.vendor_batches.stop()
        if self.attempts_runner:
            self.attempts_runner.adapter.close()
            close_caller = getattr(self.attempts_runner.caller, "close", None)
            if close_caller is not None:
                close_caller()


_current: Runtime | None = None


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("toolbag runtime not initialised: start workers with `toolbag worker`")
    return _current


def _store(config: Config, redis_url: str) -> JobStore:
    store = JobStore.from_url(redis_url, Keys(config.fleet.key_prefix), config.fleet.job_ttl_s)
    store.replication = Replication.of(config.fleet.redis_durability, config.fleet.replica_ack_timeout_ms)
    return store


def _skills() -> Any:
    from toolbag.skills import SkillLibrary, default_skills_dir

    return SkillLibrary(default_skills_dir())


AttemptMode = Literal["async", "threads"]
ATTEMPT_MODES: tuple[AttemptMode, ...] = ("async", "threads")
ASYNC_POOL_THREADS = 8  # Celery pool threads of an async worker: they only claim and hand over (~1 ms each)
QUIET_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2", "google_genai")  # one INFO line per vendor call


def pool_threads(mode: AttemptMode, slots: int, *, task_events: bool = False) -> int:
    """Celery's ``-c`` for a worker with ``slots`` attempts in flight. With task events on, an async attempt's
    task waits for its call (so its event carries the outcome): a thread per slot, as in ``threads`` mode."""
    return min(slots, ASYNC_POOL_THREADS) if mode == "async" and not task_events else slots


def start_provider(
    config: Config, redis_url: str, provider: str, *, slots: int | None = None, mode: AttemptMode = "threads"
) -> Runtime:
    """Build the adapter (raising ConfigError now, never mid-job) and the lease heartbeat. ``slots`` (default:
    the provider's ``concurrency``) sizes the HTTP pool and, in ``async`` mode, the attempts on the loop."""
    global _current
    from toolbag.providers.registry import build_adapter

    if provider not in config.providers:
        from toolbag.config import ConfigError

        raise ConfigError(f"unknown provider {provider!r}; configured: {', '.join(sorted(config.providers))}")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger(name).level))
    slots = slots or config.providers[provider].concurrency
    adapter = build_adapter(provider, config, max_connections=slots)
    store = _store(config, redis_url)
    from toolbag.gateway import worker_caller

    caller = worker_caller(config, store)  # tools.yaml and policy.yaml checked now (ConfigError)
    keeper = LeaseKeeper(store, config.fleet.lease_ttl_s)
    if mode == "threads":
        keeper.start()
    name = f"{provider}@{socket.gethostname()}:{os.getpid()}"
    from toolbag.routing.health import HealthTracker

    health = HealthTracker(store.redis, store.keys, config)
    from toolbag.ratelimit import RateLimiter
    from toolbag.routing import Router

    admission = RateLimiter(config, store.redis, store.keys)
    runner = AttemptRunner(config, store, provider, adapter, keeper, name, skills=_skills(), health=health,
                           caller=caller, admission=admission, router=Router(config, health))
    from celery.signals import worker_ready

    def _announce(**_: Any) -> None:
        keeper.announce(f"{provider}|{name}")
        heap.settle()  # the consumer is up: everything the process runs on is loaded

    worker_ready.connect(_announce, weak=False)
    loop = None
    if mode == "async":
        from toolbag.store.jobstore import AsyncAttemptStore

        loop = AttemptLoop(runner, AsyncAttemptStore.from_url(redis_url, store.calls, max_connections=64), slots)
    _current = Runtime(config, store, attempts_runner=runner, keeper=keeper, attempt_loop=loop)
    return _current


def start_supervisor(config: Config, redis_url: str, *, sweep: bool = True) -> Runtime:
    global _current
    from toolbag.ratelimit import RateLimiter
    from toolbag.routing.health import HealthTracker

    store = _store(config, redis_url)
    health = HealthTracker(store.redis, store.keys, config)
    limiter = RateLimiter(config, store.redis, store.keys)  # read only: the headroom gauges
    sweeper = Sweeper(config, store, health=health, limiter=limiter) if sweep else None
    if sweeper:
        sweeper.start()
    supervisor = Supervisor(config, store, health=health)
    sender = OutboxSender(supervisor.outbox)  # webhooks: one sender fleet-wide holds the lock
    sender.start()
    # vendor batches: one poller per provider fleet-wide holds its lock (toolbag.vendorbatch); it imports every
    # vendor's SDK, so only a supervisor loads it
    from toolbag.vendorbatch.batcher import VendorBatchService

    batches = VendorBatchService(config, store, skills=_skills()) if sweep else None
    if batches:
        batches.start()
    _current = Runtime(config, store, supervisor_=supervisor, sweeper=sweeper, outbox_sender=sender,
                       vendor_batches=batches)
    return _current
