"""One provider's vendor batches: submit a pending collection when it is due, poll the open batches, stream
each item's result into its job, and recover batches that failed, expired, got stuck or were never created.

Of all supervisors (and in-process fleets) only the holder of ``<p>vb:lock:<provider>`` works for a provider,
so one poller per provider runs fleet-wide; every write it makes to a job is a fenced transition of the job
store (``complete``, ``end_attempt``), so a second poller after a lock hand-over, a result read twice, or a
result for a job that moved on (cancelled, expired, token changed) writes nothing and is counted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from toolbag.config import Config, ConfigError
from toolbag.jobs import AttemptRecord, JobNotFound, JobRecord, JobStatus
from toolbag.providers.base import AttemptFailure, ModelResponse, OutcomeKind
from toolbag.providers.batch import BatchEnding, BatchItem, BatchOutcome, ItemEnd, VendorBatches, vendor_batches
from toolbag.providers.structured import parse_json_output
from toolbag.store import JobStore
from toolbag.store.jobstore import text
from toolbag.telemetry import metrics
from toolbag.telemetry import vendorbatch as vendor_telemetry
from toolbag.vendorbatch.store import BatchRecord, BatchStore, HeldAttempt, Pending

if TYPE_CHECKING:
    from toolbag.skills import SkillLibrary

__all__ = ["VendorBatchService", "VendorBatcher", "batch_providers"]

log = logging.getLogger("toolbag.vendorbatch")
RENEW_EVERY_ITEMS = 200  # while reading a long result stream, the poller lock is renewed this often

# What an item the vendor never answered becomes, by how its batch ended (the supervisor decides on it).
_UNANSWERED = {
    BatchEnding.COMPLETED: (OutcomeKind.LOST, "the vendor batch ended without a result for this item"),
    BatchEnding.EXPIRED: (OutcomeKind.TIMEOUT, "the vendor batch expired before this item ran"),
    BatchEnding.CANCELLED: (OutcomeKind.LOST, "the vendor batch was cancelled before this item ran"),
    BatchEnding.FAILED: (OutcomeKind.SERVER_ERROR, "the vendor failed the batch as a whole"),
}
_NEVER_RUN = {
    ItemEnd.EXPIRED: (OutcomeKind.TIMEOUT, "the vendor batch expired before this item ran"),
    ItemEnd.CANCELED: (OutcomeKind.LOST, "the vendor batch was cancelled before this item ran"),
}


def batch_providers(config: Config) -> list[str]:
    """Providers with at least one model whose vendor batches it (``features.batch``)."""
    return sorted({m.provider for m in config.models.values() if m.features.batch})


class VendorBatcher:
    """The vendor-batch machinery of one provider (see the module). :meth:`run_once` does one round."""

    def __init__(self, config: Config, store: JobStore, provider: str, batches: VendorBatches[Any], *,
                 skills: SkillLibrary | None = None, extra_headers: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.settings = config.fleet.vendor_batch
        self.store = store
        self.provider = provider
        self.batches = batches
        self.skills = skills
        self.extra_headers = dict(extra_headers or {})
        self.held = BatchStore(store.redis, store.keys)
        self.models = sorted(name for name, m in config.models.items() if m.provider == provider and m.features.batch)
        self.name = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.lock_key = store.keys.vb_lock(provider)
        self.dropped = 0  # results and attempts this batcher dropped because their job had moved on

    # -- the one poller --------------------------------------------------------------------------------

    def holds_lock(self) -> bool:
        """Take the provider's poller lock, or renew it when this batcher holds it."""
        ttl_ms = int(self.settings.lock_ttl_s * 1000)
        r = self.store.redis
        if r.set(self.lock_key, self.name, nx=True, px=ttl_ms):
            return True
        if text(r.get(self.lock_key) or b"") == self.name:
            r.pexpire(self.lock_key, ttl_ms)
            return True
        return False

    def release_lock(self) -> None:
        if text(self.store.redis.get(self.lock_key) or b"") == self.name:
            self.store.redis.delete(self.lock_key)

    def run_once(self) -> bool:
        """Submit due collections and look at due batches, if this batcher is the provider's poller."""
        if not self.models or not self.holds_lock():
            return False
        self.submit_due()
        self.poll_due()
        return True

    # -- submit -------------------------------------------------------------------------------------

    def _due(self, pending: Pending, now_ms: int) -> bool:
        s = self.settings
        return pending.count > 0 and (pending.count >= s.max_requests or pending.bytes >= s.max_bytes
                                      or now_ms - pending.oldest_ms >= s.max_age_s * 1000)

    def submit_due(self) -> int:
        """Every pending collection past a threshold, as vendor batches; returns how many were submitted."""
        submitted = 0
        for model in self._collections():
            while self.holds_lock():  # renewed before each take: a batch's create may take a while
                pending = self.held.pending(self.provider, model)
                metrics.VENDOR_BATCH_PENDING.labels(self.provider, model).set(pending.count)
                if not self._due(pending, self.store.now_ms()):
                    break
                taken = self.held.take(self.provider, model, self.settings.max_requests, self.settings.max_bytes)
                if taken.dropped:
                    self._dropped("pending", taken.dropped)
                if not taken.items:
                    if not taken.dropped:
                        break
                    continue
                submitted += self._create(taken.batch_id, model, taken.items)
        return submitted

    def _collections(self) -> list[str]:
        """The models with a pending collection to watch: every batch model of the provider, and any model with
        attempts still pending (its ``features.batch`` turned off since: they are still sent)."""
        prefix = f"{self.provider}:"
        found = {text(f)[len(prefix):] for f in self.store.redis.hkeys(self.store.keys.vb_bytes)
                 if text(f).startswith(prefix)}
        return sorted(set(self.models) | {m for m in found if m in self.config.models})

    def _create(self, batch_id: str, model: str, items: list[HeldAttempt]) -> int:
        """The vendor call that creates the batch; the record says ``submitted`` once it is made."""
        model_id = self.config.models[model].model_id
        try:
            vendor_id = self.batches.submit(model_id, [BatchItem(h.custom_id, h.request) for h in items],
                                            extra_headers=self.extra_headers)
        except AttemptFailure as failure:
            metrics.VENDOR_BATCH_RECOVERED.labels(self.provider, "refused").inc()
            log.warning("vendor batch of %d %s items refused: %s", len(items), model, failure.reason[:300])
            # one bad request refuses the whole batch: the others are not at fault, and are tried again
            kind = failure.kind if failure.kind is not OutcomeKind.BAD_REQUEST or len(items) == 1 \
                else OutcomeKind.SERVER_ERROR
            if self.held.move(batch_id, "creating", "abandoned"):
                self._fail_all(self._record_or_blank(batch_id, model), kind,
                               f"the vendor refused the batch: {failure.reason}")
            return 0
        if not self.held.move(batch_id, "creating", "submitted", vendor_id=vendor_id):
            # recovered meanwhile (its attempts failed as lost and were decided on): the batch is not needed
            self._cancel(vendor_id)
            return 0
        vendor_telemetry.record_batch_submitted(self.provider, model, len(items))
        log.info(json.dumps({"event": "vendor_batch_submitted", "provider": self.provider, "model": model,
                             "batch_id": vendor_id, "items": len(items)}))
        self.held.later(self.provider, batch_id, self.store.now_ms() + int(self.settings.poll_interval_s * 1000))
        return 1

    def _record_or_blank(self, batch_id: str, model: str) -> BatchRecord:
        return self.held.record(batch_id) or BatchRecord(batch_id, "abandoned", self.provider, model, "", 0, 0, 0)

    # -- poll ---------------------------------------------------------------------------------------

    def poll_due(self) -> int:
        """Look at every open batch due for it; returns how many ended (results read or recovered)."""
        ended = 0
        now_ms = self.store.now_ms()
        due = self.held.due(self.provider, now_ms)
        for batch_id in due:
            record = self.held.record(batch_id)
            if record is None:
                self.held.close(self.provider, batch_id)
                continue
            try:
                ended += self._look(record, now_ms)
            except AttemptFailure as failure:  # the vendor could not be asked now: ask again next time
                log.warning("vendor batch %s: %s", record.vendor_id or batch_id, failure.reason[:300])
                self.held.later(self.provider, batch_id, now_ms + int(self.settings.poll_interval_s * 1000))
        if due:  # the open batches' gauges, as often as batches are looked at
            vendor_telemetry.record_open_batches(self.provider, self.held.open_ages_s(self.provider, now_ms))
        return ended

    def _look(self, record: BatchRecord, now_ms: int) -> int:
        s = self.settings
        if record.state == "creating":
            if now_ms - record.created_ms < s.creating_timeout_s * 1000:
                self.held.later(self.provider, record.batch_id, now_ms + int(s.poll_interval_s * 1000))
                return 0
            if not self.held.move(record.batch_id, "creating", "abandoned"):
                return 0
            metrics.VENDOR_BATCH_RECOVERED.labels(self.provider, "abandoned").inc()
            log.warning("batch %s was taken but never created at %s: its attempts fail as lost",
                        record.batch_id, self.provider)
            self._fail_all(record, OutcomeKind.LOST, "its vendor batch was never created (the taker died)")
            return 1
        if record.state == "abandoned":  # a recovery that stopped half-way
            self._fail_all(record, OutcomeKind.LOST, "its vendor batch was abandoned")
            return 1
        status = self.batches.status(record.vendor_id)
        if status.ending is not None:
            self._read(record, status.ending)
            return 1
        if now_ms - record.changed_ms >= s.stuck_after_s * 1000:
            metrics.VENDOR_BATCH_RECOVERED.labels(self.provider, "stuck").inc()
            vendor_telemetry.record_batch_ended(self.provider, "stuck", (now_ms - record.changed_ms) / 1000)
            log.warning("vendor batch %s still running after %gs: cancelled, its attempts fail",
                        record.vendor_id, s.stuck_after_s)
            self._cancel(record.vendor_id)
            self._fail_all(record, OutcomeKind.TIMEOUT,
                           f"the vendor batch was still running after {s.stuck_after_s:g}s (cancelled)")
            return 1
        self.held.later(self.provider, record.batch_id, now_ms + int(s.poll_interval_s * 1000))
        return 0

    def _cancel(self, vendor_id: str) -> None:
        try:
            self.batches.cancel(vendor_id)
        except AttemptFailure as failure:  # it may have ended meanwhile; its results are fenced off anyway
            log.info("cancelling vendor batch %s: %s", vendor_id, failure.reason[:300])

    def _read(self, record: BatchRecord, ending: BatchEnding) -> None:
        """Stream the results into their jobs as they are read; items without a result fail by the ending."""
        vendor_telemetry.record_batch_ended(self.provider, ending.value,
                                            (self.store.now_ms() - record.changed_ms) / 1000)
        for n, outcome in enumerate(self.batches.results(record.vendor_id), 1):
            if n % RENEW_EVERY_ITEMS == 0 and not self.holds_lock():
                return  # another poller took over (this one stalled): it reads the batch again, fenced
            held = self.held.item(record.batch_id, outcome.custom_id)
            if held is not None:  # None: resolved by an earlier read
                self._apply(record, held, outcome)
        kind, reason = _UNANSWERED[ending]
        self._fail_all(record, kind, reason)

    def _fail_all(self, record: BatchRecord, kind: OutcomeKind, reason: str) -> None:
        """End every unresolved item of the batch as ``kind``, then forget the batch."""
        for held in self.held.items(record.batch_id):
            failed = BatchOutcome(held.custom_id, ItemEnd.FAILED, failure=AttemptFailure(kind, reason))
            self._apply(record, held, failed)
        self.held.close(self.provider, record.batch_id)

    # -- one item -----------------------------------------------------------------------------------

    def _apply(self, record: BatchRecord, held: HeldAttempt, outcome: BatchOutcome) -> None:
        """Write one item's outcome into its job through a fenced transition; a job that moved on is skipped."""
        try:
            job = self.store.get(held.job_id)
        except JobNotFound:
            job = None
        if job is None or job.status is not JobStatus.RUNNING or job.token != held.token:
            self._dropped("result")
            self.held.resolved(record.batch_id, held)
            return
        failure = outcome.failure
        if outcome.end in _NEVER_RUN:
            failure = AttemptFailure(*_NEVER_RUN[outcome.end])
        if failure is None and outcome.response is not None:
            try:
                self._complete(record, job, held, outcome.response)
            except AttemptFailure as invalid:
                failure = invalid
        elif failure is None:
            failure = AttemptFailure(OutcomeKind.SERVER_ERROR, "the vendor batch returned an item without an answer")
        if failure is not None:
            self._fail(record, job, held, failure)
        self.held.resolved(record.batch_id, held)

    def _attempt(self, record: BatchRecord, job: JobRecord, ended_ms: int, **fields: Any) -> AttemptRecord:
        return AttemptRecord(n=job.attempt, model=job.model, provider=self.provider, worker=job.worker,
                             latency_s=round(max(0, ended_ms - job.started_ms) / 1000, 3),
                             started_ms=job.started_ms, ended_ms=ended_ms, path="vendor_batch",
                             batch_id=record.vendor_id or None, **fields)

    def _complete(self, record: BatchRecord, job: JobRecord, held: HeldAttempt, response: ModelResponse) -> None:
        request = held.request
        if request.json_schema is not None and not response.tool_calls and response.parsed is None:
            response = dataclasses.replace(response, parsed=parse_json_output(response.text, vendor=self.provider))
        skill = self.skills.get(job.skill) if job.skill and self.skills is not None else None
        if skill is not None:
            from toolbag.skills import accept_output

            output: Any = accept_output(skill, response)  # raises AttemptFailure(INVALID_OUTPUT)
        else:
            output = response.text if request.json_schema is None else response.parsed
        usage = response.usage
        cost = self.config.models[job.model].cost_usd(usage.input_tokens, usage.output_tokens,
                                                      cache_read_tokens=usage.cached_input_tokens,
                                                      cache_write_tokens=usage.cache_write_tokens, batch=True)
        ended_ms = self.store.now_ms()
        attempt = self._attempt(record, job, ended_ms, outcome=OutcomeKind.OK.value,
                                input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, cost_usd=cost,
                                cache_read_tokens=usage.cached_input_tokens,
                                cache_write_tokens=usage.cache_write_tokens, request_id=response.request_id)
        result = {
            "provider": self.provider, "model": job.model, "model_id": response.model,
            "usage": dataclasses.asdict(usage), "cost_usd": cost, "request_id": response.request_id,
            "latency_s": attempt.latency_s, "tool_calls": [dataclasses.asdict(c) for c in response.tool_calls],
            "path": "vendor_batch", "batch_id": record.vendor_id,
        }
        done = self.store.complete(job.id, held.token, output, result, attempt.to_json())
        if not done.ok:
            self._dropped("result")
            return
        metrics.ATTEMPTS.labels(self.provider, job.model, job.tier, OutcomeKind.OK.value).inc()
        vendor_telemetry.record_batch_item_cost(  # tokens, spend at the batch price, the saving
            self.config.models[job.model], provider=self.provider, model_name=job.model, capability=job.capability,
            input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cached_input_tokens, cache_write_tokens=usage.cache_write_tokens)
        metrics.JOB_DURATION.labels(job.capability, job.tier).observe((done.finished_ms - done.created_ms) / 1000)
        from toolbag.budgets import Budgets

        budgets = Budgets.of(self.config, self.store.redis, self.store.keys)
        if budgets is not None:
            budgets.settle_safely(job.id, job.caller, cost, final=True)

    def _fail(self, record: BatchRecord, job: JobRecord, held: HeldAttempt, failure: AttemptFailure) -> None:
        attempt = self._attempt(record, job, self.store.now_ms(), outcome=failure.kind.value,
                                reason=failure.reason[:2000], request_id=failure.request_id,
                                retry_after_s=failure.retry_after_s)
        if not self.store.end_attempt(job.id, held.token, failure.kind.value, attempt.to_json()).ok:
            self._dropped("result")
            return
        metrics.ATTEMPTS.labels(self.provider, job.model, job.tier, failure.kind.value).inc()

    def _dropped(self, where: str, n: int = 1) -> None:
        self.dropped += n
        if where == "pending":
            metrics.VENDOR_BATCH_PENDING_DROPPED.labels(self.provider).inc(n)
        else:
            vendor_telemetry.record_result_dropped(self.provider, n)


