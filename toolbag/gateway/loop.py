"""The tool-use loop of one attempt: a :class:`toolbag.attempt.context.Caller` that offers a model the tools the policy
grants and runs its tool calls through the gateway until it answers.

Which tools an attempt asks for: the skill's ``allowed-tools`` (``AttemptContext.allowed_tools``) plus, for
any job, an input field ``"tools": ["clock.now", "math.*"]`` (names or globs). Both are *requests*; the
policy decides what is offered, and decides again on every call.

Each step: call the model (Anthropic ``tool_use``, OpenAI ``tool_calls``, Gemini ``functionCall`` all arrive
as ``ModelResponse.tool_calls``); if it asked for tools, run each through :meth:`Gateway.execute`, append the
assistant turn (with its calls) and a user turn (with the results, sent back in the vendor's format by the
adapter), and call again. Bounded by ``max_steps`` model calls and the job's deadline.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

from toolbag.attempt.context import AttemptContext
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
    ToolResult,
    Usage,
)

__all__ = ["ToolLoop"]


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
        subject = Subject(agent=ctx.caller, provider=ctx.provider, model=ctx.model, model_id=ctx.model_id,
                          job_id=ctx.job_id)
        if not self._model_has_tools(ctx.model):
            return adapter.call(ctx.model_id, request)
        requested = list(ctx.allowed_tools or ())
        if (ctx.requested_tools or self.job_tools is not None) and self.gateway.wants(subject):
            asked = ctx.requested_tools or (self.job_tools(ctx.job_id) if self.job_tools is not None else ())
            requested += [t for t in asked if t not in requested]
        if not requested:
            return adapter.call(ctx.model_id, request)
        try:
            offer = self.gateway.offer(subject, requested)
        except AuditError as err:
            raise AttemptFailure(
                OutcomeKind.SERVER_ERROR, f"tool gateway: audit unavailable, no tools run: {err}"
            ) from err
        if not offer.tools:
            return adapter.call(ctx.model_id, request)
        return self.run(adapter, ctx.model_id, subject, request, offer, ctx.deadline_ms)

    def close(self) -> None:
        self.gateway.close()

    # -------------------------------------------------------------------------------------- loop

    def _model_has_tools(self, model: str) -> bool:
        if self.config is None or model not in self.config.models:
            return True
        return bool(self.config.models[model].features.tools)

    @staticmethod
    def _remaining_s(deadline_ms: int) -> float | None:
        if deadline_ms <= 0:
            return None
        return deadline_ms / 1000 - time.time()

    def _budget(self, request: ModelRequest, remaining_s: float | None, step: int) -> ModelRequest:
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

    def run(
        self, adapter: Adapter, model_id: str, subject: Subject, request: ModelRequest, offer: Offer, deadline_ms: int
    ) -> ModelResponse:
        """The loop itself (public for tests and for callers outside a worker)."""
        messages = list(request.messages)
        started = time.monotonic()
        input_tokens = output_tokens = cached_tokens = written_tokens = 0
        specs = offer.specs
        for step in range(1, self.max_steps + 1):
            step_request = dataclasses.replace(request, messages=tuple(messages), tools=specs)
            response = adapter.call(model_id, self._budget(step_request, self._remaining_s(deadline_ms), step))
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
                remaining = self._remaining_s(deadline_ms)
                if remaining is not None and remaining <= 0:
                    raise AttemptFailure(OutcomeKind.TIMEOUT, f"job deadline passed during the tool loop (step {step})")
                timeout_s = self.tool_timeout_s if remaining is None else min(self.tool_timeout_s, remaining)
                try:
                    results.append(self.gateway.execute(subject, offer, call, step=step, timeout_s=timeout_s))
                except AuditError as err:
                    raise AttemptFailure(
                        OutcomeKind.SERVER_ERROR, f"tool gateway: audit unavailable, tool call not made: {err}"
                    ) from err
            messages.append(Message("assistant", text=response.text, tool_calls=response.tool_calls))
            messages.append(Message("user", tool_results=tuple(results)))
        raise AttemptFailure(
            OutcomeKind.INVALID_OUTPUT,
            f"the model was still calling tools after {self.max_steps} steps (tool loop limit)",
        )
