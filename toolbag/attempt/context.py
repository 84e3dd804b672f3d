"""The seams of an attempt, each owned by one module: admission (rate limits), the call itself (a plain
call, or a tool-use loop through the gateway), and what is learned from the outcome (health).

``AttemptRunner`` takes one of each; the defaults here change nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from toolbag.config import Tier
from toolbag.providers.base import Adapter, AttemptFailure, DeltaSink, ModelRequest, ModelResponse, OutcomeKind
from toolbag.store.jobstore import ScriptPart


@dataclass(frozen=True)
class AttemptContext:
    """Who is asking, for what, on which model: what the hooks may decide on."""

    job_id: str
    capability: str
    tier: Tier
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
    another candidate that ``admits_now``) without counting as an attempt."""

    def admit(self, ctx: AttemptContext, request: ModelRequest) -> Ticket: ...

    def admits_now(self, model: str, ctx: AttemptContext, request: ModelRequest) -> bool:
        """Whether another model has capacity for this request right now (where to spill over)."""
        ...

    def admit_step(self, ctx: AttemptContext, request: ModelRequest, wait_s: float) -> Ticket:
        """Capacity for a further vendor call of an admitted attempt (a tool loop's later steps): waits up to
        ``wait_s``, never hands back; raises ``AttemptFailure(RATE_LIMITED)`` when no slot comes."""
        ...

    def aadmit_step(
        self, ctx: AttemptContext, request: ModelRequest, wait_s: float, blocking: Blocking[tuple[bool, Any]]
    ) -> Awaitable[Ticket]:
        """:meth:`admit_step` on an event loop: sync work through ``blocking``, waits on the loop."""
        ...

    def opening(self, ctx: AttemptContext, request: ModelRequest) -> Opening | None:
        """The first admission try as a part of the claim's script (None: this admission has none; the runner
        then claims and calls :meth:`admit`)."""
        ...

    def opened(self, ctx: AttemptContext, request: ModelRequest, opening: Opening, reply: Any) -> Ticket:
        """Go on from the first try's answer in the claim, as :meth:`admit` does from its own."""
        ...


class Opening(Protocol):
    """What an admission's first try adds to the claim (``part``)."""

    @property
    def part(self) -> ScriptPart: ...


class Ticket(Protocol):
    def __enter__(self) -> Ticket: ...

    def __exit__(self, *exc: object) -> None: ...

    def settle(self, response: ModelResponse | None, ratelimit_headers: dict[str, str]) -> None: ...

    def settlement(self, failure: AttemptFailure | None = None) -> ScriptPart | None:
        """Its settle as a part of the completion's script (None: nothing to settle); :meth:`settled` with the
        reply then marks it settled, and the ``with`` block's end settles nothing."""
        ...

    def settled(self, reply: Sequence[Any]) -> None: ...


class Caller(Protocol):
    """Makes the vendor call(s) for one attempt: a single call, or a bounded tool-use loop."""

    def call(self, adapter: Adapter, ctx: AttemptContext, request: ModelRequest) -> ModelResponse: ...


class AsyncModel(Protocol):
    """A model an event loop awaits (the attempt's :class:`MeteredAdapter`)."""

    def acall(self, model: str, request: ModelRequest) -> Awaitable[ModelResponse]: ...


@runtime_checkable
class AsyncCaller(Caller, Protocol):
    """A :class:`Caller` that also runs on a worker's event loop (``toolbag.attempt.loop``)."""

    def acall(self, adapter: AsyncModel, ctx: AttemptContext, request: ModelRequest) -> Awaitable[ModelResponse]: ...


@runtime_checkable
class AsyncAdapter(Protocol):
    """An adapter with an async call (``VendorAdapter.acall``)."""

    def acall(self, model: str, request: ModelRequest, sink: DeltaSink | None = None) -> Awaitable[ModelResponse]: ...


T = TypeVar("T")
Blocking = Callable[[Callable[[], T]], Awaitable[T]]  # runs sync work off the event loop


class OutcomeSink(Protocol):
    """Learns from every attempt's outcome (circuit breakers, EWMAs)."""

    def record(self, model: str, outcome: OutcomeKind, latency_s: float, retry_after_s: float | None) -> None: ...

    def learning(
        self, model: str, outcome: OutcomeKind, latency_s: float, retry_after_s: float | None
    ) -> ScriptPart | None:
        """``record`` as a part of a transition's script (None: nothing to run); :meth:`learned` with its answer."""
        ...

    def learned(self, model: str, state: str) -> None: ...


class _NoTicket:
    def __enter__(self) -> _NoTicket:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def settle(self, response: ModelResponse | None, ratelimit_headers: dict[str, str]) -> None:
        return None

    def settlement(self, failure: AttemptFailure | None = None) -> ScriptPart | None:
        return None

    def settled(self, reply: Sequence[Any]) -> None:
        return None