class VendorBatchService:
    """Every batch provider's :class:`VendorBatcher`, run by a thread of a supervisor process (``start``) or by
    hand (``run_once``: :class:`toolbag.testing.InProcessFleet` sweeps call it)."""

    def __init__(self, config: Config, store: JobStore, *, skills: SkillLibrary | None = None,
                 environ: Mapping[str, str] | None = None, extra_headers: Mapping[str, str] | None = None,
                 tick_s: float | None = None) -> None:
        self.batchers: list[VendorBatcher] = []
        for provider in batch_providers(config):
            try:
                batches = vendor_batches(provider, config, environ)
            except ConfigError as err:  # this process cannot reach the vendor (no key): another supervisor polls
                log.error("vendor batches of %s are not polled by this process: %s", provider, err)
                continue
            self.batchers.append(VendorBatcher(config, store, provider, batches, skills=skills,
                                               extra_headers=extra_headers))
        self.held = BatchStore(store.redis, store.keys)
        vb = config.fleet.vendor_batch
        self.tick_s = tick_s if tick_s is not None else min(1.0, vb.poll_interval_s, vb.max_age_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="toolbag-vendor-batches", daemon=True)

    def run_once(self) -> None:
        """One round of every provider's batcher; a fleet with no attempt held by a vendor batch costs one
        command (every pending item and every unresolved batch item is in ``vb:held``)."""
        if not self.batchers or self.held.held_count() == 0:
            return
        for batcher in self.batchers:
            try:
                batcher.run_once()
            except Exception:  # Redis or a vendor away: the next round tries again; nothing was lost
                log.warning("vendor batches of %s: a round failed; retrying", batcher.provider, exc_info=True)

    def start(self) -> None:
        if self.batchers:
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.tick_s):
            self.run_once()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        for batcher in self.batchers:
            try:
                batcher.release_lock()
            except Exception:
                log.debug("releasing the vendor-batch lock failed", exc_info=True)
            batcher.batches.close()

    @property
    def dropped(self) -> int:
        return sum(b.dropped for b in self.batchers)
