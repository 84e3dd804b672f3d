"""Anthropic Messages API through the official ``anthropic`` SDK (sync client, shared by all threads)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import anthropic

from toolbag.providers.adapter import Received, Reply, VendorAdapter, with_sdk_timeout_and_headers
from toolbag.providers.base import (
    ANTHROPIC_BASE_URL,
    AttemptFailure,
    Message,
    ModelRequest,
    OutcomeKind,
    ProviderKind,
    ToolCall,
    Usage,
)
from toolbag.providers.clock import AttemptClock, http_limits
from toolbag.providers.shards import ClientShards
from toolbag.providers.stop_reasons import anthropic_stop_failure
from toolbag.providers.structured import anthropic_output_schema

__all__ = ["DEFAULT_BASE_URL", "AnthropicAdapter"]

DEFAULT_BASE_URL = ANTHROPIC_BASE_URL


def _content(message: Message) -> str | list[dict[str, Any]]:
    if message.role == "assistant":
        blocks: list[dict[str, Any]] = []
        if message.text:
            blocks.append({"type": "text", "text": message.text})
        for call in message.tool_calls:
            blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments})
        return blocks if message.tool_calls else message.text
    if not message.tool_results:
        return message.text
    user_blocks: list[dict[str, Any]] = []
    for result in message.tool_results:
        block: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": result.call_id,
            "content": result.content,
        }
        if result.is_error:
            block["is_error"] = True
        user_blocks.append(block)
    if message.text:
        user_blocks.append({"type": "text", "text": message.text})
    return user_blocks


def _usage(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    cache_read = getattr(usage, "cache_read_input_tokens", None) or 0
    cache_write = getattr(usage, "cache_creation_input_tokens", None) or 0
    return Usage(
        input_tokens=(getattr(usage, "input_tokens", None) or 0) + cache_read + cache_write,
        output_tokens=getattr(usage, "output_tokens", None) or 0,
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
    )


@dataclass
class _StreamState(Received):
    """A stream's events folded together; ``response_id`` is the message id."""

    tools: dict[int, tuple[str, str, list[str], dict[str, Any]]] = field(default_factory=dict)
    model: str = ""
    stop_reason: str | None = None
    stop_details: Any = None
    input_usage: Any = None
    output_tokens: int = 0
    finished: bool = False