class Unlimited:
    def admit(self, ctx: AttemptContext, request: ModelRequest) -> Ticket:
        return _NoTicket()

    def admits_now(self, model: str, ctx: AttemptContext, request: ModelRequest) -> bool:
        return True

    def admit_step(self, ctx: AttemptContext, request: ModelRequest, wait_s: float) -> Ticket:
        return _NoTicket()

    async def aadmit_step(
        self, ctx: AttemptContext, request: ModelRequest, wait_s: float, blocking: Blocking[tuple[bool, Any]]
    ) -> Ticket:
        return _NoTicket()

    def opening(self, ctx: AttemptContext, request: ModelRequest) -> Opening | None:
        return None

    def opened(self, ctx: AttemptContext, request: ModelRequest, opening: Opening, reply: Any) -> Ticket:
        return self.admit(ctx, request)


class MeteredAdapter:
    """The attempt's adapter, with every vendor call after the first admitted on its own: the attempt's
    ticket covers the first call, and a tool loop's later steps each take a rate-limit slot and settle their
    own tokens, because the vendor counts every call.

    :meth:`acall` is the same on an event loop: the vendor call through the adapter's async client (handing
    ``sink`` the streamed text); a later step's admission waits for its slot on the loop
    (:meth:`Admission.aadmit_step`), its Redis calls and its ticket's settle go through ``blocking``, off the
    loop."""

    def __init__(
        self, adapter: Adapter, admission: Admission, ctx: AttemptContext, wait_s: float, *,
        sink: DeltaSink | None = None, blocking: Blocking[Any] | None = None,
    ) -> None:
        self.adapter = adapter
        self.kind = adapter.kind
        self.admission = admission
        self.ctx = ctx
        self.wait_s = wait_s
        self.sink = sink
        self.blocking = blocking
        self.first: ModelResponse | None = None  # what the attempt's own ticket settles
        self.calls = 0

    def call(self, model: str, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        if self.calls == 1:
            self.first = self.adapter.call(model, request)
            return self.first
        with self.admission.admit_step(self.ctx, request, self.wait_s) as ticket:
            try:
                response = self.adapter.call(model, request)
            except AttemptFailure as failure:
                _settle(ticket, failure)
                raise
            _settle(ticket, response)
            return response

    async def acall(self, model: str, request: ModelRequest) -> ModelResponse:
        adapter = self.adapter
        if not isinstance(adapter, AsyncAdapter) or self.blocking is None:
            raise TypeError(f"{type(adapter).__name__} has no async call (or no executor was given)")
        self.calls += 1
        if self.calls == 1:
            self.first = await adapter.acall(model, request, self.sink)
            return self.first
        blocking: Blocking[Any] = self.blocking
        ticket = await self.admission.aadmit_step(self.ctx, request, self.wait_s, blocking)
        ticket.__enter__()
        ended: BaseException | None = None
        try:
            try:
                response = await adapter.acall(model, request, self.sink)
            except AttemptFailure as failure:
                _settle(ticket, failure)
                raise
            _settle(ticket, response)
            return response
        except BaseException as err:
            ended = err
            raise
        finally:  # as the ``with`` block of :meth:`call` ends
            await blocking(lambda: ticket.__exit__(type(ended) if ended else None, ended, None))

    def wire_request(self, model: str, request: ModelRequest) -> dict[str, Any]:
        return self.adapter.wire_request(model, request)

    def close(self) -> None:
        self.adapter.close()


def _settle(ticket: Ticket, outcome: ModelResponse | AttemptFailure) -> None:
    """A later step's ticket learns its call's usage (or, failed, the failure's rate-limit headers)."""
    if isinstance(outcome, AttemptFailure):
        ticket.settle(None, outcome.ratelimit_headers)
    else:
        ticket.settle(outcome, outcome.ratelimit_headers)


class PlainCall:
    def call(self, adapter: Adapter, ctx: AttemptContext, request: ModelRequest) -> ModelResponse:
        return adapter.call(ctx.model_id, request)

    async def acall(self, adapter: AsyncModel, ctx: AttemptContext, request: ModelRequest) -> ModelResponse:
        return await adapter.acall(ctx.model_id, request)


class Forgetful:
    def record(self, model: str, outcome: OutcomeKind, latency_s: float, retry_after_s: float | None) -> None:
        return None

    def learning(
        self, model: str, outcome: OutcomeKind, latency_s: float, retry_after_s: float | None
    ) -> ScriptPart | None:
        return None

    def learned(self, model: str, state: str) -> None:
        return None

