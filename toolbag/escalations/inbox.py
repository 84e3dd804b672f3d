"""The human escalation inbox: jobs every candidate balked at, waiting for a person.

A person can ``resolve`` (give the output), ``reject`` (fail with a reason) or ``retry`` (on a model of
their choice, or the route's first). Every action is recorded in the job's history and the audit stream, and
wakes callers who chose to wait through the escalation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from toolbag.config import Config, Tier
from toolbag.errors import ToolbagError
from toolbag.jobs import DecisionRecord, JobNotFound, JobRecord, JobStatus
from toolbag.routing import Router
from toolbag.store import JobStore
from toolbag.store.messages import queue_name

log = logging.getLogger("toolbag.escalations")


class InboxError(ToolbagError):
    """An inbox action that cannot be taken, phrased for the person at the CLI."""


@dataclass(frozen=True)
class Escalation:
    job_id: str
    escalated_at: float
    capability: str
    tier: Tier
    caller: str
    reason: str
    attempts: list[dict[str, Any]]
    input: Any


class Inbox:
    def __init__(self, config: Config, store: JobStore, router: Router | None = None) -> None:
        self.config = config
        self.store = store
        self.router = router or Router(config)

    def list(self, limit: int = 100) -> list[Escalation]:
        out = []
        for job_id, at in self.store.escalated(limit):
            try:
                out.append(self.show(job_id, at))
            except InboxError:
                continue  # settled or expired between the two reads
        return out

    def show(self, job_id: str, escalated_at: float = 0.0) -> Escalation:
        """One escalated job; ``InboxError`` when there is no such job or it is not escalated."""
        try:
            record, history = self.store.snapshot(job_id)
        except JobNotFound:
            raise InboxError(f"no job {job_id!r} (unknown id, or its record expired)") from None
        if record.status is not JobStatus.ESCALATED:
            raise InboxError(f"job {job_id} is {record.status.value}, not escalated")
        return Escalation(
            job_id=job_id, escalated_at=escalated_at or record.finished_ms / 1000,
            capability=record.capability, tier=record.tier, caller=record.caller,
            reason=record.error, attempts=history, input=record.input_value() if record.input else None,
        )

    def _escalated(self, job_id: str) -> JobRecord:
        try:
            record = self.store.get(job_id)
        except JobNotFound:
            raise InboxError(f"no job {job_id!r}") from None
        if record.status is not JobStatus.ESCALATED:
            raise InboxError(f"job {job_id} is {record.status.value}, not escalated")
        return record

    def resolve(self, job_id: str, output: Any, by: str = "human") -> None:
        self._escalated(job_id)
        note = DecisionRecord("resolve", f"resolved by {by}").to_json()
        result = {"provider": "human", "model": by, "usage": {}, "cost_usd": 0.0}
        if not self.store.resolve(job_id, JobStatus.SUCCEEDED, note, output=output, result=result).ok:
            raise InboxError(f"job {job_id} changed while resolving; look again")

    def reject(self, job_id: str, reason: str, by: str = "human") -> None:
        self._escalated(job_id)
        note = DecisionRecord("reject", f"rejected by {by}: {reason}").to_json()
        if not self.store.resolve(job_id, JobStatus.FAILED, note, error=f"rejected: {reason}").ok:
            raise InboxError(f"job {job_id} changed while rejecting; look again")

    def retry(self, job_id: str, model: str | None = None, by: str = "human") -> str:
        """Send the job back to the fleet, on ``model`` or the best candidate of its plan now."""
        record = self._escalated(job_id)
        target = model or self.router.pick(record.plan) or record.model
        if target not in self.config.models:
            raise InboxError(f"unknown model {target!r}; known: {', '.join(sorted(self.config.models))}")
        provider = self.config.provider_of(target)
        tier = record.tier
        note = DecisionRecord("retry", f"retried by {by}", target).to_json()
        done = self.store.dispatch(
            job_id, record.token, model=target, provider=provider, queue=queue_name(provider, tier),
            record_json=note, expected_status=JobStatus.ESCALATED,
            new_deadline_s=self.config.tiers[tier].default_deadline_s,
        )
        if not done.ok:
            raise InboxError(f"job {job_id} changed while retrying; look again")
        return target
