"""A :class:`~toolbag.providers.base.ModelRequest` as JSON-ready data and back, for requests that wait in Redis
(an attempt held for a vendor batch keeps the request its worker built)."""

from __future__ import annotations

import dataclasses
from typing import Any

from toolbag.providers.base import Message, ModelRequest, Timeouts, ToolCall, ToolChoice, ToolResult, ToolSpec

__all__ = ["request_from_dict", "request_to_dict"]


def _message_dict(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "text": message.text}
    if message.tool_calls:
        out["tool_calls"] = [dataclasses.asdict(call) for call in message.tool_calls]
    if message.tool_results:
        out["tool_results"] = [dataclasses.asdict(result) for result in message.tool_results]
    return out


def request_to_dict(request: ModelRequest) -> dict[str, Any]:
    """Plain data (dicts, lists, strings, numbers) that :func:`request_from_dict` turns back into ``request``
    (written field by field: ``dataclasses.asdict`` deep-copies everything and costs a worker several times more)."""
    t = request.timeouts
    return {
        "messages": [_message_dict(m) for m in request.messages],
        "system": request.system,
        "max_output_tokens": request.max_output_tokens,
        "json_schema": request.json_schema,
        "json_schema_name": request.json_schema_name,
        "tools": [dataclasses.asdict(tool) for tool in request.tools],
        "tool_choice": dataclasses.asdict(request.tool_choice) if request.tool_choice is not None else None,
        "timeouts": {"connect_s": t.connect_s, "first_token_s": t.first_token_s, "total_s": t.total_s},
        "stream": request.stream,
        "extra_headers": dict(request.extra_headers),
        "cache_key": request.cache_key,
    }


def _message(raw: dict[str, Any]) -> Message:
    return Message(
        role=raw["role"], text=raw.get("text", ""),
        tool_calls=tuple(ToolCall(**call) for call in raw.get("tool_calls", ())),
        tool_results=tuple(ToolResult(**result) for result in raw.get("tool_results", ())),
    )


def request_from_dict(raw: dict[str, Any]) -> ModelRequest:
    """The request :func:`request_to_dict` made ``raw`` from."""
    choice = raw.get("tool_choice")
    return ModelRequest(
        messages=tuple(_message(m) for m in raw["messages"]),
        system=raw.get("system", ""),
        max_output_tokens=int(raw.get("max_output_tokens", 1024)),
        json_schema=raw.get("json_schema"),
        json_schema_name=raw.get("json_schema_name", "output"),
        tools=tuple(ToolSpec(**tool) for tool in raw.get("tools", ())),
        tool_choice=ToolChoice(**choice) if choice is not None else None,
        timeouts=Timeouts(**raw.get("timeouts", {})),
        stream=bool(raw.get("stream", False)),
        extra_headers=dict(raw.get("extra_headers", {})),
        cache_key=raw.get("cache_key", ""),
    )
