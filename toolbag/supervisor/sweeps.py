"""The sweeps that keep every job moving, run in a thread of every supervisor process: expired leases, lost
and orphaned messages, due delayed jobs, stuck decisions, deadlines, and the fleet-wide gauges. Each
transition they make is fenced in Lua, so two replicas sweeping at once is safe.
"""

from __future__ import annotations

import logging
import threading
import time

from toolbag.config import TIERS, Config
from toolbag.jobs import AttemptRecord, DecisionRecord, JobNotFound, JobStatus
from toolbag.providers.base import OutcomeKind
from toolbag.ratelimit import RateLimiter
from toolbag.routing.health import HealthTracker
from toolbag.store import JobStore
from toolbag.store.connection import UNAVAILABLE_ERRORS, OutageLog
from toolbag.store.messages import queue_name
from toolbag.store.orphans import orphaned_decisions, reclaim_decision
from toolbag.store.queues import queue_stats
from toolbag.telemetry import metrics

log = logging.getLogger("toolbag.supervisor")
VANISHED_CHECK_S = 1.0  # how often queues are checked for jobs whose message vanished
OUTAGE_RETRY_S = 1.0  # the pause between sweeps while Redis is unavailable


class Sweeper:
    """Periodic, idempotent sweeps: expired leases, due delayed jobs, stuck decisions, deadlines, gauges."""

    def __init__(self, config: Config, store: JobStore, *, health: HealthTracker | None = None,
                 limiter: RateLimiter | None = None, interval_s: float = 0.25, gauges_every_s: float = 5.0) -> None:
        self.config = config
        self.store = store
        self.health = health
        self.limiter = limiter
        self.interval_s = interval_s
        self.gauges_every_s = gauges_every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="toolbag-sweeper", daemon=True)
        self._last_gauges = 0.0
        self._last_vanished_check = 0.0
        self._vanished: set[tuple[str, str, str]] = set()
        self._queues = [queue_name(provider, tier) for provider in config.providers for tier in TIERS]
        self._outage = OutageLog(log, "supervisor sweeps")
        self._back_at = -float("inf")  # when Redis last came back after an outage this sweeper saw

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(OUTAGE_RETRY_S if self._outage.away else self.interval_s):
            try:
                self.sweep_once()
            except UNAVAILABLE_ERRORS as err:  # said once; the next sweep after it is back says so
                self._outage.failed(err)
            except Exception:
                log.warning("sweep failed; retrying next tick", exc_info=True)
            else:
                if self._outage.ok():
                    self._back_at = time.monotonic()

    def sweep_once(self) -> None:
        self.expire_leases()
        self.reclaim_orphans()
        self.reclaim_orphaned_decisions()
        self.recover_vanished()
        self.promote_due()
        self.resend_stuck()
        self.expire_deadlines()
        now = time.monotonic()
        if now - self._last_gauges >= self.gauges_every_s:
            self._last_gauges = now
            self.update_gauges()

    def expire_leases(self) -> int:
        """A lease past its deadline means the worker died mid-attempt: the attempt ends as ``lost``. One whose
        vendor call had begun is counted apart: the vendor may have answered and billed it, and the next attempt
        pays again."""
        if self._outage.away or time.monotonic() - self._back_at < self.config.fleet.lease_ttl_s:
            return 0  # Redis's clock ran on while no worker could renew: let the live ones renew first
        n = 0
        now_ms = self.store.now_ms()
        for job_id, token in self.store.expired_leases():
            try:
                job = self.store.get(job_id)
            except JobNotFound:
                self.store.redis.zrem(self.store.keys.leases, f"{job_id}:{token}")
                continue
            paid = " after its vendor call began (the vendor may have billed it)" if job.called_ms else ""
            record = AttemptRecord(
                n=job.attempt, model=job.model, provider=job.provider,
                outcome=OutcomeKind.LOST.value, reason=f"lease expired{paid} (worker {job.worker or '?'} gone)",
                started_ms=job.started_ms, ended_ms=now_ms,
            )
            if self.store.end_attempt(job_id, token, OutcomeKind.LOST.value, record.to_json()).ok:
                metrics.ATTEMPTS.labels(job.provider, job.model, job.tier, OutcomeKind.LOST.value).inc()
                if job.called_ms:
                    metrics.LOST_AFTER_CALL.labels(job.provider, job.model, job.tier).inc()
                n += 1
        return n

    def reclaim_orphans(self) -> int:
        """Jobs whose message went to a worker that died before claiming it: back on their queue."""
        n = 0
        for tag, queue, job_id, token in self.store.orphaned_deliveries(self.config.fleet.unclaimed_delivery_s):
            record = DecisionRecord("requeue", "delivered to a worker that died before starting it").to_json()
            if self.store.reclaim(tag, queue, job_id, token, record).ok:
                metrics.REQUEUED.labels("unclaimed_delivery").inc()
                n += 1
        return n

    def reclaim_orphaned_decisions(self) -> int:
        """Decision messages a dead supervisor held: back on the supervisor queue (fenced by token)."""
        n = 0
        for tag, job_id, token in orphaned_decisions(self.store, self.config.fleet.unclaimed_delivery_s):
            if reclaim_decision(self.store, tag, job_id, token):
                metrics.REQUEUED.labels("unacked_decision").inc()
                n += 1
        return n

    def recover_vanished(self) -> int:
        """Queued jobs whose message vanished with a worker killed between kombu's pop and its record of the
        delivery (:meth:`JobStore.vanished_pointers`): back on their queue once a second check, a second
        later, finds the same job with the same token still without a message."""
        now = time.monotonic()
        if now - self._last_vanished_check < VANISHED_CHECK_S:
            return 0
        self._last_vanished_check = now
        seen: set[tuple[str, str, str]] = set()
        n = 0
        for queue in self._queues:
            for job_id, token in self.store.vanished_pointers(queue, self.config.fleet.unclaimed_delivery_s):
                suspect = (queue, job_id, token)
                if suspect not in self._vanished:
                    seen.add(suspect)
                    continue
                record = DecisionRecord("requeue", "its message was lost with a worker before delivery").to_json()
                if self.store.reclaim("", queue, job_id, token, record).ok:
                    log.warning("job %s: message lost with a worker; put back on %s", job_id, queue)
                    metrics.REQUEUED.labels("vanished_message").inc()
                    n += 1
        self._vanished = seen
        return n

    def promote_due(self) -> int:
        return sum(1 for job_id in self.store.due_delayed() if self.store.promote(job_id).ok)

    def resend_stuck(self) -> int:
        n = 0
        for job_id in self.store.stuck_deciding(self.config.fleet.stuck_deciding_s):
            try:
                job = self.store.get(job_id)
            except JobNotFound:
                self.store.redis.zrem(self.store.keys.deciding, job_id)
                continue
            if job.status is JobStatus.DECIDING:
                self.store.resend_decision(job_id, job.token)
                n += 1
            else:
                self.store.redis.zrem(self.store.keys.deciding, job_id)
        return n

    def expire_deadlines(self) -> int:
        n = 0
        for job_id in self.store.overdue():
            record = DecisionRecord("expire", "job deadline passed").to_json()
            done = self.store.finish(job_id, JobStatus.EXPIRED, "job deadline passed before completion", record)
            if done.ok:
                job = self.store.get(job_id)  # jobs finished are counted in Redis by finish.lua
                metrics.JOB_DURATION.labels(job.capability, job.tier).observe(
                    (done.finished_ms - done.created_ms) / 1000
                )
                n += 1
            else:
                self.store.redis.zrem(self.store.keys.deadlines, job_id)
        return n

    def update_gauges(self) -> None:
        for q in queue_stats(self.store, self.config.providers):  # queued + reserved-not-started + delayed
            metrics.QUEUE_DEPTH.labels(q.provider, q.tier).set(q.depth)
            metrics.QUEUE_OLDEST_AGE.labels(q.provider, q.tier).set(q.oldest_age_s)
            metrics.DELAYED_JOBS.labels(q.provider, q.tier).set(q.delayed)
        if self.health is not None:
            self.health.publish_all()
        if self.limiter is not None:
            for (model, kind), ratio in self.limiter.headroom().items():
                metrics.RATELIMIT_HEADROOM.labels(self.config.provider_of(model), model, kind).set(ratio)
        live = self.store.live_workers(max_age_s=3 * self.config.fleet.lease_ttl_s)
        for provider in self.config.providers:
            count = sum(1 for member in live if member.split("|", 1)[0] == provider)
            for tier in TIERS:
                metrics.WORKERS_UP.labels(provider, tier).set(count)
