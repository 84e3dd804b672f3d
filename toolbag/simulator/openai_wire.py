"""OpenAI wire formats, Chat Completions and Responses: bodies, streams, errors, rate-limit headers."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from .faults import DEFAULT_RETRY_AFTER_S, Fault, RateLimitInfo
from .generate import Reply, count_tokens, new_id, text_pieces
from .request import RequestError, SimRequest, ToolDef, ToolResultIn, Turn
from .wire import AnswerMode, Headers, HttpError, StreamEvent, Wire, go_duration, retry_after_headers, sse

REFUSAL_TEXT = "I'm sorry, but I can't help with that request."


def _text_of(content: Any) -> str:
    """Text of a string or a list of content parts (``text``, ``input_text``, ``output_text``)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") in ("text", "input_text", "output_text")
        )
    return ""


def _error(message: str, kind: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class _OpenAIBase(Wire):
    """Auth, errors and headers shared by Chat Completions and Responses."""

    vendor = "openai"
    context_message = (
        "This model's maximum context length is {limit} tokens. However, your messages resulted in {tokens} "
        "tokens. Please reduce the length of the messages."
    )
    context_param = "messages"

    def authorized(self, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
        auth = headers.get("authorization", "")
        return auth.startswith("Bearer ") and len(auth) > 7

    def error(self, fault: Fault, req: SimRequest | None, rid: str) -> HttpError:
        name = fault.name
        model = req.model if req is not None else "the model"
        if name in ("rate_limit", "rate_limit_bare"):
            seconds = fault.seconds if fault.seconds is not None else DEFAULT_RETRY_AFTER_S
            message = (
                f"Rate limit reached for {model} in organization org-sim on requests per min (RPM): Limit 3, "
                f"Used 3, Requested 1. Please try again in {go_duration(seconds)}. Visit "
                "https://platform.openai.com/account/rate-limits to learn more."
            )
            headers: dict[str, str] = {"x-ratelimit-remaining-requests": "0"}
            if name == "rate_limit":
                headers.update(retry_after_headers(seconds, with_ms=True))
                headers["x-ratelimit-reset-requests"] = go_duration(seconds)
            return HttpError(429, _error(message, "requests", "rate_limit_exceeded"), headers)
        if name in ("overloaded", "midstream_error"):
            return HttpError(503, _error("The engine is currently overloaded, please try again later.",
                                         "server_error", None))
        if name == "server_error":
            return HttpError(500, _error("The server had an error while processing your request. Sorry about "
                                         "that!", "server_error", None))
        if name == "unavailable":
            return HttpError(503, _error("Service Unavailable", "server_error", None))
        if name == "context_length":
            tokens, limit = fault.context_tokens(count_tokens(req.text) if req is not None else 0, 128_000, 250_000)
            return HttpError(400, _error(self.context_message.format(tokens=tokens, limit=limit),
                                         "invalid_request_error", "context_length_exceeded", self.context_param))
        if name == "quota":
            message = ("You exceeded your current quota, please check your plan and billing details. For more "
                       "information on this error, read the docs: "
                       "https://platform.openai.com/docs/guides/error-codes/api-errors.")
            return HttpError(429, _error(message, "insufficient_quota", "insufficient_quota"))
        if name == "auth":
            message = ("Incorrect API key provided: sk-sim***. You can find your API key at "
                       "https://platform.openai.com/account/api-keys.")
            return HttpError(401, _error(message, "invalid_request_error", "invalid_api_key"))
        if name == "permission":
            message = "You have insufficient permissions for this operation. Missing scopes: model.request."
            return HttpError(403, _error(message, "invalid_request_error", None))
        return HttpError(400, _error(f"Invalid value for '{self.context_param}': simulated invalid request.",
                                     "invalid_request_error", "invalid_value", self.context_param))

    def invalid(self, message: str, rid: str) -> HttpError:
        return HttpError(400, _error(message, "invalid_request_error", None))

    def unauthenticated(self, rid: str) -> HttpError:
        message = ("You didn't provide an API key. You need to provide your API key in an Authorization header "
                   "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        return HttpError(401, _error(message, "invalid_request_error", None))

    _header_cache: dict[RateLimitInfo, Headers] = {}

    def headers(self, model: str, rid: str, limits: RateLimitInfo) -> Headers:
        static = self._header_cache.get(limits)
        if static is None:
            reset = go_duration(limits.reset_s).encode()
            static = [
                (b"openai-organization", b"org-sim"),
                (b"openai-processing-ms", b"0"),
                (b"openai-version", b"2020-10-01"),
                (b"x-ratelimit-limit-requests", str(limits.requests_limit).encode()),
                (b"x-ratelimit-limit-tokens", str(limits.tokens_limit).encode()),
                (b"x-ratelimit-remaining-requests", str(limits.requests_remaining).encode()),
                (b"x-ratelimit-remaining-tokens", str(limits.tokens_remaining).encode()),
                (b"x-ratelimit-reset-requests", reset),
                (b"x-ratelimit-reset-tokens", reset),
            ]
            if len(self._header_cache) > 64:
                self._header_cache.clear()
            self._header_cache[limits] = static
        return [(b"x-request-id", rid.encode()), *static]

    @staticmethod
    def _require(body: Any) -> str:
        if not isinstance(body, dict):
            raise RequestError("We could not parse the JSON body of your request.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise RequestError("you must provide a model parameter")
        return model

    @staticmethod
    def _schema(fmt: Any) -> tuple[dict[str, Any] | None, bool]:
        """(json schema, json mode) from a response_format / text.format value."""
        if not isinstance(fmt, dict):
            return None, False
        if fmt.get("type") == "json_object":
            return None, True
        if fmt.get("type") != "json_schema":
            return None, False
        inner = fmt.get("json_schema") if isinstance(fmt.get("json_schema"), dict) else fmt
        schema = inner.get("schema") if isinstance(inner, dict) else None
        return (schema if isinstance(schema, dict) else {}), False


def _add_tool_result(turns: list[Turn], result: ToolResultIn) -> None:
    """Tool results form a user turn of their own (merged while they come back to back)."""
    if turns and turns[-1].role == "user" and turns[-1].tool_results and not turns[-1].text:
        turns[-1].tool_results.append(result)
    else:
        turns.append(Turn(role="user", tool_results=[result]))


class ChatWire(_OpenAIBase):
    """``POST /v1/chat/completions``: ``data:``-only SSE ending with ``data: [DONE]``."""

    def parse(self, body: Any, *, model: str | None, stream: bool | None) -> SimRequest:
        model_name = self._require(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError("Missing required parameter: 'messages'.")
        system: list[str] = []
        turns: list[Turn] = []
        names: dict[str, str] = {}
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                raise RequestError(f"Invalid type for 'messages[{i}]': expected an object.")
            role = message.get("role")
            content = message.get("content")
            if role in ("system", "developer"):
                system.append(_text_of(content))
            elif role == "user":
                turns.append(Turn(role="user", text=_text_of(content)))
            elif role == "assistant":
                for call in message.get("tool_calls") or []:
                    if isinstance(call, dict):
                        names[str(call.get("id"))] = str((call.get("function") or {}).get("name", ""))
                turns.append(Turn(role="assistant", text=_text_of(content)))
            elif role == "tool":
                call_id = str(message.get("tool_call_id", ""))
                _add_tool_result(turns, ToolResultIn(call_id, names.get(call_id, ""), _text_of(content)))
            else:
                raise RequestError(f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', "
                                   f"'user', 'tool', 'function' and 'developer'.")
        tools = []
        for tool in body.get("tools") or []:
            function = tool.get("function") if isinstance(tool, dict) else None
            if isinstance(function, dict) and "name" in function:
                tools.append(ToolDef(str(function["name"]), function.get("parameters") or {}))
        schema, json_mode = self._schema(body.get("response_format"))
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        options = body.get("stream_options")
        return SimRequest(
            vendor=self.vendor,
            model=model_name,
            system="\n".join(system),
            turns=turns,
            stream=bool(body.get("stream", False)),
            tools=tools,
            json_schema=schema,
            json_mode=json_mode,
            max_tokens=max_tokens if isinstance(max_tokens, int) else None,
            include_usage=bool(isinstance(options, dict) and options.get("include_usage")),
            cache_prefix="\n".join(system) if isinstance(body.get("prompt_cache_key"), str) else "",
        )

    @staticmethod
    def _usage(reply: Reply, output_tokens: int | None = None) -> dict[str, Any]:
        out = reply.output_tokens if output_tokens is None else output_tokens
        return {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": out,
            "total_tokens": reply.input_tokens + out,
            "prompt_tokens_details": {"cached_tokens": reply.cache_read_tokens, "audio_tokens": 0,
                                      "cache_write_tokens": reply.cache_write_tokens},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        }

    @staticmethod
    def _finish(reply: Reply) -> str:
        if reply.tool_calls:
            return "tool_calls"
        return "length" if reply.truncated else "stop"

    def body(self, req: SimRequest, reply: Reply, mode: AnswerMode, rid: str) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None, "refusal": None,
                                   "annotations": []}
        finish = self._finish(reply)
        usage = self._usage(reply)
        if mode in ("refusal", "midstream_refusal"):
            message["content"] = None
            message["refusal"] = REFUSAL_TEXT
            finish = "stop"
            usage = self._usage(reply, count_tokens(REFUSAL_TEXT))
        elif mode in ("refusal_filter", "refusal_finish"):
            message["content"] = None
            finish = "content_filter"
            usage = self._usage(reply, 0)
        elif reply.tool_calls:
            message["tool_calls"] = [
                {"id": call.id or new_id("call_"), "type": "function",
                 "function": {"name": call.name, "arguments": json.dumps(call.arguments)}}
                for call in reply.tool_calls
            ]
        return {
            "id": new_id("chatcmpl-"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": "fp_sim",
        }

    def stream(self, req: SimRequest, reply: Reply, mode: AnswerMode, rid: str) -> list[StreamEvent]:
        base = {"id": new_id("chatcmpl-"), "object": "chat.completion.chunk", "created": int(time.time()),
                "model": req.model, "service_tier": "default", "system_fingerprint": "fp_sim"}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                             "logprobs": None}]})

        events = [StreamEvent(chunk({"role": "assistant", "content": "", "refusal": None}))]
        finish = self._finish(reply)
        output_tokens = reply.output_tokens
        if mode == "refusal":
            for piece in text_pieces(REFUSAL_TEXT):
                events.append(StreamEvent(chunk({"refusal": piece}), True, count_tokens(piece)))
            finish, output_tokens = "stop", count_tokens(REFUSAL_TEXT)
        elif mode in ("refusal_filter", "refusal_finish"):
            finish, output_tokens = "content_filter", 0
        else:
            pieces = text_pieces(reply.text, is_json=reply.is_json)
            if mode in ("midstream_error", "midstream_refusal"):
                pieces = pieces[: max(1, len(pieces) // 2)]
                output_tokens = sum(count_tokens(p) for p in pieces)
            for piece in pieces:
                events.append(StreamEvent(chunk({"content": piece}), True, count_tokens(piece)))
            if mode == "midstream_error":
                error = _error("The server had an error while processing your request. Sorry about that!",
                               "server_error", None)
                events.append(StreamEvent(sse(error)))
                return events
            if mode == "midstream_refusal":
                finish = "content_filter"
            else:
                for index, call in enumerate(reply.tool_calls):
                    first = {"index": index, "id": call.id or new_id("call_"), "type": "function",
                             "function": {"name": call.name, "arguments": ""}}
                    events.append(StreamEvent(chunk({"tool_calls": [first]}), True, 1))
                    for piece in text_pieces(json.dumps(call.arguments), is_json=True):
                        delta = {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                        events.append(StreamEvent(chunk(delta), True, count_tokens(piece)))
        events.append(StreamEvent(chunk({}, finish)))
        if req.include_usage:
            events.append(StreamEvent(sse({**base, "choices": [], "usage": self._usage(reply, output_tokens)})))
        events.append(StreamEvent(b"data: [DONE]\n\n"))
        return events

    def malformed_event(self) -> bytes:
        return b'data: {"id": "chatcmpl-sim", "object": "chat.completion.chunk", "choices": [{"delta": {"con\n\n'


class ResponsesWire(_OpenAIBase):
    """``POST /v1/responses``: typed SSE events (``event:`` + ``data.type``), ``response.completed`` last."""

    context_message = "Your input exceeds the context window of this model. Please adjust your input and try again."
    context_param = "input"

    def parse(self, body: Any, *, model: str | None, stream: bool | None) -> SimRequest:
        model_name = self._require(body)
        raw_input = body.get("input")
        turns: list[Turn] = []
        system: list[str] = []
        if isinstance(body.get("instructions"), str):
            system.append(body["instructions"])
        names: dict[str, str] = {}
        if isinstance(raw_input, str):
            turns.append(Turn(role="user", text=raw_input))
        elif isinstance(raw_input, list):
            for item in raw_input:
                if not isinstance(item, dict):
                    continue
                kind = item.get("type", "message")
                if kind == "message" or (kind is None and "role" in item):
                    role = item.get("role")
                    text = _text_of(item.get("content"))
                    if role in ("system", "developer"):
                        system.append(text)
                    elif role in ("user", "assistant"):
                        turns.append(Turn(role=role, text=text))
                elif kind == "function_call":
                    names[str(item.get("call_id"))] = str(item.get("name", ""))
                    turns.append(Turn(role="assistant"))
                elif kind == "function_call_output":
                    call_id = str(item.get("call_id", ""))
                    output = item.get("output")
                    _add_tool_result(turns, ToolResultIn(call_id, names.get(call_id, ""), _text_of(output)))
        elif raw_input is not None:
            raise RequestError("Invalid type for 'input': expected a string or an array of input items.")
        tools = [
            ToolDef(str(t["name"]), t.get("parameters") or {})
            for t in body.get("tools") or []
            if isinstance(t, dict) and t.get("type") == "function" and "name" in t
        ]
        text_cfg = body.get("text")
        schema, json_mode = self._schema(text_cfg.get("format") if isinstance(text_cfg, dict) else None)
        max_tokens = body.get("max_output_tokens")
        return SimRequest(
            vendor=self.vendor,
            model=model_name,
            system="\n".join(system),
            turns=turns,
            stream=bool(body.get("stream", False)),
            tools=tools,
            json_schema=schema,
            json_mode=json_mode,
            max_tokens=max_tokens if isinstance(max_tokens, int) else None,
            cache_prefix="\n".join(system) if isinstance(body.get("prompt_cache_key"), str) else "",
        )

    @staticmethod
    def _usage(reply: Reply, output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": reply.input_tokens,
            "input_tokens_details": {"cached_tokens": reply.cache_read_tokens,
                                     "cache_write_tokens": reply.cache_write_tokens},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": reply.input_tokens + output_tokens,
        }

    def _response(self, req: SimRequest, rid: str, status: str, output: list[dict[str, Any]],
                  usage: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "id": rid,
            "object": "response",
            "created_at": int(time.time()),
            "status": status,
            "model": req.model,
            "output": output,
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [{"type": "function", "name": t.name, "parameters": t.parameters, "strict": None}
                      for t in req.tools],
            "error": None,
            "incomplete_details": None,
            "instructions": req.system or None,
            "max_output_tokens": req.max_tokens,
            "temperature": 1.0,
            "top_p": 1.0,
            "usage": usage,
        }

    @staticmethod
    def _message(mid: str, content: list[dict[str, Any]], status: str = "completed") -> dict[str, Any]:
        return {"type": "message", "id": mid, "status": status, "role": "assistant", "content": content}

    @staticmethod
    def _text_part(text: str) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    @staticmethod
    def _call_item(call_id: str, item_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
        return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name,
                "arguments": arguments, "status": status}

    def body(self, req: SimRequest, reply: Reply, mode: AnswerMode, rid: str) -> dict[str, Any]:
        response_id = new_id("resp_")
        if mode in ("refusal", "midstream_refusal"):
            output = [self._message(new_id("msg_"), [{"type": "refusal", "refusal": REFUSAL_TEXT}])]
            return self._response(req, response_id, "completed", output,
                                  self._usage(reply, count_tokens(REFUSAL_TEXT)))
        if mode in ("refusal_filter", "refusal_finish"):
            response = self._response(req, response_id, "incomplete", [], self._usage(reply, 0))
            response["incomplete_details"] = {"reason": "content_filter"}
            return response
        output = []
        if reply.text:
            status = "incomplete" if reply.truncated else "completed"
            output.append(self._message(new_id("msg_"), [self._text_part(reply.text)], status))
        for call in reply.tool_calls:
            output.append(self._call_item(call.id or new_id("call_"), new_id("fc_"), call.name,
                                          json.dumps(call.arguments), "completed"))
        usage = self._usage(reply, reply.output_tokens)
        if reply.truncated:
            response = self._response(req, response_id, "incomplete", output, usage)
            response["incomplete_details"] = {"reason": "max_output_tokens"}
            return response
        return self._response(req, response_id, "completed", output, usage)

    def stream(self, req: SimRequest, reply: Reply, mode: AnswerMode, rid: str) -> list[StreamEvent]:
        response_id = new_id("resp_")
        events: list[StreamEvent] = []
        seq = 0

        def emit(kind: str, payload: dict[str, Any], content: bool = False, tokens: int = 0) -> None:
            nonlocal seq
            events.append(StreamEvent(sse({"type": kind, "sequence_number": seq, **payload}, kind), content, tokens))
            seq += 1

        initial = self._response(req, response_id, "in_progress", [], None)
        emit("response.created", {"response": initial})
        emit("response.in_progress", {"response": initial})
        output: list[dict[str, Any]] = []
        output_tokens = reply.output_tokens
        if mode in ("refusal_filter", "refusal_finish"):
            final = self._response(req, response_id, "incomplete", [], self._usage(reply, 0))
            final["incomplete_details"] = {"reason": "content_filter"}
            emit("response.incomplete", {"response": final})
            return events
        refusal = mode == "refusal"
        pieces = text_pieces(REFUSAL_TEXT if refusal else reply.text, is_json=reply.is_json)
        partial = mode in ("midstream_error", "midstream_refusal")
        if partial:
            pieces = pieces[: max(1, len(pieces) // 2)]
            output_tokens = sum(count_tokens(p) for p in pieces)
        if pieces:
            mid = new_id("msg_")
            index = len(output)
            emit("response.output_item.added", {"output_index": index, "item": self._message(mid, [], "in_progress")})
            empty_part = {"type": "refusal", "refusal": ""} if refusal else self._text_part("")
            emit("response.content_part.added",
                 {"item_id": mid, "output_index": index, "content_index": 0, "part": empty_part})
            where = {"item_id": mid, "output_index": index, "content_index": 0}
            for piece in pieces:
                if refusal:
                    emit("response.refusal.delta", {**where, "delta": piece}, True, count_tokens(piece))
                else:
                    emit("response.output_text.delta", {**where, "delta": piece, "logprobs": []}, True,
                         count_tokens(piece))
            text = "".join(pieces)
            if mode == "midstream_error":
                message = "The server had an error while processing your request. Sorry about that!"
                emit("error", {"code": "server_error", "message": message, "param": None})
                failed = self._response(req, response_id, "failed", [], None)
                failed["error"] = {"code": "server_error", "message": message}
                emit("response.failed", {"response": failed})
                return events
            if mode == "midstream_refusal":
                item = self._message(mid, [self._text_part(text)], "incomplete")
                final = self._response(req, response_id, "incomplete", [item],
                                       self._usage(reply, output_tokens))
                final["incomplete_details"] = {"reason": "content_filter"}
                emit("response.incomplete", {"response": final})
                return events
            if refusal:
                part = {"type": "refusal", "refusal": text}
                emit("response.refusal.done", {**where, "refusal": text})
                output_tokens = count_tokens(text)
            else:
                part = self._text_part(text)
                emit("response.output_text.done", {**where, "text": text, "logprobs": []})
            emit("response.content_part.done", {**where, "part": part})
            item = self._message(mid, [part], "incomplete" if reply.truncated and not refusal else "completed")
            emit("response.output_item.done", {"output_index": index, "item": item})
            output.append(item)
        if not refusal:
            for call in reply.tool_calls:
                index = len(output)
                call_id, item_id, args = call.id or new_id("call_"), new_id("fc_"), json.dumps(call.arguments)
                emit("response.output_item.added",
                     {"output_index": index, "item": self._call_item(call_id, item_id, call.name, "", "in_progress")})
                for piece in text_pieces(args, is_json=True):
                    emit("response.function_call_arguments.delta",
                         {"item_id": item_id, "output_index": index, "delta": piece}, True, count_tokens(piece))
                emit("response.function_call_arguments.done",
                     {"item_id": item_id, "output_index": index, "name": call.name, "arguments": args})
                item = self._call_item(call_id, item_id, call.name, args, "completed")
                emit("response.output_item.done", {"output_index": index, "item": item})
                output.append(item)
        usage = self._usage(reply, output_tokens)
        if reply.truncated and not refusal:
            final = self._response(req, response_id, "incomplete", output, usage)
            final["incomplete_details"] = {"reason": "max_output_tokens"}
            emit("response.incomplete", {"response": final})
        else:
            emit("response.completed", {"response": self._response(req, response_id, "completed", output, usage)})
        return events

    def malformed_event(self) -> bytes:
        return b'event: response.output_text.delta\ndata: {"type": "response.output_text.delta", "del\n\n'
