"""The native job API's bodies and answers (pydantic): what ``/openapi.json`` documents and the handlers use."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from toolbag.config import Tier
from toolbag.jobs import JobStatus

MAX_BATCH = 1000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobCreate(_Body):
    """``POST /jobs``: a capability or a skill (or both), its input, and optionally tier, deadline and an
    idempotency key (a second submit with the same key returns the first job)."""

    capability: str | None = Field(default=None, min_length=1, max_length=200)
    skill: str | None = Field(default=None, min_length=1, max_length=200)
    input: Any = Field(description="The job's input: any JSON value (a skill's input schema applies)")
    tier: Tier | None = None
    deadline_s: float | None = Field(default=None, gt=0)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=256)


class JobBatch(_Body):
    """``POST /jobs:batch``: every job is checked first; one refused job refuses the batch, and none is written."""

    jobs: list[JobCreate] = Field(min_length=1, max_length=MAX_BATCH)


class JobCreated(BaseModel):
    job_id: str
    status: JobStatus
    created: bool = Field(description="False when the idempotency key named an existing job")


class BatchCreated(BaseModel):
    jobs: list[JobCreated]


class ToolCallView(BaseModel):
    """A call the model made of one of the caller's tools."""

    id: str
    name: str
    arguments: dict[str, Any]


class GatewayToolCall(BaseModel):
    """A tool the gateway checked and ran for the job (its arguments are audited by digest only)."""

    tool: str
    decision: str = Field(description="allow or deny, by the policy rule in grant")
    grant: str = ""
    outcome: str = Field(default="", description="ok, error, timeout, denied or not_found")
    duration_ms: float = 0.0
    step: int = 0
    model: str = ""
    ts_ms: int = 0


class JobView(BaseModel):
    """``GET /jobs/{id}``: status, output, and every attempt and decision, in order."""

    job_id: str
    status: JobStatus
    capability: str
    tier: Tier
    caller: str
    skill: str | None = None
    provider: str | None = None
    model: str | None = None
    output: Any = None
    error: str | None = None
    usage: dict[str, int] = Field(default_factory=dict)
    cost_usd: float = 0.0
    attempts: list[dict[str, Any]] = Field(description="Attempt and decision records, oldest first")
    tool_calls: list[ToolCallView] = Field(
        default_factory=list, description="The answer's calls of the caller's own tools (the caller runs them)")
    gateway_tool_calls: list[GatewayToolCall] = Field(
        default_factory=list, description="Tools toolbag's tool gateway ran for the job, from its audit trail, "
                                          "oldest first")


class Cancelled(BaseModel):
    job_id: str
    cancelled: bool = Field(description="False when the job had already ended")
    status: JobStatus


class EscalationView(BaseModel):
    job_id: str
    escalated_at: float
    capability: str
    tier: Tier
    caller: str
    reason: str
    attempts: list[dict[str, Any]] = Field(default_factory=list)
    input: Any = None


class EscalationList(BaseModel):
    escalations: list[EscalationView]


class Resolve(_Body):
    output: Any = Field(description="The answer a person gives; the waiting caller receives it")


class Reject(_Body):
    reason: str = Field(min_length=1, max_length=2000)


class Retry(_Body):
    model: str | None = Field(default=None, min_length=1, max_length=200,
                              description="Model to try (default: the best candidate of the job's plan)")


class Settled(BaseModel):
    job_id: str
    action: Literal["resolve", "reject", "retry"]
    model: str | None = None


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """Every refusal: one line naming the field and the reason (the OpenAI error shape)."""

    error: ErrorDetail
