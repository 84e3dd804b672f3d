"""Turn a job record into the normalized :class:`ModelRequest` for one attempt.

A job's input is either rendered by its skill, or taken as a plain request: ``{"text": ...}``,
``{"messages": [{"role", "content"}], "system": ...}``, or any JSON value, which is sent as JSON with the
capability as the instruction.
"""

from __future__ import annotations

import json
from typing import Any

from toolbag.config import Config
from toolbag.providers.base import Message, ModelRequest, Timeouts


def timeouts_for(config: Config, tier: str) -> Timeouts:
    t = config.tiers[tier]
    return Timeouts(connect_s=t.connect_timeout_s, first_token_s=t.first_token_timeout_s, total_s=t.total_timeout_s)


def plain_request(capability: str, payload: Any, max_output_tokens: int) -> ModelRequest:
    """The request for a job without a skill."""
    if isinstance(payload, dict) and isinstance(payload.get("messages"), list):
        messages = tuple(
            Message(role="assistant" if m.get("role") == "assistant" else "user", text=str(m.get("content", "")))
            for m in payload["messages"]
            if isinstance(m, dict)
        )
        return ModelRequest(
            messages=messages or (Message("user", ""),),
            system=str(payload.get("system", "")),
            max_output_tokens=int(payload.get("max_output_tokens", max_output_tokens)),
            json_schema=payload.get("json_schema"),
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
