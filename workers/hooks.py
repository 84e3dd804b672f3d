"""The seams of an attempt, each owned by one module: admission (rate limits), the call itself (a plain
call, or a tool-use loop through the gateway), and what is learned from the outcome (health).

``AttemptRunner`` takes one of each; the defaults here change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from toolbag.providers.base import Adapter, ModelRequest, ModelResponse, OutcomeKind


@dataclass(frozen=True)
class AttemptContext:
    """Who is asking, for what, on which model: what the hooks may decide on."""

    job_id: str
    capability: str
    tier: str
    caller: str
    model: str  # the config name, e.g. "claude-haiku"
    model_id: str  # the vendor's id, e.g. "claude-haiku-5-5"
    provider: str
    skill: str | None
    deadline_ms: int
    allowed_tools: tuple[str, ...] = ()  # what the job's skill asks for
    requested_tools: tuple[str, ...] = ()  # what the job's input asks for ("tools": [...])


class Admission(Protocol):
    """Fleet-wide limits. ``admit`` returns a context manager that holds the capacity for the call and
    settles it after (actual tokens from ``settle``). When the model has no capacity for longer than a short
    wait it raises ``toolbag.ratelimit.HandBack``: the job goes back to the delayed set (or, interactive, to
    another candidate) without counting as an attempt."""

    def admit(self, ctx: AttemptContext, request: ModelRequest) -> Ticket: ...


class Ticket(Protocol):
    def __enter__(self) -> Ticket: ...

    def __exit__(self, *exc: object) -> None: ...

    def settle(self, response: ModelResponse | None, ratelimit_headers: dict[str, str]) -> None: ...


class Caller(Protocol):
    """Makes the vendor call(s) for one attempt: a single call, or a bounded tool-use loop."""

    def call(self, adapter: Adapter, ctx: AttemptContext, request: ModelRequest) -> ModelResponse: ...


class OutcomeSink(Protocol):
    """Learns from every attempt's outcome (circuit breakers, EWMAs)."""

    def record(self, model: str, outcome: OutcomeKind, latency_s: float, retry_after_s: float | None) -> None: ...


class _NoTicket:
    def __enter__(self) -> _NoTicket:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def settle(self, response: ModelResponse | None, ratelimit_headers: dict[str, str]) -> None:
        return None


class Unlimited:
    def admit(self, ctx: AttemptContext, request: ModelRequest) -> Ticket:
        return _NoTicket()


class PlainCall:
    def call(self, adapter: Adapter, ctx: AttemptContext, request: ModelRequest) -> ModelResponse:
        return adapter.call(ctx.model_id, request)


class Forgetful:
    def record(self, model: str, outcome: OutcomeKind, latency_s: float, retry_after_s: float | None) -> None:
        return None

