"""The one token estimate the fleet makes before a vendor counts: deliberately high, never below the truth
for ordinary text (UTF-8 bytes / 3, plus framing per message). Rate-limit reservations, the context-window
check at submit and bulk cost estimates all use it."""

from __future__ import annotations

import json

from toolbag.providers.base import ModelRequest

BYTES_PER_TOKEN = 3
FRAMING_TOKENS_PER_MESSAGE = 8
FRAMING_TOKENS_PER_REQUEST = 16


def estimate_text_tokens(text: str) -> int:
    """Tokens of ``text`` alone (a job's raw input, before any request is built)."""
    return len(text.encode()) // BYTES_PER_TOKEN


def estimate_input_tokens(request: ModelRequest) -> int:
    """Input tokens of ``request``: its text, tool calls and results, output schema and tool definitions."""
    size = len(request.system.encode())
    for message in request.messages:
        size += len(message.text.encode())
        for call in message.tool_calls:
            size += len(call.name) + len(json.dumps(call.arguments))
        for result in message.tool_results:
            size += len(result.content.encode())
    if request.json_schema is not None:
        size += len(json.dumps(request.json_schema))
    for tool in request.tools:
        size += len(tool.name) + len(tool.description.encode()) + len(json.dumps(tool.parameters))
    return size // BYTES_PER_TOKEN + FRAMING_TOKENS_PER_MESSAGE * len(request.messages) + FRAMING_TOKENS_PER_REQUEST
