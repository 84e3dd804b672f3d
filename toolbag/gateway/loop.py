"""The tool-use loop of one attempt: a :class:`toolbag.attempt.context.Caller` that offers a model the tools the policy
grants and runs its tool calls through the gateway until it answers.

Which tools an attempt asks for: the skill's ``allowed-tools`` (``AttemptContext.allowed_tools``) plus, for
any job, an input field ``"tools": ["clock.now", "math.*"]`` (names or globs). Both are *requests*; the
policy decides what is offered, and decides again on every call.

Each step: call the model (Anthropic ``tool_use``, OpenAI ``tool_calls``, Gemini ``functionCall`` all arrive
as ``ModelResponse.tool_calls``); if it asked for tools, run each through :meth:`Gateway.execute`, append the
assistant turn (with its calls) and a user turn (with the results, sent back in the vendor's format by the
adapter), and call again. Bounded by ``max_steps`` model calls and the job's deadline.

The steps are written once (:meth:`ToolLoop._steps`, a generator that yields the model calls and tool calls
it needs); :meth:`ToolLoop.call` runs them on a thread, :meth:`ToolLoop.acall` on a worker's event loop
(``adapter.acall``, :meth:`Gateway.aexecute`), no thread per attempt.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from toolbag.attempt.context import AsyncModel, AttemptContext
from toolbag.config import Config
from toolbag.gateway.audit import AuditError
from toolbag.gateway.gateway import Gateway, Offer
from toolbag.gateway.policy import Subject
from toolbag.providers.base import (
    Adapter,
    AttemptFailure,
    Message,
    ModelRequest,
    ModelResponse,
    OutcomeKind,
    ToolCall,
    ToolResult,
    Usage,
)

__all__ = ["ToolLoop"]


@dataclass(frozen=True)
class _ModelStep:
    """The loop needs the model's answer to ``request``."""

    request: ModelRequest


@dataclass(frozen=True)
class _ToolStep:
    """The loop needs the result of ``call`` (step ``step``, at most ``timeout_s``)."""

    call: ToolCall
    step: int
    timeout_s: float


_Steps = Generator[_ModelStep | _ToolStep, Any, ModelResponse]


@contextmanager
def _audited(what: str) -> Iterator[None]:
    """An audit that cannot be written fails the attempt (server_error): nothing unrecorded happens."""
    try:
        yield
    except AuditError as err:
        raise AttemptFailure(OutcomeKind.SERVER_ERROR, f"tool gateway: audit unavailable, {what}: {err}") from err


