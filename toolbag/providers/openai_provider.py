"""OpenAI Chat Completions through the official ``openai`` SDK; also any OpenAI-compatible server.

The ``openai-compatible`` kind (vLLM, Ollama, gateways) uses the same SDK with another base URL and asks
only for what such servers commonly implement: ``max_tokens`` rather than ``max_completion_tokens``, and
no strict JSON schema (servers without grammar support reject ``strict``); whatever they omit in answers
(usage details, request ids, rate-limit headers) is read as absent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import openai

from toolbag.providers.adapter import Received, Reply, VendorAdapter, with_sdk_timeout_and_headers
from toolbag.providers.base import (
    OPENAI_BASE_URL,
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
from toolbag.providers.stop_reasons import openai_finish_failure
from toolbag.providers.structured import openai_strict_schema

__all__ = ["DEFAULT_BASE_URL", "OpenAIAdapter"]

DEFAULT_BASE_URL = OPENAI_BASE_URL
_ERROR_PREFIX = "[tool error] "


def _messages(request: ModelRequest) -> list[dict[str, Any]]:
    wire: list[dict[str, Any]] = []
    if request.system:
        wire.append({"role": "system", "content": request.system})
    for message in request.messages:
        wire.extend(_message(message))
    return wire


def _message(message: Message) -> list[dict[str, Any]]:
    if message.role == "assistant":
        item: dict[str, Any] = {"role": "assistant", "content": message.text or None}
        if message.tool_calls:
            item["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                }
                for call in message.tool_calls
            ]
        elif not message.text:
            item["content"] = ""
        return [item]
    items: list[dict[str, Any]] = [
        {
            "role": "tool",
            "tool_call_id": result.call_id,
            "content": (_ERROR_PREFIX + result.content) if result.is_error else result.content,
        }
        for result in message.tool_results
    ]
    if message.text or not message.tool_results:
        items.append({"role": "user", "content": message.text})
    return items


def _schema_name(name: str) -> str:
    """OpenAI requires ``^[a-zA-Z0-9_-]{1,64}$``."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", name)[:64] or "output"


