"""Jobs, attempts and results: the states of a job and the values that describe it.

State machine (every arrow is one Lua script in ``toolbag/lua``)::

    submit ──> queued ──claim──> running ──complete──> succeeded
                 ^                  │
                 │             end_attempt (not ok, or lease expired)
                 │                  v
                 ├──dispatch──── deciding ──finish──> failed | escalated
                 │                  │
              promote          dispatch(delay)
                 │                  v
                 └────────────── waiting
    any non-terminal ──finish──> cancelled | expired
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from toolbag.errors import ToolbagError


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DECIDING = "deciding"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ESCALATED = "escalated"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.ESCALATED, JobStatus.CANCELLED, JobStatus.EXPIRED}
)


@dataclass(frozen=True)
class AttemptRecord:
    """One try of a job on one model, as kept in the job's history."""

    n: int
    model: str
    provider: str
    outcome: str
    reason: str = ""
    latency_s: float = 0.0
    time_to_first_token_s: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    worker: str = ""
    request_id: str | None = None
    retry_after_s: float | None = None
    started_ms: int = 0
    ended_ms: int = 0

    def to_json(self) -> str:
        return json.dumps({"type": "attempt", **self.__dict__}, sort_keys=True)


@dataclass(frozen=True)
class DecisionRecord:
    """What the supervisor decided after an attempt, and why."""

    action: str
    reason: str
    model: str | None = None
    delay_s: float = 0.0

    def to_json(self) -> str:
        return json.dumps({"type": "decision", **self.__dict__}, sort_keys=True)


@dataclass(frozen=True)
class JobResult:
    """What a caller gets back: the output and how it was produced."""

    job_id: str
    status: JobStatus
    output: Any = None
    provider: str | None = None
    model: str | None = None
    error: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    cost_usd: float = 0.0
    attempts: list[dict[str, Any]] = field(default_factory=list)
    skill: str | None = None
    skill_hash: str | None = None
    capability: str = ""
    tier: str = ""

    @property
    def ok(self) -> bool:
        return self.status is JobStatus.SUCCEEDED

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "status": self.status.value,
            "capability": self.capability,
            "tier": self.tier,
            "provider": self.provider,
            "model": self.model,
            "output": self.output,
            "error": self.error,
            "usage": self.usage,
            "cost_usd": self.cost_usd,
            "skill": self.skill,
            "skill_hash": self.skill_hash,
            "attempts": self.attempts,
        }


class JobError(ToolbagError):
    """Base of the errors a producer sees."""


class SubmitError(JobError, ValueError):
    """Bad input at submit time; ``field`` names what to fix."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


class JobNotFound(JobError, KeyError):
    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id

    def __str__(self) -> str:
        return f"no job {self.job_id!r} (unknown id, or its record expired)"


class ResultTimeout(JobError, TimeoutError):
    """The job did not finish within the caller's wait; it keeps running."""
