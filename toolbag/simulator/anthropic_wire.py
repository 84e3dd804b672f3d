"""Anthropic Messages API wire format (``POST /v1/messages``): bodies, ``event:``-framed streams, errors, headers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .faults import DEFAULT_RETRY_AFTER_S, Fault, RateLimitInfo
from .generate import Reply, count_tokens, new_id, text_pieces
from .request import RequestError, SimRequest, ToolDef, ToolResultIn, Turn
from .wire import AnswerMode, Headers, HttpError, StreamEvent, Wire, retry_after_headers, rfc3339_in, sse

REFUSAL_EXPLANATION = "The simulated model declined this request."


def _text_of(content: Any) -> str:
    """Text of a string or a list of content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


def _error_body(kind: str, message: str, rid: str, error_code: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": kind, "message": message}
    if error_code is not None:
        error["details"] = {"error_code": error_code}
    return {"type": "error", "error": error, "request_id": rid}


class AnthropicWire(Wire):
    """``/v1/messages``: ``event:``-framed SSE, ``{"type": "error", ...}`` bodies, 529 for overload."""

    vendor = "anthropic"

    def authorized(self, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
        if headers.get("x-api-key"):
            return True
        auth = headers.get("authorization", "")
        return auth.startswith("Bearer ") and len(auth) > 7

    # ------------------------------------------------------------------ request

    def parse(self, body: Any, *, model: str | None, stream: bool | None) -> SimRequest:
        if not isinstance(body, dict):
            raise RequestError("request body must be a JSON object")
        model_name = body.get("model")
        if not isinstance(model_name, str) or not model_name:
            raise RequestError("model: Field required")
        messages = body.get("messages")
        if not isinstance(messages, list):
            raise RequestError("messages: Field required")
        max_tokens = body.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise RequestError("max_tokens: Field required (a positive integer)")
        names: dict[str, str] = {}
        turns: list[Turn] = []
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
                raise RequestError(f"messages.{i}.role: Input should be 'user' or 'assistant'")
            content = message.get("content")
            turn = Turn(role=message["role"], text=_text_of(content))
            if isinstance(content, list):
                for block in content:
                    if not isinstance(block, dict):
                        continue
                    if block.get("type") == "tool_use":
                        names[str(block.get("id"))] = str(block.get("name", ""))
                    elif block.get("type") == "tool_result":
                        call_id = str(block.get("tool_use_id", ""))
                        turn.tool_results.append(
                            ToolResultIn(call_id, names.get(call_id, ""), _text_of(block.get("content", "")))
                        )
            turns.append(turn)
        tools = [
            ToolDef(str(t["name"]), t.get("input_schema") or {})
            for t in body.get("tools") or []
            if isinstance(t, dict) and "name" in t
        ]
        system_raw = body.get("system", "")
        marked = isinstance(body.get("cache_control"), dict) or (isinstance(system_raw, list) and any(
            isinstance(b, dict) and isinstance(b.get("cache_control"), dict) for b in system_raw))
        schema = None
        fmt = (body.get("output_config") or {}).get("format") if isinstance(body.get("output_config"), dict) else None
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            schema = fmt.get("schema") or {}
        return SimRequest(
            vendor=self.vendor,
            model=model_name,
            system=_text_of(system_raw),
            turns=turns,
            stream=bool(body.get("stream", False)),
            tools=tools,
            json_schema=schema,
            max_tokens=max_tokens,
            cache_prefix=_text_of(system_raw) if marked else "",
            prefill=turns[-1].text if turns and turns[-1].role == "assistant" else "",
        )

    # ------------------------------------------------------------------ answers

    @staticmethod
    def _usage(reply: Reply, output_tokens: int) -> dict[str, Any]:
        """Anthropic's usage: ``input_tokens`` leaves out what was read from or written to the cache."""
        return {
            "input_tokens": reply.input_tokens - reply.cache_read_tokens - reply.cache_write_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": reply.cache_write_tokens,
            "cache_read_input_tokens": reply.cache_read_tokens,
            "service_tier": "standard",
        }

    @staticmethod
    def _stop_details() -> dict[str, Any]:
        return {"type": "refusal", "category": "general_harms", "explanation": REFUSAL_EXPLANATION}

    @staticmethod
    def _stop_reason(reply: Reply) -> str:
        if reply.tool_calls:
            return "tool_use"
        return "max_tokens" if reply.truncated else "end_turn"

    def body(self, req: SimRequest, reply: Reply, mode: AnswerMode, rid: str) -> dict[str, Any]:
        message: dict[str, Any] = {
            "id": new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": req.model,
            "content": [],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "stop_details": None,
            "usage": self._usage(reply, reply.output_tokens),
        }
        if mode in ("refusal", "refusal_filter", "refusal_finish", "midstream_refusal"):
            message["stop_reason"] = "refusal"
            message["stop_details"] = self._stop_details()
            message["usage"]["output_tokens"] = 1
            return message
        content: list[dict[str, Any]] = message["content"]
        if reply.text:
            content.append({"type": "text", "text": reply.text})
        for call in reply.tool_calls:
            content.append({"type": "tool_use", "id": call.id or new_id("toolu_"), "name": call.name,
                            "input": call.arguments})
        message["stop_reason"] = self._stop_reason(reply)
        return message

    def stream(self, req: SimRequest, reply: Reply, mode: AnswerMode, rid: str) -> list[StreamEvent]:
        start = {
            "type": "message_start",
            "message": {
                "id": new_id("msg_"),
                "type": "message",
                "role": "assistant",
                "model": req.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "stop_details": None,
                "usage": self._usage(reply, 1),
            },
        }
        events = [StreamEvent(sse(start, "message_start"))]
        refused = mode in ("refusal", "refusal_filter", "refusal_finish")
        pieces = [] if refused else text_pieces(reply.text, is_json=reply.is_json)
        if mode in ("midstream_error", "midstream_refusal"):
            pieces = pieces[: max(1, len(pieces) // 2)]
        index = 0
        if pieces:
            events.append(StreamEvent(sse({"type": "content_block_start", "index": 0,
                                           "content_block": {"type": "text", "text": ""}}, "content_block_start")))
            events.append(StreamEvent(sse({"type": "ping"}, "ping")))
            for piece in pieces:
                delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
                events.append(StreamEvent(sse(delta, "content_block_delta"), True, count_tokens(piece)))
            if mode != "midstream_error":
                events.append(StreamEvent(sse({"type": "content_block_stop", "index": 0}, "content_block_stop")))
            index = 1
        if mode == "midstream_error":
            error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"},
                     "request_id": rid}
            events.append(StreamEvent(sse(error, "error")))
            return events
        if not refused and mode != "midstream_refusal":
            for call in reply.tool_calls:
                block = {"type": "tool_use", "id": call.id or new_id("toolu_"), "name": call.name, "input": {}}
                events.append(StreamEvent(sse({"type": "content_block_start", "index": index,
                                               "content_block": block}, "content_block_start")))
                args = json.dumps(call.arguments)
                for piece in text_pieces(args, is_json=True) or [""]:
                    delta = {"type": "content_block_delta", "index": index,
                             "delta": {"type": "input_json_delta", "partial_json": piece}}
                    events.append(StreamEvent(sse(delta, "content_block_delta"), True, count_tokens(piece)))
                events.append(StreamEvent(sse({"type": "content_block_stop", "index": index},
                                              "content_block_stop")))
                index += 1
        delta_body: dict[str, Any] = {"stop_reason": self._stop_reason(reply), "stop_sequence": None,
                                      "stop_details": None}
        output_tokens = reply.output_tokens
        if refused or mode == "midstream_refusal":
            delta_body["stop_reason"] = "refusal"
            delta_body["stop_details"] = self._stop_details()
            output_tokens = sum(count_tokens(p) for p in pieces) if pieces else 1
        message_delta = {"type": "message_delta", "delta": delta_body,
                         "usage": {k: v for k, v in self._usage(reply, output_tokens).items()
                                   if k != "service_tier"}}
        events.append(StreamEvent(sse(message_delta, "message_delta")))
        events.append(StreamEvent(sse({"type": "message_stop"}, "message_stop")))
        return events

    def malformed_event(self) -> bytes:
        return b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, "delta": {"te\n\n'

    # ------------------------------------------------------------------ errors

    def error(self, fault: Fault, req: SimRequest | None, rid: str) -> HttpError:
        name = fault.name
        if name == "rate_limit":
            seconds = fault.seconds if fault.seconds is not None else DEFAULT_RETRY_AFTER_S
            headers = retry_after_headers(seconds, with_ms=True)
            headers["anthropic-ratelimit-requests-remaining"] = "0"
            message = ("This request would exceed the rate limit for your organization of 50 requests per "
                       "minute. For details, refer to: https://docs.claude.com/en/api/rate-limits.")
            return HttpError(429, _error_body("rate_limit_error", message, rid), headers)
        if name == "rate_limit_bare":
            return HttpError(429, _error_body("rate_limit_error", "Number of request tokens has exceeded your "
                                              "per-minute rate limit.", rid))
        if name in ("overloaded", "midstream_error"):
            return HttpError(529, _error_body("overloaded_error", "Overloaded", rid))
        if name == "server_error":
            return HttpError(500, _error_body("api_error", "Internal server error", rid))
        if name == "unavailable":
            return HttpError(503, _error_body("api_error", "Service unavailable", rid))
        if name == "context_length":
            tokens, limit = fault.context_tokens(count_tokens(req.text) if req is not None else 0, 200_000, 250_000)
            message = f"prompt is too long: {tokens} tokens > {limit} maximum"
            return HttpError(400, _error_body("invalid_request_error", message, rid))
        if name == "quota":
            if fault.param == "spend_limit":
                message = ("You have reached your specified workspace API usage limits. You will regain access "
                           "on the first day of next month.")
                return HttpError(429, _error_body("rate_limit_error", message, rid, "enforced_spend_limit_reached"))
            message = ("Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing "
                       "to upgrade or purchase credits.")
            return HttpError(402, _error_body("billing_error", message, rid))
        if name == "auth":
            return HttpError(401, _error_body("authentication_error", "invalid x-api-key", rid))
        if name == "permission":
            return HttpError(403, _error_body("permission_error", "Your API key does not have permission to "
                                              "use the specified resource.", rid))
        return HttpError(400, _error_body("invalid_request_error", "messages: simulated invalid request", rid))

    def invalid(self, message: str, rid: str) -> HttpError:
        return HttpError(400, _error_body("invalid_request_error", message, rid))

    def unauthenticated(self, rid: str) -> HttpError:
        return HttpError(401, _error_body("authentication_error", "x-api-key header is required", rid))

    def headers(self, model: str, rid: str, limits: RateLimitInfo) -> Headers:
        reset = rfc3339_in(limits.reset_s)
        key = (limits, reset)
        static = self._header_cache.get(key)
        if static is None:
            static = self._static_headers(limits, reset.encode())
            if len(self._header_cache) > 64:
                self._header_cache.clear()
            self._header_cache[key] = static
        return [(b"request-id", rid.encode()), *static]

    _header_cache: dict[tuple[RateLimitInfo, str], Headers] = {}

    @staticmethod
    def _static_headers(limits: RateLimitInfo, reset: bytes) -> Headers:
        headers: Headers = [(b"anthropic-organization-id", b"00000000-0000-4000-8000-000000000000")]
        for kind, limit, remaining in (
            ("requests", limits.requests_limit, limits.requests_remaining),
            ("tokens", limits.tokens_limit, limits.tokens_remaining),
            ("input-tokens", limits.tokens_limit, limits.tokens_remaining),
            ("output-tokens", limits.tokens_limit, limits.tokens_remaining),
        ):
            prefix = f"anthropic-ratelimit-{kind}-"
            headers.append(((prefix + "limit").encode(), str(limit).encode()))
            headers.append(((prefix + "remaining").encode(), str(remaining).encode()))
            headers.append(((prefix + "reset").encode(), reset))
        return headers
