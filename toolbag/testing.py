"""An in-process fleet for tests: the real store, attempt runners, vendor SDKs and supervisor, stepped by hand.

:class:`InProcessFleet` consumes the fleet's Redis queue lists itself, in the caller's thread: no Celery
worker, no subprocess, no broker connection. Every provider's attempts go through its real adapter (the
vendor's official SDK) to the built-in simulator, so tests see the outcomes, decisions and results a real
fleet produces, and faults are chosen the same way (``[[sim:refusal@claude-*]]`` in the input text, or
``fleet.simulator.set_faults``). It never calls a real vendor: API keys in the environment are ignored.

Use it to test producer code too: hand ``fleet.client`` to the code under test, then ``run_until_idle``
(or ``run_producer``, when that code waits for its results).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from toolbag.attempt.leases import LeaseKeeper
from toolbag.attempt.runner import AttemptRunner
from toolbag.client import Client
from toolbag.config import TIERS, Config, load_config
from toolbag.config import redis_url as default_redis_url
from toolbag.errors import ToolbagError
from toolbag.escalations import OutboxSender
from toolbag.ratelimit import RateLimiter
from toolbag.routing import Router
from toolbag.routing.health import HealthTracker
from toolbag.simulator.server import SimulatorServer
from toolbag.store import JobStore, Keys
from toolbag.store.messages import SUPERVISOR_QUEUE, decide_pointer, envelope_pointer, queue_name
from toolbag.supervisor import Supervisor, Sweeper
from toolbag.vendorbatch.batcher import VendorBatchService

__all__ = ["FleetNotIdle", "InFlight", "InProcessFleet", "short_waits"]

log = logging.getLogger("toolbag.testing")
T = TypeVar("T")

IDLE_POLL_S = 0.25  # the longest pause between sweeps while nothing can run yet (the sweeper's own interval)
PRODUCER_POLL_S = 0.005  # the same while a producer runs: it may submit at any moment


class FleetNotIdle(ToolbagError):
    """``run_until_idle`` gave up: jobs are still in flight (the message says where)."""


@dataclass(frozen=True)
class InFlight:
    """Where the fleet's unfinished jobs are: what ``run_until_idle`` waits to see empty."""

    messages: dict[str, int] = field(default_factory=dict)  # queue name -> pointer messages on its list
    queued: int = 0  # jobs queued on a provider queue (each should have a message)
    delayed: int = 0  # backoffs, retry-afters and rate-limit deferrals, promoted by a sweep when due
    running: int = 0  # attempts holding a lease
    deciding: int = 0  # outcomes waiting for the supervisor
    batched: int = 0  # attempts a vendor batch holds (pending, or in a batch at the vendor)

    @property
    def idle(self) -> bool:
        return not (any(self.messages.values()) or self.queued or self.delayed or self.running or self.deciding
                    or self.batched)

    def __str__(self) -> str:
        lists = ", ".join(f"{q}: {n}" for q, n in sorted(self.messages.items()) if n) or "none"
        return (f"messages ({lists}), {self.queued} queued, {self.delayed} delayed, {self.running} running, "
                f"{self.deciding} deciding, {self.batched} in vendor batches")


def short_waits(config: Config, *, backoff_s: float = 0.01) -> Config:
    """``config`` with every route's retry backoff at most ``backoff_s``: a test waits out a transient
    retry in milliseconds. A rate-limited job still waits the vendor's retry-after (the simulator's
    ``rate_limit:S``)."""
    routes = {
        capability: {
            tier: route.model_copy(update={"policy": route.policy.model_copy(update={
                "backoff_base_s": min(route.policy.backoff_base_s, backoff_s),
                "backoff_max_s": min(route.policy.backoff_max_s, backoff_s),
            })})
            for tier, route in per_tier.items()
        }
        for capability, per_tier in config.routes.items()
    }
    return config.model_copy(update={"routes": routes})


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


