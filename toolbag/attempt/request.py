"""The request an attempt sends: built here once, for the worker, cost estimates and the lockfile alike.

A job's input is either rendered by its skill, or taken as a plain request: ``{"text": ...}``,
``{"messages": [{"role", "content"}], "system": ...}``, or any JSON value, which is sent as JSON with the
capability as the instruction. A messages request may offer the caller's own tools (``"tool_specs"``: name,
description, parameters; ``"tool_choice"``: mode and name) and carry earlier tool calls (an assistant turn's
``"tool_calls"``: id, name, arguments) and their results (a user turn's ``"tool_results"``: call_id, name,
content, is_error). The model's calls come back in the job's result; toolbag never runs them (the tool gateway
runs only the tools a skill or the input's ``"tools"`` asks for, through its policy).
The tier sets timeouts and streaming; the model caps the output tokens.

A streamed answer cut after part of it reached the caller may be continued (the route's ``stream_failover``):
the next attempt's request ends with that part as an assistant prefill (:func:`continuation`), and the job's
output is the part plus what the model adds.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from toolbag.config import Config, Tier
from toolbag.providers.base import Message, ModelRequest, Role, Timeouts, ToolCall, ToolChoice, ToolResult, ToolSpec

if TYPE_CHECKING:
    from toolbag.skills.model import Skill

PLAIN_MAX_OUTPUT_TOKENS = 1024  # a job without a skill may ask for more in its input (``max_output_tokens``)
JOB_TOOLS_FIELD = "tools"  # a job's input may ask for tools by name or glob; the policy decides
CALLER_TOOLS_FIELD = "tool_specs"  # tools the caller defines and runs itself: offered to the model, never run here


def timeouts_for(config: Config, tier: Tier) -> Timeouts:
    t = config.tiers[tier]
    return Timeouts(connect_s=t.connect_timeout_s, first_token_s=t.first_token_timeout_s, total_s=t.total_timeout_s)


def build_request(
    config: Config,
    *,
    capability: str,
    tier: Tier,
    model: str,
    job_input: Any,
    skill: Skill | None = None,
    feedback: str | None = None,
    prefill: str = "",
) -> ModelRequest:
    """The request one attempt of a job sends to ``model``. ``feedback`` is the validation error of the
    previous answer, when the supervisor retries after ``invalid_output``; ``prefill`` the part of a cut answer
    the caller already holds (sent as an assistant prefill when :func:`continuation` says so). Raises
    ``SkillInputError`` when the input does not fit the skill."""
    cap = config.models[model].max_output_tokens
    if skill is not None:
        from toolbag.skills.render import render

        request = render(skill, job_input, feedback=feedback)
    else:
        request = plain_request(capability, job_input, min(PLAIN_MAX_OUTPUT_TOKENS, cap))
        if feedback:
            request = dataclasses.replace(
                request, system=f"{request.system}\n\nYour previous answer was rejected: {feedback}"
            )
    continued = continuation(config, model, prefill) if skill is None else ""
    if continued:
        request = dataclasses.replace(request, messages=_prefilled(request.messages, continued))
    return dataclasses.replace(
        request,
        timeouts=timeouts_for(config, tier),
        stream=config.tiers[tier].stream,
        max_output_tokens=min(request.max_output_tokens, cap),
    )


def continuable(job_input: Any, skill: str | None) -> bool:
    """Whether a cut answer of this job may be continued by a prefill: plain text (no skill, which validates
    whole answers, and no JSON schema, whose answer must parse as one)."""
    return skill is None and not (isinstance(job_input, dict) and job_input.get("json_schema") is not None)


def continuation(config: Config, model: str, prefill: str) -> str:
    """What an attempt on ``model`` continues from: ``prefill`` when the model accepts a prefill, else nothing
    (the attempt answers from the start)."""
    return prefill if prefill and config.accepts_prefill(model) else ""


def _prefilled(messages: tuple[Message, ...], prefill: str) -> tuple[Message, ...]:
    """``messages`` ending with the assistant prefill (added to the caller's own prefill when there is one)."""
    last = messages[-1] if messages else None
    if last is not None and last.role == "assistant" and not last.tool_calls:
        return (*messages[:-1], dataclasses.replace(last, text=last.text + prefill))
    return (*messages, Message("assistant", prefill))


def plain_request(capability: str, payload: Any, max_output_tokens: int) -> ModelRequest:
    """The request for a job without a skill (before the tier and the model shape it)."""
    if isinstance(payload, dict) and isinstance(payload.get("messages"), list):
        messages = tuple(_message(m) for m in payload["messages"] if isinstance(m, dict))
        return ModelRequest(
            messages=messages or (Message("user", ""),),
            system=str(payload.get("system", "")),
            max_output_tokens=int(payload.get("max_output_tokens", max_output_tokens)),
            json_schema=payload.get("json_schema"),
            tools=tuple(ToolSpec(str(t.get("name", "")), str(t.get("description", "")), dict(t.get("parameters") or {}))
                        for t in payload.get(CALLER_TOOLS_FIELD) or () if isinstance(t, dict)),
            tool_choice=_tool_choice(payload.get("tool_choice")),
        )
    if isinstance(payload, dict) and isinstance(payload.get("text"), str):
        return ModelRequest(
            messages=(Message("user", payload["text"]),),
            system=str(payload.get("system", f"Task: {capability}.")),
            max_output_tokens=int(payload.get("max_output_tokens", max_output_tokens)),
            json_schema=payload.get("json_schema"),
        )
    text = payload if isinstance(payload, str) else json.dumps(payload, sort_keys=True)
    return ModelRequest(
        messages=(Message("user", text),), system=f"Task: {capability}.", max_output_tokens=max_output_tokens
    )


def _message(m: dict[str, Any]) -> Message:
    calls = tuple(ToolCall(str(c.get("id", "")), str(c.get("name", "")), dict(c.get("arguments") or {}))
                  for c in m.get("tool_calls") or () if isinstance(c, dict))
    results = tuple(ToolResult(str(r.get("call_id", "")), str(r.get("name", "")), str(r.get("content", "")),
                               bool(r.get("is_error", False)))
                    for r in m.get("tool_results") or () if isinstance(r, dict))
    role: Role = "assistant" if m.get("role") == "assistant" else "user"
    return Message(role=role, text=str(m.get("content") or ""), tool_calls=calls, tool_results=results)


def _tool_choice(raw: Any) -> ToolChoice | None:
    if not isinstance(raw, dict) or raw.get("mode") not in ("auto", "required", "none", "tool"):
        return None
    return ToolChoice(raw["mode"], str(raw.get("name", "")))


def requested_tools(raw_input: str) -> list[str]:
    """The ``"tools"`` list of a job's JSON input (non-empty strings only), else empty."""
    try:
        payload = json.loads(raw_input)
    except (TypeError, ValueError):
        return []
    if not isinstance(payload, dict):
        return []
    tools = payload.get(JOB_TOOLS_FIELD)
    if not isinstance(tools, list):
        return []
    return [t for t in tools if isinstance(t, str) and t]
