"""One attempt of one job on one provider: claim (fenced), call the vendor, record the outcome.

An attempt never raises into Celery: every ending is written to the store, and a delivery that is stale
(duplicate, redelivered after recovery, or for a job that moved on) is dropped and counted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from toolbag.attempt.context import (
    Admission,
    AttemptContext,
    Caller,
    Forgetful,
    MeteredAdapter,
    Opening,
    OutcomeSink,
    PlainCall,
    Ticket,
    Unlimited,
)
from toolbag.attempt.deltas import RedisDeltaSink, StreamingAdapter
from toolbag.attempt.leases import LeaseKeeper
from toolbag.attempt.request import build_request, continuation, requested_tools
from toolbag.budgets import Budgets
from toolbag.config import Config, Tier
from toolbag.jobs import AttemptRecord, DecisionRecord, JobRecord, JobStatus
from toolbag.providers.base import Adapter, AttemptFailure, ModelRequest, ModelResponse, OutcomeKind
from toolbag.ratelimit import HandBack
from toolbag.routing import Router
from toolbag.routing.vendorbatch import VENDOR_BATCH, attempt_path, left_when_batched_s
from toolbag.store import JobStore, Transition
from toolbag.store.jobstore import Claimed, ScriptPart
from toolbag.store.messages import queue_name
from toolbag.telemetry import metrics
from toolbag.vendorbatch.store import BatchStore

if TYPE_CHECKING:
    from toolbag.skills import Skill, SkillLibrary

log = logging.getLogger("toolbag.worker")


@dataclass(frozen=True)
class Started:
    """An attempt past its claim, admission and ``calling`` mark: ready for its vendor call."""

    record: JobRecord
    token: str
    ctx: AttemptContext
    request: ModelRequest
    skill: Skill | None
    ticket: Ticket  # not entered yet; whoever finishes the attempt enters, settles and exits it
    t0: float  # time.monotonic() at the start of the attempt
    continued: str = ""  # the cut answer this attempt continues (its prefill): its text starts after it


@dataclass(frozen=True)
class Lesson:
    """What an attempt's ending teaches: the parts its transition's script runs (``health``, ``settle``; None
    where the sink or the ticket runs none), and what a sink without a part records on its own."""

    model: str
    outcome: OutcomeKind
    latency_s: float
    retry_after_s: float | None
    ticket: Ticket | None
    health: ScriptPart | None
    settle: ScriptPart | None


@dataclass(frozen=True)
class Success:
    """A successful call and what its completion writes."""

    response: ModelResponse
    output: Any
    result: dict[str, Any]
    attempt: AttemptRecord
    latency_s: float
    cost_usd: float


def crashed(err: Exception) -> AttemptFailure:
    """A bug of ours, as the failure the attempt records (the job is decided on, never lost)."""
    return AttemptFailure(OutcomeKind.SERVER_ERROR, f"worker error: {type(err).__name__}: {err}")


class AttemptRunner:
    def __init__(
        self,
        config: Config,
        store: JobStore,
        provider: str,
        adapter: Adapter,
        keeper: LeaseKeeper,
        worker_name: str,
        skills: SkillLibrary | None = None,
        *,
        admission: Admission | None = None,
        caller: Caller | None = None,
        health: OutcomeSink | None = None,
        router: Router | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.provider = provider
        self.adapter = adapter
        self.keeper = keeper
        self.worker_name = worker_name
        self.skills = skills
        self.admission: Admission = admission or Unlimited()
        self.caller: Caller = caller or PlainCall()
        self.health: OutcomeSink = health or Forgetful()
        self.router = router  # where a rate-limited interactive attempt spills; None: it waits instead
        self.budgets = Budgets.of(config, store.redis, store.keys)  # None: no budgets configured
        self.batches = BatchStore(store.redis, store.keys)  # the vendor-batch path's pending collections

    def run(self, job_id: str, token: str, queue: str) -> None:
        """One attempt, start to end, on the calling thread."""
        started = self.start(job_id, token, queue)
        if started is None:
            return
        try:
            self.finish(started)
        finally:
            self.release(started.record, started.token)

    # -- the steps, for this thread or the worker's event loop (toolbag.attempt.loop) -----------------

    def start(self, job_id: str, token: str, queue: str) -> Started | None:
        """Read the job, build its request, then claim it (fenced; the lease is kept alive from here until
        :meth:`release`) with its first rate-limit admission try and, when that commits a call due now, the
        ``calling`` mark, all in one script (``lua/claim.lua``). The attempt ready for its vendor call, or None
        when it ended here: a stale delivery, handed back, gone meanwhile, or failed (all recorded, the lease
        released)."""
        t0 = time.monotonic()
        peeked = self.store.peek(job_id)  # what the request is built from; the claim decides if it is current
        request: ModelRequest | None = None
        skill: Skill | None = None
        early: Exception | None = None  # a request that could not be built: recorded once the attempt is claimed
        opening = None
        if peeked is not None:
            try:
                request, skill = self._request(peeked)
                if not self._may_batch(peeked):  # a vendor batch takes no real-time slot: no admission
                    opening = self.admission.opening(self._context(peeked, skill, peeked.started_ms), request)
            except Exception as err:
                early = err
        claimed = self.store.claim_with(job_id, token, queue, self.config.fleet.lease_ttl_s, self.worker_name,
                                        opening.part if opening is not None else None)
        if claimed is None or peeked is None:
            metrics.STALE_DELIVERIES.labels(self.provider).inc()
            log.info(json.dumps({"event": "stale_delivery", "job_id": job_id, "token": token}))
            return None
        record = dataclasses.replace(peeked, status=JobStatus.RUNNING, started_ms=claimed.started_ms,
                                     worker=self.worker_name, called_ms=claimed.started_ms if claimed.called else 0)
        self._claimed(record, token)
        started = None
        try:
            started = self._prepare(record, token, request, skill, early, opening, claimed, t0)
        finally:
            if started is None:
                self.release(record, token)
        return started

    def _claimed(self, record: JobRecord, token: str) -> None:
        metrics.QUEUE_WAIT.labels(self.provider, record.tier).observe(
            max(0.0, (record.started_ms - record.enqueued_ms) / 1000)
        )
        self.keeper.add(f"{record.id}:{token}")
        metrics.INFLIGHT.labels(self.provider).inc()

    def release(self, record: JobRecord, token: str) -> None:
        metrics.INFLIGHT.labels(self.provider).dec()
        self.keeper.remove(f"{record.id}:{token}")

    def _context(self, record: JobRecord, skill: Skill | None, started_ms: int) -> AttemptContext:
        clock_offset_ms = started_ms - int(time.time() * 1000)  # Redis's clock (the claim) minus this host's
        model = self.config.models[record.model]
        return AttemptContext(
            job_id=record.id, capability=record.capability, tier=record.tier, caller=record.caller,
            model=record.model, model_id=model.model_id, provider=self.provider, skill=record.skill,
            deadline_ms=record.deadline_ms - clock_offset_ms,  # on this host's clock, for the tool loop
            allowed_tools=tuple(skill.allowed_tools) if skill is not None else (),
            requested_tools=tuple(requested_tools(record.input)),
        )

    def _prepare(
        self, record: JobRecord, token: str, request: ModelRequest | None, skill: Skill | None,
        early: Exception | None, opening: Opening | None, claimed: Claimed, t0: float,
    ) -> Started | None:
        """After the claim: the rest of the admission (a booked slot, a full in-flight limit, a hand-back) and
        the ``calling`` mark if the claim did not make it; None when the attempt ended here (recorded)."""
        try:
            if early is not None:
                raise early
            assert request is not None
            if opening is None and self._vendor_batch(record):  # held for a vendor batch: no admission, no call
                self._hold(record, token, request)
                return None
            ctx = self._context(record, skill, record.started_ms)
            try:
                if opening is not None:
                    ticket = self.admission.opened(ctx, request, opening, claimed.grant)
                else:
                    ticket = self.admission.admit(ctx, request)
            except HandBack as back:  # no capacity: to another candidate or the delayed set, no attempt
                self._hand_back(record, token, back, ctx, request)
                return None
            if not claimed.called and not self.store.calling(record.id, token):
                # swept as lost, or cancelled, meanwhile: pay nothing
                ticket.__exit__(None, None, None)
                metrics.STALE_DELIVERIES.labels(self.provider).inc()
                log.info(json.dumps({"event": "attempt_gone_before_call", "job_id": record.id, "token": token}))
                return None
        except AttemptFailure as failure:
            self._failed(record, token, record.attempt, failure, time.monotonic() - t0)
            return None
        except Exception as err:  # a bug of ours must not crash the worker or lose the job
            log.exception("attempt crashed", extra={"job_id": record.id})
            self._failed(record, token, record.attempt, crashed(err), time.monotonic() - t0)
            return None
        continued = continuation(self.config, record.model, record.prefill) if skill is None else ""
        return Started(record, token, ctx, request, skill, ticket, t0, continued)

    def _may_batch(self, record: JobRecord) -> bool:
        """Whether the attempt may take the vendor-batch path, with the most time it can have left (measured from
        when it was queued, on Redis's clock): False means real time for sure, so the claim admits at once."""
        return self._batch_path(record, record.enqueued_ms)

    def _vendor_batch(self, record: JobRecord) -> bool:
        return self._batch_path(record, record.started_ms)  # measured at the claim, on Redis's clock

    def _batch_path(self, record: JobRecord, now_ms: int) -> bool:
        if record.tier != "batch" or record.capability not in self.config.routes:
            return False
        time_left_s = left_when_batched_s(self.config, (record.deadline_ms - now_ms) / 1000)
        return attempt_path(self.config, record.capability, record.tier, record.model, time_left_s) == VENDOR_BATCH

    def _hold(self, record: JobRecord, token: str, request: ModelRequest) -> None:
        """Hand the claimed attempt to its provider × model's pending collection: from here a vendor batch holds
        its lease (toolbag.vendorbatch), not this worker's heartbeat."""
        if not self.batches.hold(self.provider, record.model, record.id, token, request):
            metrics.STALE_DELIVERIES.labels(self.provider).inc()
            log.info(json.dumps({"event": "attempt_gone_before_batch", "job_id": record.id, "token": token}))
            return
        metrics.VENDOR_BATCH_HELD.labels(self.provider, record.model).inc()  # no log line: bulk work is counted

    def finish(self, started: Started) -> None:
        """The vendor call(s) through the caller on this thread, then the attempt's outcome."""
        record, token, ctx = started.record, started.token, started.ctx
        sink: RedisDeltaSink | None = None
        adapter = self.adapter
        if started.request.stream:
            sink = RedisDeltaSink(self.store.redis, self.store.keys.deltas(record.id), attempt=record.attempt,
                                  model=record.model, offset=len(started.continued))
            adapter = StreamingAdapter(adapter, sink)
        ticket = started.ticket.__enter__()
        failure: AttemptFailure | None = None
        try:
            try:
                metered = MeteredAdapter(adapter, self.admission, ctx, self.config.tiers[record.tier].total_timeout_s)
                try:
                    response = self.caller.call(metered, ctx, started.request)
                except AttemptFailure as err:
                    # the first call's usage when it was made (a later step failed), else what the failure says
                    first = metered.first
                    ticket.settle(first, first.ratelimit_headers if first else err.ratelimit_headers)
                    raise
                first = metered.first or response
                ticket.settle(first, first.ratelimit_headers)
                success = self.succeeded(started, response)
                if sink is not None:
                    sink.end(OutcomeKind.OK.value)
                done = self.complete(started, success)
            except AttemptFailure as err:
                failure = err
            except Exception as err:  # a bug of ours must not crash the worker or lose the job
                log.exception("attempt crashed", extra={"job_id": record.id})
                failure = crashed(err)
            if failure is not None:
                self._failed(record, token, record.attempt, failure, time.monotonic() - started.t0, sink, ticket)
                return
        finally:  # settled by the ending's own script unless that failed: then on its own
            ticket.__exit__(type(failure) if failure else None, failure, None)
        self.settle_spend(record, success, done)
        self.observe_success(started, success, done)

    def complete(self, started: Started, success: Success) -> Transition:
        """Write the success, with the ticket's settle and health's update of the answer in the same script."""
        lesson = self.success_lesson(started, success)
        done = self.store.complete(started.record.id, started.token, success.output, success.result,
                                   success.attempt.to_json(), health=lesson.health, settle=lesson.settle)
        self.learned(lesson, done)
        return done

    def lesson(
        self, model: str, outcome: OutcomeKind, latency_s: float, retry_after_s: float | None,
        ticket: Ticket | None, failure: AttemptFailure | None = None,
    ) -> Lesson:
        """What an attempt's ending teaches (health's update of its outcome, the ticket's settle), for the
        transition that writes the ending (``complete``, ``end_attempt``) to run in its own step."""
        return Lesson(model, outcome, latency_s, retry_after_s, ticket,
                      self.health.learning(model, outcome, latency_s, retry_after_s),
                      ticket.settlement(failure) if ticket is not None else None)

    def success_lesson(self, started: Started, success: Success) -> Lesson:
        return self.lesson(started.record.model, OutcomeKind.OK, success.latency_s, None, started.ticket)

    def learned(self, lesson: Lesson, done: Transition) -> None:
        """After the ending's script: the ticket is settled and the circuit state published (a health sink
        that runs no script part learns now instead)."""
        if lesson.settle is not None and lesson.ticket is not None and done.settled:
            lesson.ticket.settled(done.settled)
        if lesson.health is None:
            self.health.record(lesson.model, lesson.outcome, lesson.latency_s, lesson.retry_after_s)
        elif done.health:
            self.health.learned(lesson.model, done.health)

    def settle_spend(self, record: JobRecord, success: Success, done: Transition) -> None:
        """Charge the call's actual cost to the job's budgets and give back the rest of its reservation (a
        Redis call: off the event loop); no budgets configured: nothing."""
        if self.budgets is not None:
            self.budgets.settle_safely(record.id, record.caller, success.cost_usd, final=done.ok)

    def succeeded(self, started: Started, response: ModelResponse) -> Success:
        """What a successful call writes: the output (raises ``AttemptFailure(INVALID_OUTPUT)`` when the skill
        refuses it), the result and the attempt record."""
        record = started.record
        model_name = record.model
        output = self._output(response, started.request, started.skill)
        if started.continued and isinstance(output, str):
            output = started.continued + output  # the whole answer: the part already streamed, then the rest
        latency_s = time.monotonic() - started.t0
        usage = response.usage
        cost = self.config.models[model_name].cost_usd(usage.input_tokens, usage.output_tokens,
                                                       cache_read_tokens=usage.cached_input_tokens,
                                                       cache_write_tokens=usage.cache_write_tokens)
        attempt = AttemptRecord(
            n=record.attempt, model=model_name, provider=self.provider, outcome=OutcomeKind.OK.value,
            latency_s=round(latency_s, 4), time_to_first_token_s=response.time_to_first_token_s,
            input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, cost_usd=cost,
            cache_read_tokens=usage.cached_input_tokens, cache_write_tokens=usage.cache_write_tokens,
            worker=self.worker_name, request_id=response.request_id,
            started_ms=record.started_ms, ended_ms=record.started_ms + round(latency_s * 1000),
        )
        result = {
            "provider": self.provider,
            "model": model_name,
            "model_id": response.model,
            "usage": dataclasses.asdict(usage),
            "cost_usd": cost,
            "request_id": response.request_id,
            "latency_s": round(latency_s, 4),
            "tool_calls": [dataclasses.asdict(c) for c in response.tool_calls],
            "path": "realtime",
        }
        return Success(response, output, result, attempt, latency_s, cost)

    def observe_success(self, started: Started, success: Success, done: Transition) -> None:
        """Metrics and the log line of a successful call, once its completion is written (or dropped)."""
        record = started.record
        job_id, model_name, tier = record.id, record.model, record.tier
        self._observe_attempt(model_name, tier, OutcomeKind.OK.value, success.latency_s, success.response)
        if not done.ok:
            metrics.STALE_DELIVERIES.labels(self.provider).inc()
            stopped_by = done.status or done.reason
            log.info(json.dumps({"event": "late_completion_dropped", "job_id": job_id, "status": stopped_by}))
            return
        usage = success.response.usage
        metrics.TOKENS.labels(self.provider, model_name, "input").inc(usage.input_tokens)
        metrics.TOKENS.labels(self.provider, model_name, "output").inc(usage.output_tokens)
        metrics.TOKENS.labels(self.provider, model_name, "cached").inc(usage.cached_input_tokens)
        metrics.COST.labels(self.provider, model_name, record.capability).inc(success.cost_usd)
        metrics.JOB_DURATION.labels(record.capability, tier).observe((done.finished_ms - done.created_ms) / 1000)
        log.info(json.dumps({"event": "attempt", "job_id": job_id, "attempt": record.attempt,
                             "provider": self.provider, "model": model_name, "outcome": "ok",
                             "latency_s": round(success.latency_s, 4)}))

    def _request(self, record: JobRecord) -> tuple[ModelRequest, Skill | None]:
        skill = self.skills.get(record.skill) if record.skill and self.skills is not None else None
        request = build_request(
            self.config, capability=record.capability, tier=record.tier, model=record.model,
            job_input=record.input_value(), skill=skill, feedback=record.feedback or None, prefill=record.prefill,
        )
        return request, skill

    def _output(self, response: ModelResponse, request: ModelRequest, skill: Skill | None) -> Any:
        if skill is not None:
            from toolbag.skills import accept_output

            return accept_output(skill, response)  # raises AttemptFailure(INVALID_OUTPUT, reason)
        if request.json_schema is None:
            return response.text
        return response.parsed

    def _hand_back(
        self, record: JobRecord, token: str, back: HandBack, ctx: AttemptContext, request: ModelRequest
    ) -> None:
        """Interactive work spills to the next candidate with capacity now; the rest waits its turn."""
        target = None
        if record.tier == "interactive" and self.router is not None:
            target = self.router.spill_target(
                record.plan, record.model, self.store.history(record.id),
                lambda model: self.admission.admits_now(model, ctx, request),
            )
        if target is not None:
            entry = DecisionRecord("spill", f"{back.reason}; spilling to {target}", target, 0.0)
            model, delay_s = target, 0.0
        else:
            entry = DecisionRecord("throttle", back.reason, back.model, round(back.delay_s, 3))
            model, delay_s = back.model, back.delay_s
        provider = self.config.provider_of(model)
        done = self.store.hand_back(
            record.id, token, model=model, provider=provider, queue=queue_name(provider, record.tier),
            record_json=entry.to_json(), delay_s=delay_s, audit=target is not None,
        )
        if not done.ok:
            metrics.STALE_DELIVERIES.labels(self.provider).inc()
            return
        counter = metrics.RATELIMIT_SPILLOVERS if target is not None else metrics.RATELIMIT_DEFERRALS
        counter.labels(self.provider, record.model).inc()
        log.info(json.dumps({"event": entry.action, "job_id": record.id, "model": record.model,
                             "to": model, "delay_s": round(delay_s, 3), "reason": entry.reason}))

    def _failed(
        self, record: JobRecord, token: str, attempt_n: int, failure: AttemptFailure, latency_s: float,
        sink: RedisDeltaSink | None = None, ticket: Ticket | None = None,
    ) -> None:
        if sink is not None:
            sink.end(failure.kind.value, failure.reason)
        lesson = self.lesson(record.model, failure.kind, latency_s, failure.retry_after_s, ticket, failure)
        done = self.store.end_attempt(record.id, token, failure.kind.value,
                                      self.failure_record(record, failure, latency_s),
                                      health=lesson.health, settle=lesson.settle)
        self.learned(lesson, done)
        self.observe_failure(record, failure, latency_s)

    def failure_record(self, record: JobRecord, failure: AttemptFailure, latency_s: float) -> str:
        """The attempt record (JSON) of a failed attempt."""
        return AttemptRecord(
            n=record.attempt, model=record.model, provider=self.provider, outcome=failure.kind.value,
            reason=failure.reason[:2000], latency_s=round(latency_s, 4), worker=self.worker_name,
            request_id=failure.request_id, retry_after_s=failure.retry_after_s,
            started_ms=record.started_ms, ended_ms=record.started_ms + round(latency_s * 1000),
        ).to_json()

    def observe_failure(self, record: JobRecord, failure: AttemptFailure, latency_s: float) -> None:
        self._observe_attempt(record.model, record.tier, failure.kind.value, latency_s, None)
        metrics.SDK_ERRORS.labels(self.provider, failure.kind.value).inc()
        log.info(json.dumps({"event": "attempt", "job_id": record.id, "attempt": record.attempt,
                             "provider": self.provider, "model": record.model, "outcome": failure.kind.value,
                             "reason": failure.reason[:300], "latency_s": round(latency_s, 4)}))

    def _observe_attempt(
        self, model: str, tier: Tier, outcome: str, latency_s: float, response: ModelResponse | None
    ) -> None:
        metrics.ATTEMPTS.labels(self.provider, model, tier, outcome).inc()
        metrics.ATTEMPT_DURATION.labels(self.provider, model, tier).observe(latency_s)
        if response is not None and response.time_to_first_token_s is not None:
            metrics.TIME_TO_FIRST_TOKEN.labels(self.provider, model).observe(response.time_to_first_token_s)
