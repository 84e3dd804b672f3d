"""Google Gemini through the official ``google-genai`` SDK (``genai.Client``, sync, shared by all threads).

SDK behaviour this adapter relies on: the client must stay referenced (its finalizer closes the HTTP
client); retries are off when ``retry_options`` is unset; automatic continuation is on by default and is
turned off per call; ``HttpOptions.timeout`` is in milliseconds and becomes one ``httpx2`` timeout for
connect and read alike; timeouts and connection errors escape as raw ``httpx2`` exceptions.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx2
from google import genai
from google.genai import types

from toolbag.providers.adapter import Received, Reply, VendorAdapter
from toolbag.providers.base import (
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
from toolbag.providers.stop_reasons import gemini_block_failure, gemini_finish_failure

__all__ = ["API_VERSION", "GeminiAdapter"]

API_VERSION = "v1beta"
# Ids we make up for function calls Gemini sent without one; never sent back to Gemini.
_SYNTHETIC_ID_PREFIX = "tb-gemini-call-"


def _part_for_call(call: ToolCall) -> dict[str, Any]:
    function_call: dict[str, Any] = {"name": call.name, "args": call.arguments}
    if not call.id.startswith(_SYNTHETIC_ID_PREFIX):
        function_call["id"] = call.id
    part: dict[str, Any] = {"function_call": function_call}
    if call.signature:
        part["thought_signature"] = call.signature
    return part


def _content(message: Message) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if message.role == "assistant":
        if message.text:
            parts.append({"text": message.text})
        parts.extend(_part_for_call(call) for call in message.tool_calls)
        return {"role": "model", "parts": parts or [{"text": ""}]}
    for result in message.tool_results:
        response: dict[str, Any] = {"name": result.name, "response": {
            "error" if result.is_error else "result": result.content
        }}
        if not result.call_id.startswith(_SYNTHETIC_ID_PREFIX):
            response["id"] = result.call_id
        parts.append({"function_response": response})
    if message.text or not parts:
        parts.append({"text": message.text})
    return {"role": "user", "parts": parts}


def _sdk_contents(contents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The wire contents with base64 thought signatures decoded to the ``bytes`` the SDK model expects."""
    if not any("thought_signature" in part for item in contents for part in item["parts"]):
        return contents
    decoded = copy.deepcopy(contents)
    for item in decoded:
        for part in item["parts"]:
            if "thought_signature" in part:
                try:
                    part["thought_signature"] = base64.b64decode(part["thought_signature"], validate=True)
                except (binascii.Error, ValueError):
                    part.pop("thought_signature")
    return decoded