def _usage(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    details = getattr(usage, "prompt_tokens_details", None)
    return Usage(
        input_tokens=getattr(usage, "prompt_tokens", None) or 0,
        output_tokens=getattr(usage, "completion_tokens", None) or 0,
        cached_input_tokens=(getattr(details, "cached_tokens", None) or 0) if details is not None else 0,
        cache_write_tokens=(getattr(details, "cache_write_tokens", None) or 0) if details is not None else 0,
    )


def _arguments(name: str, raw: str | None, partial_text: str) -> dict[str, Any]:
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError as err:
        raise AttemptFailure(
            OutcomeKind.INVALID_OUTPUT,
            f"openai tool call {name!r} arguments are not valid JSON ({err.msg})",
            partial_text=partial_text,
        ) from None
    if not isinstance(value, dict):
        raise AttemptFailure(
            OutcomeKind.INVALID_OUTPUT, f"openai tool call {name!r} arguments are not an object"
        )
    return value


@dataclass
class _StreamState(Received):
    """A stream's chunks folded together; ``response_id`` is the completion id."""

    refusal_parts: list[str] = field(default_factory=list)
    tools: dict[int, list[str]] = field(default_factory=dict)  # index -> [id, name, arguments...]
    model: str = ""
    finish_reason: str | None = None
    usage: Any = None


class OpenAIAdapter(VendorAdapter[_StreamState]):
    """:class:`~toolbag.providers.base.Adapter` for OpenAI Chat Completions (and compatible servers).

    One ``openai.OpenAI`` client (SDK retries off) over one ``httpx2`` pool sized for ``max_connections``
    concurrent calls; every per-attempt option is passed per call, so the instance is thread-safe.
    """

    request_id_header = "x-request-id"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        max_connections: int = 200,
        kind: ProviderKind = "openai",
    ) -> None:
        if kind not in ("openai", "openai-compatible"):
            raise ValueError(f"OpenAIAdapter serves kinds openai and openai-compatible, not {kind!r}")
        super().__init__(api_key=api_key)
        self.kind = kind
        self.base_url = base_url
        self._compatible = kind == "openai-compatible"
        self._http = openai.DefaultHttpxClient(limits=http_limits(max_connections))
        self._client = openai.OpenAI(
            api_key=api_key, base_url=base_url, max_retries=0, http_client=self._http
        )
        self._async = ClientShards(self._new_async_client, max_connections)  # made on the loop that uses them

    def __repr__(self) -> str:
        return f"OpenAIAdapter(kind={self.kind!r}, base_url={self.base_url!r})"

    def close(self) -> None:
        self._client.close()

    async def aclose(self) -> None:
        for client in self._async.take_all():
            await client.close()

    def _new_async_client(self, connections: int) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            api_key=self._secrets[0], base_url=self.base_url, max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(limits=http_limits(connections)),
        )

    # ------------------------------------------------------------------------------------ request

    def wire_request(self, model: str, request: ModelRequest) -> dict[str, Any]:
        """``chat.completions.create`` keyword arguments for ``request`` (JSON-serializable)."""
        wire: dict[str, Any] = {"model": model, "messages": _messages(request)}
        wire["max_tokens" if self._compatible else "max_completion_tokens"] = request.max_output_tokens
        if request.tools:
            wire["tools"] = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                }
                for t in request.tools
            ]
        if request.tool_choice is not None:
            choice = request.tool_choice
            wire["tool_choice"] = (choice.mode if choice.mode != "tool"
                                   else {"type": "function", "function": {"name": choice.name}})
        if request.json_schema is not None:
            strict = None if self._compatible else openai_strict_schema(request.json_schema)
            wire["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": _schema_name(request.json_schema_name),
                    "schema": strict if strict is not None else request.json_schema,
                    "strict": strict is not None,
                },
            }
        if request.stream:
            wire["stream"] = True
            wire["stream_options"] = {"include_usage": True}
        if request.cache_key and not self._compatible:
            wire["prompt_cache_key"] = request.cache_key
        return wire

    # --------------------------------------------------------------------------------------- call

    def _new_received(self) -> _StreamState:
        return _StreamState()

    def _call_arguments(self, wire: dict[str, Any], request: ModelRequest, clock: AttemptClock) -> dict[str, Any]:
        return with_sdk_timeout_and_headers(wire, request, clock)

    def _send(self, arguments: dict[str, Any], clock: AttemptClock, received: _StreamState) -> Reply:
        return self._reply(self._client.chat.completions.with_raw_response.create(**arguments), arguments, received)

    async def _asend(self, arguments: dict[str, Any], clock: AttemptClock, received: _StreamState) -> Reply:
        with self._async.use() as client:
            raw = await client.chat.completions.with_raw_response.create(**arguments)
        return self._reply(raw, arguments, received)

    def _reply(self, raw: Any, arguments: dict[str, Any], received: _StreamState) -> Reply:
        """The answer of a plain call (either client's raw response)."""
        received.headers.update(raw.headers)
        completion = raw.parse()
        if not completion.choices:
            raise AttemptFailure(OutcomeKind.SERVER_ERROR, f"{self.kind} answer has no choices")
        choice = completion.choices[0]
        text = choice.message.content or ""
        failure = openai_finish_failure(
            choice.finish_reason, getattr(choice.message, "refusal", None), vendor=self.kind
        )
        if failure is not None:
            raise failure
        calls = tuple(
            ToolCall(
                id=call.id,
                name=call.function.name,
                arguments=_arguments(call.function.name, call.function.arguments, ""),
            )
            for call in (choice.message.tool_calls or ())
            if getattr(call, "function", None) is not None
        )
        return Reply(
            text=text,
            tool_calls=calls,
            model=completion.model or str(arguments["model"]),
            usage=_usage(completion.usage),
            stop_reason=str(choice.finish_reason),
            response_id=completion.id,
        )

    def _stream(self, arguments: dict[str, Any], clock: AttemptClock, state: _StreamState) -> Reply:
        stream = self._client.chat.completions.create(**arguments)
        try:
            state.headers.update(stream.response.headers)
            for chunk in stream:
                self._on_chunk(chunk, state, clock)
                if state.finish_reason is None:  # after the finish, only usage and [DONE] remain
                    clock.check(state.text)
        finally:
            stream.close()
        return self._stream_reply(arguments, state)

    async def _astream(self, arguments: dict[str, Any], clock: AttemptClock, state: _StreamState) -> Reply:
        with self._async.use() as client:
            stream = await client.chat.completions.create(**arguments)
            try:
                state.headers.update(stream.response.headers)
                async for chunk in stream:
                    self._on_chunk(chunk, state, clock)
                    if state.finish_reason is None:
                        clock.check(state.text)
            finally:
                await stream.close()
        return self._stream_reply(arguments, state)

    def _stream_reply(self, arguments: dict[str, Any], state: _StreamState) -> Reply:
        """The answer of a stream consumed to its end (either client's)."""
        refusal = "".join(state.refusal_parts)
        failure = openai_finish_failure(state.finish_reason, refusal, partial_text=state.text, vendor=self.kind)
        if failure is not None:
            raise failure
        calls = tuple(
            ToolCall(
                id=parts[0], name=parts[1], arguments=_arguments(parts[1], "".join(parts[2:]), state.text)
            )
            for _, parts in sorted(state.tools.items())
        )
        return Reply(
            text=state.text,
            tool_calls=calls,
            model=state.model or str(arguments["model"]),
            usage=_usage(state.usage),
            stop_reason=str(state.finish_reason),
            response_id=state.response_id,
        )

    @staticmethod
    def _on_chunk(chunk: Any, state: _StreamState, clock: AttemptClock) -> None:
        state.model = getattr(chunk, "model", None) or state.model
        state.response_id = getattr(chunk, "id", None) or state.response_id
        if getattr(chunk, "usage", None) is not None:
            state.usage = chunk.usage
        for choice in chunk.choices or ():
            if choice.index not in (0, None):
                continue
            delta = choice.delta
            if delta is not None:
                if delta.content:
                    state.text_parts.append(delta.content)
                    clock.mark_token()
                if getattr(delta, "refusal", None):
                    state.refusal_parts.append(delta.refusal)
                    clock.mark_token()
                for call in delta.tool_calls or ():
                    first = call.index not in state.tools
                    slot = state.tools.setdefault(call.index, ["", ""])
                    if call.id:
                        slot[0] = call.id
                    function = call.function
                    if function is not None:
                        if function.name:
                            slot[1] = function.name
                        if function.arguments:
                            slot.append(function.arguments)
                    piece = function.arguments if function is not None and function.arguments else ""
                    if first or piece:
                        state.tool_piece(call.index, slot[0] if first else "", slot[1] if first else "", piece)
                    clock.mark_token()
            if choice.finish_reason:
                state.finish_reason = choice.finish_reason