class ToolLoop:
    """:class:`toolbag.attempt.context.Caller` with tools. ``job_tools(job_id)`` returns the tools a job's input asks
    for (read only when the policy grants the agent anything on that model); ``config`` lets the loop skip
    models without the ``tools`` feature."""

    def __init__(
        self,
        gateway: Gateway,
        *,
        config: Config | None = None,
        job_tools: Callable[[str], Sequence[str]] | None = None,
        max_steps: int | None = None,
        tool_timeout_s: float | None = None,
    ) -> None:
        self.gateway = gateway
        self.config = config
        self.job_tools = job_tools
        self.max_steps = max_steps or gateway.loop.max_steps
        self.tool_timeout_s = tool_timeout_s or gateway.loop.tool_timeout_s

    # ------------------------------------------------------------------------------------ Caller

    def call(self, adapter: Adapter, ctx: AttemptContext, request: ModelRequest) -> ModelResponse:
        """One attempt: a plain call when no tool is requested or offered, else the bounded loop."""
        if not self._may_ask(ctx):
            return adapter.call(ctx.model_id, request)
        subject = self._subject(ctx)
        requested = self._requested(ctx, subject)
        if not requested:
            return adapter.call(ctx.model_id, request)
        with _audited("no tools run"):
            offer = self.gateway.offer(subject, requested)
        if not offer.tools:
            return adapter.call(ctx.model_id, request)
        return self.run(adapter, ctx.model_id, subject, request, offer, ctx.deadline_ms)

    async def acall(self, adapter: AsyncModel, ctx: AttemptContext, request: ModelRequest) -> ModelResponse:
        """:meth:`call` on an event loop: the model through ``adapter.acall``, the tools through
        :meth:`Gateway.aexecute`."""
        if not self._may_ask(ctx):
            return await adapter.acall(ctx.model_id, request)
        subject = self._subject(ctx)
        requested = await self.gateway.blocking(self._requested, ctx, subject)
        if not requested:
            return await adapter.acall(ctx.model_id, request)
        with _audited("no tools run"):
            offer = await self.gateway.aoffer(subject, requested)
        if not offer.tools:
            return await adapter.acall(ctx.model_id, request)
        return await self.arun(adapter, ctx.model_id, subject, request, offer, ctx.deadline_ms)

    def bind(self, loop: Any) -> None:
        """Run the gateway's async parts (MCP sessions) on ``loop``, a worker's attempt loop."""
        self.gateway.bind(loop)

    async def aclose(self) -> None:
        await self.gateway.aclose()

    def close(self) -> None:
        self.gateway.close()

    # ----------------------------------------------------------------------- what is asked for

    @staticmethod
    def _subject(ctx: AttemptContext) -> Subject:
        return Subject(agent=ctx.caller, provider=ctx.provider, model=ctx.model, model_id=ctx.model_id,
                       job_id=ctx.job_id)

    def _may_ask(self, ctx: AttemptContext) -> bool:
        """Whether the attempt could ask for any tool (no I/O): False means one plain call."""
        if not (ctx.allowed_tools or ctx.requested_tools or self.job_tools is not None):
            return False
        return self._model_has_tools(ctx.model)

    def _requested(self, ctx: AttemptContext, subject: Subject) -> list[str]:
        """The skill's tools, then the job input's (read only when the policy could grant this agent any)."""
        requested = list(ctx.allowed_tools or ())
        if (ctx.requested_tools or self.job_tools is not None) and self.gateway.wants(subject):
            asked = ctx.requested_tools or (self.job_tools(ctx.job_id) if self.job_tools is not None else ())
            requested += [t for t in asked if t not in requested]
        return requested

    def _model_has_tools(self, model: str) -> bool:
        if self.config is None or model not in self.config.models:
            return True
        return bool(self.config.models[model].features.tools)

    # -------------------------------------------------------------------------------------- loop

    def run(
        self, adapter: Adapter, model_id: str, subject: Subject, request: ModelRequest, offer: Offer, deadline_ms: int
    ) -> ModelResponse:
        """The loop itself, on this thread (public for tests and for callers outside a worker)."""
        steps = self._steps(request, offer, deadline_ms)
        answer: Any = None
        try:
            while True:
                need = steps.send(answer)
                if isinstance(need, _ModelStep):
                    answer = adapter.call(model_id, need.request)
                else:
                    with _audited("tool call not made"):
                        answer = self.gateway.execute(subject, offer, need.call, step=need.step,
                                                      timeout_s=need.timeout_s)
        except StopIteration as done:
            response: ModelResponse = done.value
            return response
        finally:
            steps.close()

    async def arun(
        self, adapter: AsyncModel, model_id: str, subject: Subject, request: ModelRequest, offer: Offer,
        deadline_ms: int,
    ) -> ModelResponse:
        """:meth:`run` on an event loop."""
        steps = self._steps(request, offer, deadline_ms)
        answer: Any = None
        try:
            while True:
                need = steps.send(answer)
                if isinstance(need, _ModelStep):
                    answer = await adapter.acall(model_id, need.request)
                else:
                    with _audited("tool call not made"):
                        answer = await self.gateway.aexecute(subject, offer, need.call, step=need.step,
                                                             timeout_s=need.timeout_s)
        except StopIteration as done:
            response: ModelResponse = done.value
            return response
        finally:
            steps.close()

    def _steps(self, request: ModelRequest, offer: Offer, deadline_ms: int) -> _Steps:
        """The loop's rules, once for both runners: yields each model call and tool call it needs, gets its
        answer back, and returns the final response (usage summed over every step)."""
        messages = list(request.messages)
        started = time.monotonic()
        input_tokens = output_tokens = cached_tokens = written_tokens = 0
        specs = offer.specs
        for step in range(1, self.max_steps + 1):
            step_request = dataclasses.replace(request, messages=tuple(messages), tools=specs)
            response: ModelResponse = yield _ModelStep(self._budget(step_request, _remaining_s(deadline_ms), step))
            input_tokens += response.usage.input_tokens
            output_tokens += response.usage.output_tokens
            cached_tokens += response.usage.cached_input_tokens
            written_tokens += response.usage.cache_write_tokens
            if not response.tool_calls:
                return dataclasses.replace(
                    response, usage=Usage(input_tokens, output_tokens, cached_tokens, written_tokens),
                    latency_s=time.monotonic() - started,
                )
            results: list[ToolResult] = []
            for call in response.tool_calls:
                remaining = _remaining_s(deadline_ms)
                if remaining is not None and remaining <= 0:
                    raise AttemptFailure(OutcomeKind.TIMEOUT, f"job deadline passed during the tool loop (step {step})")
                timeout_s = self.tool_timeout_s if remaining is None else min(self.tool_timeout_s, remaining)
                results.append((yield _ToolStep(call, step, timeout_s)))
            messages.append(Message("assistant", text=response.text, tool_calls=response.tool_calls))
            messages.append(Message("user", tool_results=tuple(results)))
        raise AttemptFailure(
            OutcomeKind.INVALID_OUTPUT,
            f"the model was still calling tools after {self.max_steps} steps (tool loop limit)",
        )

    @staticmethod
    def _budget(request: ModelRequest, remaining_s: float | None, step: int) -> ModelRequest:
        if remaining_s is None:
            return request
        if remaining_s <= 0:
            raise AttemptFailure(OutcomeKind.TIMEOUT, f"job deadline passed during the tool loop (step {step})")
        t = request.timeouts
        timeouts = dataclasses.replace(
            t, connect_s=min(t.connect_s, remaining_s), first_token_s=min(t.first_token_s, remaining_s),
            total_s=min(t.total_s, remaining_s),
        )
        return dataclasses.replace(request, timeouts=timeouts)


def _remaining_s(deadline_ms: int) -> float | None:
    if deadline_ms <= 0:
        return None
    return deadline_ms / 1000 - time.time()