class InProcessFleet:
    """A whole fleet in this process, driven by the test: ``step`` runs the messages on the queues,
    ``sweep`` runs the supervisor's periodic sweeps, ``run_until_idle`` does both until every job has
    settled, ``run_producer`` while code under test waits for its results. Not thread-safe: drive it from
    one thread. Example::

        with InProcessFleet(short_waits(load_config()), "redis://127.0.0.1:6379/15") as fleet:
            job = fleet.client.submit("summarize", input={"text": "[[sim:refusal@claude-*]] hi"}, tier="interactive")
            fleet.run_until_idle()
            result = job.result(timeout_s=0)
            assert result.ok and result.model == "gpt-luna"  # claude-haiku refused: rerouted

    ``config`` defaults to :func:`toolbag.config.load_config`, ``redis_url`` to ``$TOOLBAG_REDIS_URL``.
    ``providers``: the providers that get an attempt runner (default: every configured one); a job routed to
    another stays queued, and ``run_until_idle`` says so. ``simulator``: a running one to share (faults set
    on it apply to every fleet using it), else the fleet starts its own. ``key_prefix``: default a fresh one,
    whose keys are deleted on close, so fleets never see each other's jobs or a real fleet's workers.
    ``skills_dir``: the skill library (default ``$TOOLBAG_SKILLS_DIR`` or ``./skills``).
    """

    def __init__(
        self,
        config: Config | None = None,
        redis_url: str | None = None,
        *,
        providers: Iterable[str] | None = None,
        simulator: SimulatorServer | None = None,
        key_prefix: str | None = None,
        skills_dir: str | Path | None = None,
    ) -> None:
        from toolbag.gateway import worker_caller
        from toolbag.providers.registry import build_adapter
        from toolbag.skills import SkillLibrary, default_skills_dir

        base = config or load_config()
        self._closers: list[Callable[[], None]] = []  # run in reverse order on close
        self.simulator = simulator or SimulatorServer()
        if simulator is None:
            self.simulator.start()
            self._closers.append(self.simulator.stop)
        prefix = key_prefix if key_prefix is not None else f"tbtest-{uuid.uuid4().hex[:12]}:"
        self.config: Config = base.model_copy(update={
            "dev": True,
            "simulator_url": self.simulator.url,
            "fleet": base.fleet.model_copy(update={"key_prefix": prefix}),
        })
        self.runners: dict[str, AttemptRunner] = {}
        try:
            self.store = JobStore.from_url(redis_url or default_redis_url(), Keys(prefix),
                                           self.config.fleet.job_ttl_s)
            self._closers.append(self.store.redis.close)
            if key_prefix is None:
                self._closers.append(self._delete_keys)
            skills_root = str(skills_dir) if skills_dir is not None else str(default_skills_dir())
            self.client = Client(self.config, store=self.store, skills_root=skills_root)
            health = HealthTracker(self.store.redis, self.store.keys, self.config)
            self.supervisor = Supervisor(self.config, self.store, health=health)
            limiter = RateLimiter(self.config, self.store.redis, self.store.keys)
            self.sweeper = Sweeper(self.config, self.store, health=health, limiter=limiter)
            self.outbox_sender = OutboxSender(self.supervisor.outbox)  # driven by sweep(), no thread
            caller = worker_caller(self.config, self.store)
            self._closers.append(caller.close)
            skills = SkillLibrary(skills_root)
            # vendor batches: the supervisor's poller, stepped by sweep(); no thread
            self.vendor_batches = VendorBatchService(self.config, self.store, skills=skills, environ={})
            self._closers.append(self.vendor_batches.stop)
            router = Router(self.config, health)
            for provider in self.config.providers if providers is None else providers:
                adapter = build_adapter(provider, self.config, environ={})  # no key: always the simulator
                self._closers.append(adapter.close)
                self.runners[provider] = AttemptRunner(
                    self.config, self.store, provider, adapter,
                    LeaseKeeper(self.store, self.config.fleet.lease_ttl_s), f"{provider}@in-process",
                    skills=skills, admission=limiter, caller=caller, health=health, router=router,
                )
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> InProcessFleet:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the adapters and the tool gateway, delete a fresh prefix's keys, stop an own simulator."""
        while self._closers:
            close = self._closers.pop()
            try:
                close()
            except Exception:
                log.warning("closing the in-process fleet: %s failed", close, exc_info=True)

    def reset(self) -> None:
        """Forget every job, finished or not, and all the fleet learned (model health, rate-limit windows,
        counters): the state of a new fleet without building one, for tests that share a fleet. The live
        tool policy stays."""
        self._delete_keys(keep=self.store.keys.policy)

    def _delete_keys(self, keep: str | None = None) -> None:
        found = self.store.redis.scan_iter(match=_glob_escape(self.store.keys.prefix) + "*", count=1000)
        keys = [k for k in found if keep is None or k != keep.encode()]
        for start in range(0, len(keys), 1000):
            self.store.redis.unlink(*keys[start:start + 1000])

    # -- driving -----------------------------------------------------------------------------------

    def _queues(self) -> list[str]:
        """Every queue of the fleet: the supervisor's, then each provider's, most urgent tier first."""
        return [SUPERVISOR_QUEUE] + [queue_name(p, t) for p in self.config.providers for t in TIERS]

    def _handler(self, queue: str) -> Callable[[Any], None] | None:
        if queue == SUPERVISOR_QUEUE:
            return self._decide
        provider = queue.rsplit(".", 1)[0]
        runner = self.runners.get(provider)
        if runner is None:
            return None

        def attempt(raw: Any) -> None:
            pointer = envelope_pointer(raw)
            if pointer is None:
                log.warning("dropped a message that is not an attempt from %s", queue)
                return
            runner.run(pointer[0], pointer[1], queue)

        return attempt

    def _decide(self, raw: Any) -> None:
        pointer = decide_pointer(raw)
        if pointer is None:
            log.warning("dropped a message that is not a decision from %s", SUPERVISOR_QUEUE)
            return
        self.supervisor.decide(*pointer)

    def step(self) -> int:
        """Run every message on the queues now (not those this step pushes), popped oldest first as a worker
        pops them: decisions through the supervisor, attempts through their provider's runner. A stale
        message is dropped as a worker drops it. Returns how many messages were taken."""
        redis_ = self.store.redis
        served = [(q, h) for q in self._queues() if (h := self._handler(q)) is not None]
        pipe = redis_.pipeline(transaction=False)
        for queue, _ in served:
            pipe.llen(self.store.keys.queue(queue))
        taken = 0
        for (queue, handle), count in zip(served, pipe.execute(), strict=True):
            for _ in range(int(count)):
                raw = redis_.rpop(self.store.keys.queue(queue))
                if raw is None:
                    break
                taken += 1
                handle(raw)
        return taken

    def sweep(self) -> None:
        """One round of the supervisor's sweeps (expired leases, due delayed jobs, deadlines, lost messages),
        the vendor-batch poller's round (due collections submitted, due batches polled and recovered), and the
        webhook outbox's due deliveries."""
        self.sweeper.sweep_once()
        self.vendor_batches.run_once()
        budget_hook = self.config.budgets.webhook_url if self.config.budgets is not None else None
        if (self.config.fleet.escalation_webhook_url or budget_hook) and self.outbox_sender.holds_lock():
            self.outbox_sender.send_due()

    def in_flight(self) -> InFlight:
        """Where the unfinished jobs are right now."""
        keys = self.store.keys
        queues = self._queues()
        pipe = self.store.redis.pipeline(transaction=False)
        for queue in queues:
            pipe.llen(keys.queue(queue))
        for queue in queues[1:]:
            pipe.zcard(keys.waiting(queue))
        for key in (keys.delayed, keys.leases, keys.deciding, keys.vb_held):
            pipe.zcard(key)
        replies = [int(r) for r in pipe.execute()]
        lengths, rest = replies[:len(queues)], replies[len(queues):]
        queued, (delayed, running, deciding, batched) = sum(rest[:-4]), rest[-4:]
        return InFlight(dict(zip(queues, lengths, strict=True)), queued, delayed, running, deciding, batched)

    def run_until_idle(self, *, max_steps: int = 1000, timeout_s: float = 60.0) -> int:
        """Step and sweep until no job is in flight; returns how many messages were taken.

        While nothing can run yet (a backoff, a retry-after) it sleeps until the next delayed job is due.
        Raises :class:`FleetNotIdle` after ``max_steps`` steps or ``timeout_s`` seconds, or at once when a
        job waits on a queue no runner of this fleet consumes."""
        return self._drive(lambda: self.in_flight().idle, IDLE_POLL_S, timeout_s, max_steps)

    def run_producer(self, producer: Callable[..., T], *args: Any, timeout_s: float = 60.0) -> T:
        """Call ``producer(*args)`` (code that submits jobs and waits for their results) in a helper thread
        while the fleet steps and sweeps in this one; returns what it returns, or raises what it raised.
        Jobs it leaves unfinished stay in flight (``run_until_idle`` settles them)."""
        outcome: list[T] = []
        failure: list[BaseException] = []

        def call() -> None:
            try:
                outcome.append(producer(*args))
            except BaseException as err:
                failure.append(err)

        thread = threading.Thread(target=call, name="toolbag-test-producer", daemon=True)
        thread.start()
        self._drive(lambda: not thread.is_alive(), PRODUCER_POLL_S, timeout_s, None)
        thread.join()
        if failure:
            raise failure[0]
        return outcome[0]

    def _drive(self, done: Callable[[], bool], poll_s: float, timeout_s: float, max_steps: int | None) -> int:
        deadline = time.monotonic() + timeout_s
        taken = steps = 0
        while max_steps is None or steps < max_steps:
            steps += 1
            taken += self.step()
            self.sweep()
            if done():
                return taken
            now = self.in_flight()
            if any(n for q, n in now.messages.items() if self._handler(q) is not None):
                continue
            unserved = sorted(q for q, n in now.messages.items() if n)
            if unserved:
                raise FleetNotIdle(f"jobs wait on {', '.join(unserved)}, which this fleet does not consume "
                                   f"(runners: {', '.join(sorted(self.runners)) or 'none'})")
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise FleetNotIdle(f"not done after {timeout_s}s; in flight: {now}")
            time.sleep(min(self._next_due_s(), poll_s, remaining_s))
        raise FleetNotIdle(f"not done after {max_steps} steps; in flight: {self.in_flight()}")

    def _next_due_s(self) -> float:
        first: list[tuple[bytes, float]] = self.store.redis.zrange(self.store.keys.delayed, 0, 0, withscores=True)  # type: ignore[assignment]
        if not first:
            return IDLE_POLL_S
        return max(0.0, first[0][1] / 1000 - time.time())

