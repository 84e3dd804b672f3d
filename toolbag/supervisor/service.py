"""The supervisor's decisions: after a non-ok outcome, read the job, ask the decision table, apply the answer
through one fenced transition. Decision messages arrive on the ``toolbag.supervisor`` queue.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

from toolbag.attempt.deltas import attempt_text, mark_failover
from toolbag.attempt.request import PLAIN_MAX_OUTPUT_TOKENS, continuable, continuation
from toolbag.attempt.tokens import estimate_text_tokens
from toolbag.config import Config, RoutePolicy
from toolbag.escalations import Outbox
from toolbag.escalations.outbox import entry_fields
from toolbag.jobs import DecisionRecord, JobNotFound, JobRecord, JobStatus
from toolbag.providers.base import OutcomeKind
from toolbag.ratelimit import RateLimiter
from toolbag.routing import Router
from toolbag.routing.health import HealthTracker
from toolbag.store import JobStore
from toolbag.store.messages import queue_name
from toolbag.supervisor.decisions import Decision, Situation, decide
from toolbag.telemetry import metrics

log = logging.getLogger("toolbag.supervisor")


class Supervisor:
    def __init__(self, config: Config, store: JobStore, *, health: HealthTracker | None = None,
                 limiter: RateLimiter | None = None) -> None:
        self.config = config
        self.store = store
        self.router = Router(config, health)
        self.limiter = limiter or RateLimiter(config, store.redis, store.keys)
        self.outbox = Outbox(store.redis, store.keys)

    def decide(self, job_id: str, token: str) -> Decision | None:
        """Decide and apply. Returns None when the message is stale (the job moved on)."""
        try:
            job = self.store.get(job_id)
        except JobNotFound:
            return None
        if job.status is not JobStatus.DECIDING or job.token != token:
            metrics.STALE_DELIVERIES.labels("supervisor").inc()
            return None
        history = self.store.history(job_id)
        last: dict[str, Any] = next((h for h in reversed(history) if h.get("type") == "attempt"), {})
        outcome = OutcomeKind(job.outcome or last.get("outcome") or OutcomeKind.SERVER_ERROR)
        situation = Situation(
            outcome=outcome,
            reason=str(last.get("reason", "")),
            model=job.model,
            tier=job.tier,
            plan=job.plan,
            history=history,
            retry_after_s=last.get("retry_after_s"),
            deadline_in_s=(job.deadline_ms - self.store.now_ms()) / 1000 if job.deadline_ms else None,
        )
        policy = self.config.route(job.capability, job.tier).policy
        held = self._held(job, policy)
        decision = decide(replace(situation, continuing=bool(held)), self.config, policy,
                          usable=partial(self.router.usable, prefer_faster=policy.prefer_faster),
                          has_capacity=self._capacity_check(job))
        prefill = ""
        if held and decision.model is not None and decision.action in ("retry", "reroute", "wait"):
            prefill = continuation(self.config, decision.model, held)
            # before the dispatch, so a reader never sees the next attempt's text without it (sent again if a
            # crash makes the decision run twice: readers take the latest)
            mark_failover(self.store.redis, self.store.keys.deltas(job_id), attempt=job.attempt + 1,
                          model=decision.model, continues=bool(prefill), offset=len(held))
            said = (f"continues the streamed answer after its first {len(held)} characters" if prefill else
                    f"{decision.model} takes no prefill: the streamed answer was cut, the next attempt starts afresh")
            decision = replace(decision, reason=f"{decision.reason}; {said}")
        self._apply(job, token, decision, outcome, prefill)
        return decision

    def _held(self, job: JobRecord, policy: RoutePolicy) -> str:
        """The part of the job's streamed answer its caller already holds, when the route continues cut
        streams (``stream_failover: continue``) and the job's answer may be continued: what the failed attempt
        continued, then what it streamed. '' otherwise."""
        if (policy.stream_failover != "continue" or not self.config.tiers[job.tier].stream
                or not continuable(job.input_value(), job.skill)):
            return ""
        before = continuation(self.config, job.model, job.prefill)
        text, offset = attempt_text(self.store.redis, self.store.keys.deltas(job.id), job.attempt)
        if offset is not None and offset != len(before):
            return ""  # the attempt did not continue what the caller held: that stream was ended as cut
        return before + text

    def _capacity_check(self, job: JobRecord) -> Callable[[str], bool]:
        """Whether a model's fleet-wide limits would admit ``job`` now (its input estimated from the raw
        input, its output at the plain request's cap)."""
        input_tokens = estimate_text_tokens(job.input)

        def has_capacity(model: str) -> bool:
            output_tokens = min(PLAIN_MAX_OUTPUT_TOKENS, self.config.models[model].max_output_tokens)
            return self.limiter.has_capacity(model, job.tier, job.caller, input_tokens + output_tokens)

        return has_capacity

    def _apply(self, job: JobRecord, token: str, decision: Decision, outcome: OutcomeKind, prefill: str = "") -> None:
        job_id, capability, tier = job.id, job.capability, job.tier
        record = DecisionRecord(decision.action, decision.reason, decision.model, round(decision.delay_s, 3))
        if decision.action in ("retry", "reroute", "wait"):
            assert decision.model is not None
            provider = self.config.provider_of(decision.model)
            done = self.store.dispatch(
                job_id, token, model=decision.model, provider=provider, queue=queue_name(provider, tier),
                record_json=record.to_json(), delay_s=decision.delay_s, feedback=decision.feedback, prefill=prefill,
            )
            if done.ok and decision.action == "reroute":
                metrics.REROUTES.labels(job.provider, provider, outcome.value).inc()
        else:
            status = JobStatus.ESCALATED if decision.action == "escalate" else JobStatus.FAILED
            webhook_url = self.config.fleet.escalation_webhook_url
            notification = entry_fields(webhook_url, {
                "event": "escalated", "job_id": job_id, "capability": capability, "tier": tier,
                "reason": decision.reason}) if webhook_url and status is JobStatus.ESCALATED else None
            done = self.store.finish(  # the notification is written with the escalation, or neither is
                job_id, status, decision.reason, record.to_json(),
                expected_status=JobStatus.DECIDING, expected_token=token, notification=notification,
            )
            if done.ok:
                metrics.JOB_DURATION.labels(capability, tier).observe((done.finished_ms - done.created_ms) / 1000)
                if status is JobStatus.ESCALATED:
                    metrics.ESCALATIONS.labels(capability).inc()
        if done.ok:
            metrics.SUPERVISOR_DECISIONS.labels(decision.action, outcome.value).inc()
            log.info(json.dumps({"event": "decision", "job_id": job_id, "action": decision.action,
                                 "model": decision.model, "reason": decision.reason, "outcome": outcome.value}))
        else:
            metrics.STALE_DELIVERIES.labels("supervisor").inc()