def _enum_name(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


def _usage(meta: Any) -> Usage:
    if meta is None:
        return Usage()
    return Usage(
        input_tokens=(meta.prompt_token_count or 0) + (meta.tool_use_prompt_token_count or 0),
        output_tokens=(meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0),
        cached_input_tokens=meta.cached_content_token_count or 0,
    )


@dataclass
class _Answer(Received):
    """What the chunks of one answer (one chunk when not streaming) add up to."""

    calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    finish_message: str | None = None
    model: str = ""
    usage: Usage = field(default_factory=Usage)

    def add(self, chunk: types.GenerateContentResponse, clock: AttemptClock) -> None:
        """Fold one response chunk in; raise the failure a block signal in it means."""
        if chunk.sdk_http_response is not None and chunk.sdk_http_response.headers:
            self.headers.update({k.lower(): v for k, v in chunk.sdk_http_response.headers.items()})
        self.model = chunk.model_version or self.model
        self.response_id = chunk.response_id or self.response_id
        if chunk.usage_metadata is not None:
            self.usage = _usage(chunk.usage_metadata)
        feedback = chunk.prompt_feedback
        if feedback is not None:
            failure = gemini_block_failure(
                _enum_name(feedback.block_reason), feedback.block_reason_message, partial_text=self.text
            )
            if failure is not None:
                raise failure
        for candidate in (chunk.candidates or [])[:1]:
            if candidate.index not in (0, None):
                continue
            content = candidate.content
            for part in (content.parts if content is not None else None) or ():
                if part.thought:
                    continue
                if part.text:
                    self.text_parts.append(part.text)
                    clock.mark_token()
                if part.function_call is not None:
                    fc = part.function_call
                    signature = (
                        base64.b64encode(part.thought_signature).decode("ascii")
                        if part.thought_signature
                        else ""
                    )
                    self.calls.append(
                        ToolCall(
                            id=fc.id or f"{_SYNTHETIC_ID_PREFIX}{uuid.uuid4().hex[:12]}",
                            name=fc.name or "",
                            arguments=dict(fc.args or {}),
                            signature=signature,
                        )
                    )
                    call = self.calls[-1]  # Gemini sends a call whole: one piece
                    self.tool_piece(len(self.calls) - 1, call.id, call.name, json.dumps(call.arguments))
                    clock.mark_token()
            if candidate.finish_reason is not None:
                self.finish_reason = _enum_name(candidate.finish_reason)
                self.finish_message = candidate.finish_message

    def finish(self, *, streamed: bool) -> None:
        """Raise unless the answer ended normally (STOP / MAX_TOKENS)."""
        if self.finish_reason is None and not streamed:
            raise AttemptFailure(
                OutcomeKind.SERVER_ERROR, "gemini answer has no candidate with a finishReason"
            )
        failure = gemini_finish_failure(self.finish_reason, self.finish_message, partial_text=self.text)
        if failure is not None:
            raise failure

    def reply(self, requested_model: str) -> Reply:
        """The finished answer; ``requested_model`` when Gemini named no model version."""
        return Reply(
            text=self.text,
            tool_calls=tuple(self.calls),
            model=self.model or requested_model,
            usage=self.usage,
            stop_reason=self.finish_reason or "",
            response_id=self.response_id,
        )


class GeminiAdapter(VendorAdapter[_Answer]):
    """:class:`~toolbag.providers.base.Adapter` for the Gemini API (``generateContent``).

    One ``genai.Client`` (kept referenced; no ``retry_options``) over one ``httpx2`` pool sized for
    ``max_connections`` concurrent calls; per-attempt options go in each call's config, so the instance is
    thread-safe. Streamed responses are closed explicitly when a stream ends early.
    """

    kind: ProviderKind = "gemini"

    def __init__(self, *, api_key: str, base_url: str | None = None, max_connections: int = 200) -> None:
        super().__init__(api_key=api_key)
        self.base_url = base_url
        self._local = threading.local()
        options = types.HttpOptions(
            base_url=base_url,
            api_version=API_VERSION,
            client_args={
                "limits": http_limits(max_connections),
                "event_hooks": {"response": [self._remember_response]},
            },
        )
        self._client = genai.Client(api_key=api_key, http_options=options)
        self._aio = ClientShards(self._new_aio_client, max_connections)  # made on the loop that uses them

    def __repr__(self) -> str:
        return f"GeminiAdapter(base_url={self.base_url!r})"

    def close(self) -> None:
        self._client.close()

    async def aclose(self) -> None:
        for client in self._aio.take_all():
            await client.aio.aclose()

    def _new_aio_client(self, connections: int) -> genai.Client:
        options = types.HttpOptions(
            base_url=self.base_url, api_version=API_VERSION, async_client_args={"limits": http_limits(connections)}
        )
        return genai.Client(api_key=self._secrets[0], http_options=options)

    def _remember_response(self, response: httpx2.Response) -> None:
        self._local.response = response

    # ------------------------------------------------------------------------------------ request

    def wire_request(self, model: str, request: ModelRequest) -> dict[str, Any]:
        """``models.generate_content`` keyword arguments for ``request`` (JSON-serializable; thought
        signatures as base64 text). Streaming uses ``generate_content_stream`` with the same arguments."""
        config: dict[str, Any] = {
            "max_output_tokens": request.max_output_tokens,
            "automatic_continuation": False,
        }
        if request.system:
            config["system_instruction"] = request.system
        if request.tools:
            config["tools"] = [
                {
                    "function_declarations": [
                        {"name": t.name, "description": t.description, "parameters_json_schema": t.parameters}
                        for t in request.tools
                    ]
                }
            ]
            config["automatic_function_calling"] = {"disable": True}
        if request.tool_choice is not None:
            choice = request.tool_choice
            calling: dict[str, Any] = {"mode": {"auto": "AUTO", "none": "NONE"}.get(choice.mode, "ANY")}
            if choice.mode == "tool":
                calling["allowed_function_names"] = [choice.name]
            config["tool_config"] = {"function_calling_config": calling}
        if request.json_schema is not None:
            config["response_mime_type"] = "application/json"
            config["response_json_schema"] = request.json_schema
        return {
            "model": model,
            "contents": [_content(m) for m in request.messages],
            "config": config,
        }

    # --------------------------------------------------------------------------------------- call

    def _new_received(self) -> _Answer:
        return _Answer()

    def _call_arguments(self, wire: dict[str, Any], request: ModelRequest, clock: AttemptClock) -> dict[str, Any]:
        timeout_ms = max(1, round(clock.read_timeout_s(request.stream) * 1000))
        http_options: dict[str, Any] = {"timeout": timeout_ms}
        if request.extra_headers:
            http_options["headers"] = dict(request.extra_headers)
        return {
            "model": wire["model"],
            "contents": _sdk_contents(wire["contents"]),
            "config": {**wire["config"], "http_options": http_options},
        }

    def _send(self, arguments: dict[str, Any], clock: AttemptClock, answer: _Answer) -> Reply:
        try:
            answer.add(self._client.models.generate_content(**arguments), clock)
        finally:
            self._local.response = None  # the hook keeps each thread's last response; do not retain it
        answer.finish(streamed=False)
        return answer.reply(arguments["model"])

    def _stream(self, arguments: dict[str, Any], clock: AttemptClock, answer: _Answer) -> Reply:
        self._local.response = None
        chunks = self._client.models.generate_content_stream(**arguments)
        try:
            for chunk in chunks:
                answer.add(chunk, clock)
                if answer.finish_reason is None:
                    clock.check(answer.text)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
            response: httpx2.Response | None = getattr(self._local, "response", None)
            self._local.response = None
            if response is not None:
                response.close()
        answer.finish(streamed=True)
        return answer.reply(arguments["model"])

    async def _asend(self, arguments: dict[str, Any], clock: AttemptClock, answer: _Answer) -> Reply:
        with self._aio.use() as client:
            answer.add(await client.aio.models.generate_content(**arguments), clock)
        answer.finish(streamed=False)
        return answer.reply(arguments["model"])

    async def _astream(self, arguments: dict[str, Any], clock: AttemptClock, answer: _Answer) -> Reply:
        with self._aio.use() as client:
            chunks = await client.aio.models.generate_content_stream(**arguments)
            try:
                async for chunk in chunks:
                    answer.add(chunk, clock)
                    if answer.finish_reason is None:
                        clock.check(answer.text)
            finally:
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:
                    await aclose()  # the generator's own cleanup closes the HTTP response
        answer.finish(streamed=True)
        return answer.reply(arguments["model"])
