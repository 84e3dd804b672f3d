"""One attempt of one job on one provider: claim (fenced), call the vendor, record the outcome.

An attempt never raises into Celery: every ending is written to the store, and a delivery that is stale
(duplicate, redelivered after recovery, or for a job that moved on) is dropped and counted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from toolbag.attempt.context import (
    Admission,
    AttemptContext,
    Caller,
    Forgetful,
    MeteredAdapter,
    OutcomeSink,
    PlainCall,
    Unlimited,
)
from toolbag.attempt.deltas import RedisDeltaSink, StreamingAdapter
from toolbag.attempt.leases import LeaseKeeper
from toolbag.attempt.request import build_request, requested_tools
from toolbag.budgets import Budgets
from toolbag.config import Config, Tier
from toolbag.jobs import AttemptRecord, DecisionRecord, JobRecord
from toolbag.providers.base import Adapter, AttemptFailure, ModelRequest, ModelResponse, OutcomeKind
from toolbag.ratelimit import HandBack
from toolbag.routing import Router
from toolbag.store import JobStore
from toolbag.store.messages import queue_name
from toolbag.telemetry import metrics

if TYPE_CHECKING:
    from toolbag.skills import Skill, SkillLibrary

log = logging.getLogger("toolbag.worker")


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

    def run(self, job_id: str, token: str, queue: str) -> None:
        record = self.store.claim(job_id, token, queue, self.config.fleet.lease_ttl_s, self.worker_name)
        if record is None:
            metrics.STALE_DELIVERIES.labels(self.provider).inc()
            log.info(json.dumps({"event": "stale_delivery", "job_id": job_id, "token": token}))
            return
        metrics.QUEUE_WAIT.labels(self.provider, record.tier).observe(
            max(0.0, (record.started_ms - record.enqueued_ms) / 1000)
        )
        member = f"{job_id}:{token}"
        self.keeper.add(member)
        metrics.INFLIGHT.labels(self.provider).inc()
        try:
            self._attempt(record, token)
        finally:
            metrics.INFLIGHT.labels(self.provider).dec()
            self.keeper.remove(member)

    def _attempt(self, record: JobRecord, token: str) -> None:
        job_id, model_name, tier = record.id, record.model, record.tier
        model = self.config.models[model_name]
        attempt_n = record.attempt
        t0 = time.monotonic()
        clock_offset_ms = record.started_ms - int(time.time() * 1000)  # Redis's clock (the claim) minus this host's
        sink: RedisDeltaSink | None = None
        try:
            request, skill = self._request(record)
            adapter = self.adapter
            if request.stream:
                sink = RedisDeltaSink(self.store.redis, self.store.keys.deltas(job_id), attempt=attempt_n,
                                      model=model_name)
                adapter = StreamingAdapter(adapter, sink)
            ctx = AttemptContext(
                job_id=job_id, capability=record.capability, tier=tier, caller=record.caller,
                model=model_name, model_id=model.model_id, provider=self.provider, skill=record.skill,
                deadline_ms=record.deadline_ms - clock_offset_ms,  # on this host's clock, for the tool loop
                allowed_tools=tuple(skill.allowed_tools) if skill is not None else (),
                requested_tools=tuple(requested_tools(record.input)),
            )
            try:
                admitted = self.admission.admit(ctx, request)
            except HandBack as back:  # no capacity: to another candidate or the delayed set, no attempt
                self._hand_back(record, token, back, ctx, request)
                return
            with admitted as ticket:
                if not self.store.calling(job_id, token):  # swept as lost, or cancelled, meanwhile: pay nothing
                    metrics.STALE_DELIVERIES.labels(self.provider).inc()
                    log.info(json.dumps({"event": "attempt_gone_before_call", "job_id": job_id, "token": token}))
                    return
                metered = MeteredAdapter(adapter, self.admission, ctx, self.config.tiers[tier].total_timeout_s)
                try:
                    response = self.caller.call(metered, ctx, request)
                except AttemptFailure as failure:
                    # the first call's usage when it was made (a later step failed), else what the failure says
                    first = metered.first
                    ticket.settle(first, first.ratelimit_headers if first else failure.ratelimit_headers)
                    raise
                first = metered.first or response
                ticket.settle(first, first.ratelimit_headers)
                output = self._output(response, request, skill)
                latency_s = time.monotonic() - t0
                usage = response.usage
                cost = model.cost_usd(usage.input_tokens, usage.output_tokens,
                                      cache_read_tokens=usage.cached_input_tokens,
                                      cache_write_tokens=usage.cache_write_tokens)
                attempt = AttemptRecord(
                    n=attempt_n, model=model_name, provider=self.provider, outcome=OutcomeKind.OK.value,
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
                }
                if sink is not None:
                    sink.end(OutcomeKind.OK.value)
                # complete inside the admission: the caller wakes before the limiter settles and the
                # health tracker learns, which are nobody's critical path
                done = self.store.complete(job_id, token, output, result, attempt.to_json())
        except AttemptFailure as failure:
            self._failed(record, token, attempt_n, failure, time.monotonic() - t0, sink)
            return
        except Exception as err:  # a bug of ours must not crash the worker or lose the job
            log.exception("attempt crashed", extra={"job_id": job_id})
            crash = AttemptFailure(OutcomeKind.SERVER_ERROR, f"worker error: {type(err).__name__}: {err}")
            self._failed(record, token, attempt_n, crash, time.monotonic() - t0, sink)
            return
        self.health.record(model_name, OutcomeKind.OK, latency_s, None)
        self._observe_attempt(model_name, tier, OutcomeKind.OK.value, latency_s, response)
        if self.budgets is not None:
            self.budgets.settle_safely(job_id, record.caller, cost, final=done.ok)
        if not done.ok:
            metrics.STALE_DELIVERIES.labels(self.provider).inc()
            log.info(json.dumps({"event": "late_completion_dropped", "job_id": job_id, "status": done.status}))
            return
        metrics.TOKENS.labels(self.provider, model_name, "input").inc(usage.input_tokens)
        metrics.TOKENS.labels(self.provider, model_name, "output").inc(usage.output_tokens)
        metrics.TOKENS.labels(self.provider, model_name, "cached").inc(usage.cached_input_tokens)
        metrics.COST.labels(self.provider, model_name, record.capability).inc(cost)
        metrics.JOB_DURATION.labels(record.capability, tier).observe((done.finished_ms - done.created_ms) / 1000)
        log.info(json.dumps({"event": "attempt", "job_id": job_id, "attempt": attempt_n, "provider": self.provider,
                             "model": model_name, "outcome": "ok", "latency_s": round(latency_s, 4)}))

    def _request(self, record: JobRecord) -> tuple[ModelRequest, Skill | None]:
        skill = self.skills.get(record.skill) if record.skill and self.skills is not None else None
        request = build_request(
            self.config, capability=record.capability, tier=record.tier, model=record.model,
            job_input=record.input_value(), skill=skill, feedback=record.feedback or None,
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
        sink: RedisDeltaSink | None = None,
    ) -> None:
        model_name, tier = record.model, record.tier
        attempt = AttemptRecord(
            n=attempt_n, model=model_name, provider=self.provider, outcome=failure.kind.value,
            reason=failure.reason[:2000], latency_s=round(latency_s, 4), worker=self.worker_name,
            request_id=failure.request_id, retry_after_s=failure.retry_after_s,
            started_ms=record.started_ms, ended_ms=record.started_ms + round(latency_s * 1000),
        )
        self.health.record(model_name, failure.kind, latency_s, failure.retry_after_s)
        if sink is not None:
            sink.end(failure.kind.value, failure.reason)
        self.store.end_attempt(record.id, token, failure.kind.value, attempt.to_json())
        self._observe_attempt(model_name, tier, failure.kind.value, latency_s, None)
        metrics.SDK_ERRORS.labels(self.provider, failure.kind.value).inc()
        log.info(json.dumps({"event": "attempt", "job_id": record.id, "attempt": attempt_n,
                             "provider": self.provider, "model": model_name, "outcome": failure.kind.value,
                             "reason": failure.reason[:300], "latency_s": round(latency_s, 4)}))

    def _observe_attempt(
        self, model: str, tier: Tier, outcome: str, latency_s: float, response: ModelResponse | None
    ) -> None:
        metrics.ATTEMPTS.labels(self.provider, model, tier, outcome).inc()
        metrics.ATTEMPT_DURATION.labels(self.provider, model, tier).observe(latency_s)
        if response is not None and response.time_to_first_token_s is not None:
            metrics.TIME_TO_FIRST_TOKEN.labels(self.provider, model).observe(response.time_to_first_token_s)