class AnthropicAdapter(VendorAdapter[_StreamState]):
    """:class:`~toolbag.providers.base.Adapter` for the Anthropic Messages API.

    One ``anthropic.Anthropic`` client (SDK retries off) over one ``httpx2`` pool sized for
    ``max_connections`` concurrent calls; every per-attempt option is passed per call, so the instance is
    safe to share between threads.
    """

    kind: ProviderKind = "anthropic"
    request_id_header = "request-id"

    def __init__(self, *, api_key: str, base_url: str = DEFAULT_BASE_URL, max_connections: int = 200) -> None:
        super().__init__(api_key=api_key)
        self.base_url = base_url
        self._http = anthropic.DefaultHttpxClient(limits=http_limits(max_connections))
        self._client = anthropic.Anthropic(
            api_key=api_key, base_url=base_url, max_retries=0, http_client=self._http
        )
        self._async = ClientShards(self._new_async_client, max_connections)  # made on the loop that uses them

    def __repr__(self) -> str:
        return f"AnthropicAdapter(base_url={self.base_url!r})"

    def close(self) -> None:
        self._client.close()

    async def aclose(self) -> None:
        for client in self._async.take_all():
            await client.close()

    def _new_async_client(self, connections: int) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key=self._secrets[0], base_url=self.base_url, max_retries=0,
            http_client=anthropic.DefaultAsyncHttpxClient(limits=http_limits(connections)),
        )

    # ------------------------------------------------------------------------------------ request

    def wire_request(self, model: str, request: ModelRequest) -> dict[str, Any]:
        """``messages.create`` keyword arguments for ``request`` (JSON-serializable)."""
        wire: dict[str, Any] = {
            "model": model,
            "max_tokens": request.max_output_tokens,
            "messages": [{"role": m.role, "content": _content(m)} for m in request.messages],
        }
        if request.system and request.cache_key:  # a stable block: read from the cache on the next call
            wire["system"] = [{"type": "text", "text": request.system, "cache_control": {"type": "ephemeral"}}]
        elif request.system:
            wire["system"] = request.system
        if request.tools:
            wire["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters}
                for t in request.tools
            ]
        if request.tool_choice is not None:
            choice = request.tool_choice
            wire["tool_choice"] = ({"type": "tool", "name": choice.name} if choice.mode == "tool"
                                   else {"type": "any" if choice.mode == "required" else choice.mode})
        if request.json_schema is not None:
            wire["output_config"] = {
                "format": {"type": "json_schema", "schema": anthropic_output_schema(request.json_schema)}
            }
        if request.stream:
            wire["stream"] = True
        return wire

    # --------------------------------------------------------------------------------------- call

    def _new_received(self) -> _StreamState:
        return _StreamState()

    def _call_arguments(self, wire: dict[str, Any], request: ModelRequest, clock: AttemptClock) -> dict[str, Any]:
        return with_sdk_timeout_and_headers(wire, request, clock)

    def _send(self, arguments: dict[str, Any], clock: AttemptClock, received: _StreamState) -> Reply:
        raw = self._client.messages.with_raw_response.create(**arguments)
        received.headers.update(raw.headers)
        return self._reply(raw.parse())

    async def _asend(self, arguments: dict[str, Any], clock: AttemptClock, received: _StreamState) -> Reply:
        with self._async.use() as client:
            raw = await client.messages.with_raw_response.create(**arguments)
            received.headers.update(raw.headers)
            return self._reply(await raw.parse())

    def _reply(self, message: Any) -> Reply:
        """The answer of a plain call (either client's parsed message)."""
        text = "".join(block.text for block in message.content if block.type == "text")
        failure = anthropic_stop_failure(message.stop_reason, getattr(message, "stop_details", None))
        if failure is not None:
            raise failure
        calls = tuple(
            ToolCall(id=block.id, name=block.name, arguments=dict(block.input or {}))
            for block in message.content
            if block.type == "tool_use"
        )
        return Reply(
            text=text,
            tool_calls=calls,
            model=message.model,
            usage=_usage(message.usage),
            stop_reason=str(message.stop_reason),
            response_id=message.id,
        )

    def _stream(self, arguments: dict[str, Any], clock: AttemptClock, state: _StreamState) -> Reply:
        stream = self._client.messages.create(**arguments)
        try:
            state.headers.update(stream.response.headers)
            for event in stream:
                self._on_event(event, state, clock)
                if state.finished:
                    break
                clock.check(state.text)
        finally:
            stream.close()
        return self._stream_reply(state)

    async def _astream(self, arguments: dict[str, Any], clock: AttemptClock, state: _StreamState) -> Reply:
        with self._async.use() as client:
            stream = await client.messages.create(**arguments)
            try:
                state.headers.update(stream.response.headers)
                async for event in stream:
                    self._on_event(event, state, clock)
                    if state.finished:
                        break
                    clock.check(state.text)
            finally:
                await stream.close()
        return self._stream_reply(state)

    def _stream_reply(self, state: _StreamState) -> Reply:
        """The answer of a stream read to its ``message_stop`` (either client's)."""
        if not state.finished:
            raise AttemptFailure(
                OutcomeKind.NETWORK,
                "anthropic stream ended without message_stop (cut stream)",
                partial_text=state.text,
            )
        failure = anthropic_stop_failure(state.stop_reason, state.stop_details, partial_text=state.text)
        if failure is not None:
            raise failure
        calls: list[ToolCall] = []
        for index in sorted(state.tools):
            call_id, name, parts, initial = state.tools[index]
            tool_input = initial
            if parts:
                try:
                    tool_input = json.loads("".join(parts))
                except json.JSONDecodeError as err:
                    raise AttemptFailure(
                        OutcomeKind.INVALID_OUTPUT,
                        f"anthropic tool_use {name!r} input is not valid JSON ({err.msg})",
                        partial_text=state.text,
                    ) from None
            if not isinstance(tool_input, dict):
                raise AttemptFailure(
                    OutcomeKind.INVALID_OUTPUT, f"anthropic tool_use {name!r} input is not an object"
                )
            calls.append(ToolCall(id=call_id, name=name, arguments=tool_input))
        usage = _usage(state.input_usage)
        return Reply(
            text=state.text,
            tool_calls=tuple(calls),
            model=state.model,
            usage=Usage(usage.input_tokens, state.output_tokens, usage.cached_input_tokens, usage.cache_write_tokens),
            stop_reason=str(state.stop_reason),
            response_id=state.response_id,
        )

    @staticmethod
    def _on_event(event: Any, state: _StreamState, clock: AttemptClock) -> None:
        kind = getattr(event, "type", None)
        if kind == "message_start":
            message = event.message
            state.model = message.model
            state.response_id = message.id
            state.input_usage = message.usage
            state.output_tokens = getattr(message.usage, "output_tokens", 0) or 0
        elif kind == "content_block_start":
            block = event.content_block
            if block.type == "tool_use":
                state.tool_piece(len(state.tools), block.id, block.name, json.dumps(block.input) if block.input else "")
                state.tools[event.index] = (block.id, block.name, [], dict(block.input or {}))
                clock.mark_token()
            elif block.type == "text" and block.text:
                state.text_parts.append(block.text)
                clock.mark_token()
        elif kind == "content_block_delta":
            delta = event.delta
            if delta.type == "text_delta":
                state.text_parts.append(delta.text)
                clock.mark_token()
            elif delta.type == "input_json_delta" and event.index in state.tools:
                state.tools[event.index][2].append(delta.partial_json)
                if delta.partial_json:
                    state.tool_piece(list(state.tools).index(event.index), "", "", delta.partial_json)
                clock.mark_token()
        elif kind == "message_delta":
            state.stop_reason = event.delta.stop_reason
            state.stop_details = getattr(event.delta, "stop_details", None)
            usage = getattr(event, "usage", None)
            if usage is not None:
                state.output_tokens = getattr(usage, "output_tokens", None) or state.output_tokens
                if getattr(usage, "input_tokens", None):
                    state.input_usage = usage
        elif kind == "message_stop":
            state.finished = True
