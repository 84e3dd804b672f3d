"""Jobs, attempts and results: the states of a job and the values that describe it.

State machine (every arrow is one Lua script in ``toolbag/lua``; ``docs/architecture.md`` tells why each
keeps the fleet's two promises)::

    submit ──> queued ──claim──> running ──complete──> succeeded
               ^  ^  ^             │  │
               │  │  │             │  └─hand_back──> queued (spill) | waiting (throttle)
               │  │  reclaim       │
               │  │  (message lost end_attempt (not ok, or lease expired)
               │  │   with a worker)  v
               │  └──dispatch──── deciding ──finish──> failed | escalated
               │                    │                               │
            promote            dispatch(delay)         resolve ──> succeeded | failed
               │                    v                  dispatch (a person retries) ──> queued
               └────────────── waiting
    any non-terminal ──finish──> cancelled | expired
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, cast

from toolbag.config import TIERS, Tier
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
class JobRecord:
    """The job hash ``<prefix>job:<id>``, typed: the one list of its fields. ``submit`` writes the first
    group; the store's Lua scripts write the rest as the job moves (see :mod:`toolbag.store.jobstore`)."""

    id: str
    status: JobStatus
    token: str  # the fencing token of the current attempt message; every transition compares it
    attempt: int  # attempts started or scheduled so far (1-based)
    capability: str
    tier: Tier
    caller: str
    input: str  # the job's input as canonical JSON text
    plan: tuple[str, ...]  # the candidate models, in route order
    model: str  # the model of the current (or next) attempt
    provider: str
    queue: str  # the Celery queue of the current (or next) attempt
    created_ms: int
    enqueued_ms: int
    deadline_ms: int
    skill: str | None = None
    skill_hash: str | None = None
    skill_version: str | None = None
    inbox: str | None = None  # the completion inbox key, when the caller named one
    started_ms: int = 0  # when the current attempt was claimed
    called_ms: int = 0  # when the current attempt's vendor call began (0: not yet; a lost lease may have been paid)
    worker: str = ""  # who claimed it
    outcome: str = ""  # the last attempt's outcome, while the supervisor decides
    decide_ms: int = 0
    due_ms: int = 0  # when a waiting job is due
    feedback: str = ""  # the previous answer's validation error, for the next attempt
    prefill: str = ""  # the part of a cut streamed answer the caller holds: the next attempt continues it
    output: str | None = None  # JSON text, once succeeded
    result: str | None = None  # JSON text: who served it, usage, cost
    error: str = ""
    finished_ms: int = 0

    @classmethod
    def from_hash(cls, raw: Mapping[str, str]) -> JobRecord:
        """Parse the hash as Redis returns it (decoded). Unknown fields are ignored."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            value = raw.get(f.name)
            if value is None:
                continue
            if f.name == "status":
                values[f.name] = JobStatus(value)
            elif f.name == "tier":
                values[f.name] = as_tier(value)
            elif f.name == "plan":
                values[f.name] = tuple(json.loads(value))
            elif f.name == "attempt" or f.name.endswith("_ms"):
                values[f.name] = int(value or 0)
            else:
                values[f.name] = value
        values.setdefault("attempt", 1)
        for name in ("created_ms", "enqueued_ms", "deadline_ms"):
            values.setdefault(name, 0)
        for name in ("capability", "caller", "input", "model", "provider", "queue", "token"):
            values.setdefault(name, "")
        values.setdefault("plan", ())
        values.setdefault("tier", "standard")
        return cls(**values)

    def input_value(self) -> Any:
        """The job's input, decoded."""
        return json.loads(self.input)

    def output_value(self) -> Any:
        return json.loads(self.output) if self.output else None

    def result_value(self) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(self.result)) if self.result else {}


def as_tier(value: str) -> Tier:
    """``value`` as a :data:`~toolbag.config.Tier` (a tier read back from Redis); ValueError when it names none."""
    if value not in TIERS:
        raise ValueError(f"unknown tier {value!r}")
    return value


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
    cache_read_tokens: int = 0  # of input_tokens, read from the vendor's prompt cache
    cache_write_tokens: int = 0  # of input_tokens, written to it
    worker: str = ""
    request_id: str | None = None
    retry_after_s: float | None = None
    started_ms: int = 0
    ended_ms: int = 0
    path: str = "realtime"  # realtime, or vendor_batch: through the vendor's batch API
    batch_id: str | None = None  # the vendor's batch id, on the vendor_batch path

    def to_json(self) -> str:
        entry = {k: v for k, v in self.__dict__.items() if k != "batch_id" or v is not None}
        return json.dumps({"type": "attempt", **entry}, sort_keys=True)


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
    tier: Tier | None = None  # None only for a result made without the job's record (it had expired)
    # the model's calls of tools the caller defined (id, name, arguments); the caller runs them, toolbag never does
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

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


def path_of(entry: Mapping[str, Any]) -> tuple[str, str | None]:
    """Which path an attempt entry (or a job's ``result``) took: ``("vendor_batch", batch id)`` through the
    vendor's batch API, else ``("realtime", None)`` (entries written before paths were recorded have none)."""
    if entry.get("path") == "vendor_batch":
        batch_id = entry.get("batch_id")
        return "vendor_batch", str(batch_id) if batch_id else None
    return "realtime", None


def path_label(entry: Mapping[str, Any]) -> str:
    """The path for a person: ``real time``, or ``vendor batch <batch id>``."""
    path, batch_id = path_of(entry)
    if path == "realtime":
        return "real time"
    return f"vendor batch {batch_id}" if batch_id else "vendor batch"
