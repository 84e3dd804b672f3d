"""Gemini (Developer API) wire format: ``generateContent`` / ``streamGenerateContent?alt=sse`` on v1 and v1beta.

Request keys are read in both spellings (the SDK mixes camelCase and snake_case); user
schemas and function arguments are left untouched. Streams are ``data:``-only (an ``event:`` line breaks the
SDK), success is exactly HTTP 200, errors are ``google.rpc.Status`` bodies.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .faults import DEFAULT_RETRY_AFTER_S, Fault, RateLimitInfo
from .generate import Reply, count_tokens, new_id, text_pieces
from .request import RequestError, SimRequest, ToolDef, ToolResultIn, Turn
from .wire import AnswerMode, Headers, HttpError, StreamEvent, Wire, dumps, sse

_RPC = "type.googleapis.com/google.rpc."
_BLOCKED_RATING = {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}
_FINISH_RATING = {"category": "HARM_CATEGORY_HARASSMENT", "probability": "MEDIUM", "blocked": True}


def field(obj: Any, camel: str) -> Any:
    """``obj[camel]``, or the snake_case spelling of the same key."""
    if not isinstance(obj, dict):
        return None
    if camel in obj:
        return obj[camel]
    snake = "".join("_" + c.lower() if c.isupper() else c for c in camel)
    return obj.get(snake)


def _status(code: int, status: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return {"error": error}


def _result_text(response: Any) -> str:
    """A functionResponse's ``response`` as text: its ``result``/``output`` value, else JSON."""
    if isinstance(response, dict):
        for key in ("result", "output", "content"):
            if key in response and len(response) == 1:
                value = response[key]
                return value if isinstance(value, str) else json.dumps(value)
    return response if isinstance(response, str) else json.dumps(response)


class GeminiWire(Wire):
    """``/{v1,v1beta}/models/{model}:generateContent`` and ``:streamGenerateContent``."""

    vendor = "gemini"

    def authorized(self, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
        return bool(headers.get("x-goog-api-key") or query.get("key"))

    def parse(self, body: Any, *, model: str | None, stream: bool | None) -> SimRequest:
        if not isinstance(body, dict):
            raise RequestError("Invalid JSON payload received. Expected an object.")
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise RequestError("* GenerateContentRequest.contents: contents is not specified")
        turns: list[Turn] = []
        for i, content in enumerate(contents):
            if not isinstance(content, dict):
                raise RequestError(f"Invalid value at 'contents[{i}]': expected a Content object.")
            turn = Turn(role="assistant" if content.get("role") == "model" else "user")
            texts: list[str] = []
            for part in content.get("parts") or []:
                if not isinstance(part, dict):
                    continue
                if isinstance(part.get("text"), str) and not part.get("thought"):
                    texts.append(part["text"])
                response = field(part, "functionResponse")
                if isinstance(response, dict):
                    turn.tool_results.append(ToolResultIn(str(response.get("id") or ""), str(response.get("name", "")),
                                                          _result_text(response.get("response"))))
            turn.text = "\n".join(texts)
            turns.append(turn)
        system_raw = field(body, "systemInstruction")
        if isinstance(system_raw, dict):
            system = "\n".join(str(p.get("text", "")) for p in system_raw.get("parts") or [] if isinstance(p, dict))
        else:
            system = system_raw if isinstance(system_raw, str) else ""
        tools: list[ToolDef] = []
        for tool in body.get("tools") or []:
            for decl in field(tool, "functionDeclarations") or []:
                if isinstance(decl, dict) and "name" in decl:
                    params = field(decl, "parametersJsonSchema") or decl.get("parameters") or {}
                    tools.append(ToolDef(str(decl["name"]), params))
        config = field(body, "generationConfig") or {}
        schema = field(config, "responseJsonSchema") or field(config, "responseSchema")
        mime = field(config, "responseMimeType")
        max_tokens = field(config, "maxOutputTokens")
        return SimRequest(
            vendor=self.vendor,
            model=(model or "").removeprefix("models/"),
            system=system,
            turns=turns,
            stream=bool(stream),
            tools=tools,
            json_schema=schema if isinstance(schema, dict) else None,
            json_mode=mime == "application/json" and not isinstance(schema, dict),
            max_tokens=int(max_tokens) if isinstance(max_tokens, int | str) and str(max_tokens).isdigit() else None,
            cache_prefix=system,  # implicit caching: a repeated prefix is cached without being asked
        )

    # ------------------------------------------------------------------ answers

    @staticmethod
    def _usage(reply: Reply, candidates: int | None) -> dict[str, Any]:
        prompt = reply.input_tokens
        usage: dict[str, Any] = {"promptTokenCount": prompt,
                                 "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]}
        if reply.cache_read_tokens:  # implicit caching: part of promptTokenCount
            usage["cachedContentTokenCount"] = reply.cache_read_tokens
        if candidates is not None:
            usage["candidatesTokenCount"] = candidates
            usage["totalTokenCount"] = prompt + candidates
        else:
            usage["totalTokenCount"] = prompt
        return usage

    def _envelope(self, req: SimRequest, response_id: str, **fields: Any) -> dict[str, Any]:
        return {**fields, "modelVersion": req.model, "responseId": response_id}

    def _parts(self, reply: Reply) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        if reply.text:
            parts.append({"text": reply.text})
        for call in reply.tool_calls:
            parts.append({"functionCall": {"name": call.name, "args": call.arguments, "id": call.id or new_id("fc_")}})
        return parts

    def chunks(self, req: SimRequest, reply: Reply, mode: AnswerMode) -> list[tuple[dict[str, Any], bool, int]]:
        """The stream as (GenerateContentResponse, carries content, tokens), before SSE framing."""
        response_id = new_id("")
        out: list[tuple[dict[str, Any], bool, int]] = []
        if mode == "refusal":
            feedback = {"blockReason": "SAFETY", "safetyRatings": [_BLOCKED_RATING]}
            body = self._envelope(req, response_id, promptFeedback=feedback,
                                  usageMetadata=self._usage(reply, None))
            return [(body, False, 0)]
        if mode in ("refusal_filter", "refusal_finish"):
            candidate = {"content": {"role": "model"}, "finishReason": "SAFETY", "index": 0,
                         "safetyRatings": [_FINISH_RATING]}
            body = self._envelope(req, response_id, candidates=[candidate],
                                  usageMetadata=self._usage(reply, 0))
            return [(body, False, 0)]
        pieces = text_pieces(reply.text, is_json=reply.is_json)
        if mode in ("midstream_error", "midstream_refusal"):
            pieces = pieces[: max(1, len(pieces) // 2)]
        usage_so_far = self._usage(reply, None)
        for piece in pieces:
            candidate = {"content": {"role": "model", "parts": [{"text": piece}]}, "index": 0}
            out.append((self._envelope(req, response_id, candidates=[candidate], usageMetadata=usage_so_far),
                        True, count_tokens(piece)))
        if mode == "midstream_error":
            error = _status(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
            out.append((error, False, 0))
            return out
        if mode == "midstream_refusal":
            candidate = {"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "SAFETY",
                         "index": 0, "safetyRatings": [_FINISH_RATING]}
            tokens = sum(count_tokens(p) for p in pieces)
            out.append((self._envelope(req, response_id, candidates=[candidate],
                                       usageMetadata=self._usage(reply, tokens)), False, 0))
            return out
        if reply.tool_calls:
            calls = self._parts(Reply(text="", input_tokens=0, output_tokens=0, tool_calls=reply.tool_calls))
            candidate = {"content": {"role": "model", "parts": calls}, "index": 0}
            out.append((self._envelope(req, response_id, candidates=[candidate], usageMetadata=usage_so_far),
                        True, reply.output_tokens))
        finish = "MAX_TOKENS" if reply.truncated else "STOP"
        candidate = {"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": finish, "index": 0}
        out.append((self._envelope(req, response_id, candidates=[candidate],
                                   usageMetadata=self._usage(reply, reply.output_tokens)), False, 0))
        return out

    def body(self, req: SimRequest, reply: Reply, mode: AnswerMode, rid: str) -> dict[str, Any]:
        response_id = new_id("")
        if mode in ("refusal", "midstream_refusal"):
            feedback = {"blockReason": "SAFETY", "safetyRatings": [_BLOCKED_RATING]}
            return self._envelope(req, response_id, promptFeedback=feedback,
                                  usageMetadata=self._usage(reply, None))
        if mode in ("refusal_filter", "refusal_finish"):
            candidate = {"content": {"role": "model"}, "finishReason": "SAFETY", "index": 0,
                         "safetyRatings": [_FINISH_RATING]}
            return self._envelope(req, response_id, candidates=[candidate],
                                  usageMetadata=self._usage(reply, 0))
        candidate = {"content": {"role": "model", "parts": self._parts(reply)},
                     "finishReason": "MAX_TOKENS" if reply.truncated else "STOP", "index": 0}
        return self._envelope(req, response_id, candidates=[candidate],
                              usageMetadata=self._usage(reply, reply.output_tokens))

    def stream(self, req: SimRequest, reply: Reply, mode: AnswerMode, rid: str) -> list[StreamEvent]:
        return [StreamEvent(sse(body), content, tokens) for body, content, tokens in self.chunks(req, reply, mode)]

    def json_array(self, req: SimRequest, reply: Reply, mode: AnswerMode) -> bytes:
        """``streamGenerateContent`` without ``alt=sse``: one JSON array of the chunks."""
        return b"[" + b",\r\n".join(dumps(body) for body, _, _ in self.chunks(req, reply, mode)) + b"]"

    def malformed_event(self) -> bytes:
        return b'data: {"candidates": [{"content": {"role": "model", "parts": [{"te\n\n'

    # ------------------------------------------------------------------ errors

    def error(self, fault: Fault, req: SimRequest | None, rid: str) -> HttpError:
        name = fault.name
        model = req.model if req is not None else "gemini"
        if name in ("rate_limit", "rate_limit_bare"):
            message = "Resource has been exhausted (e.g. check quota)."
            if name == "rate_limit_bare":
                return HttpError(429, _status(429, "RESOURCE_EXHAUSTED", message))
            seconds = fault.seconds if fault.seconds is not None else DEFAULT_RETRY_AFTER_S
            details: list[dict[str, Any]] = [
                {"@type": _RPC + "QuotaFailure", "violations": [{
                    "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                    "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
                    "quotaDimensions": {"location": "global", "model": model},
                    "quotaValue": "60"}]},
                {"@type": _RPC + "Help", "links": [{"description": "Learn more about Gemini API quotas",
                                                     "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
                {"@type": _RPC + "RetryInfo", "retryDelay": f"{seconds:g}s"},
            ]
            return HttpError(429, _status(429, "RESOURCE_EXHAUSTED", message, details))
        if name == "quota":
            message = ("You exceeded your current quota, please check your plan and billing details. For more "
                       "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.")
            details = [
                {"@type": _RPC + "QuotaFailure", "violations": [{
                    "quotaMetric": "generativelanguage.googleapis.com/generate_content_paid_tier_requests",
                    "quotaId": "GenerateRequestsPerDayPerProjectPerModel",
                    "quotaDimensions": {"location": "global", "model": model},
                    "quotaValue": "0"}]},
                {"@type": _RPC + "Help", "links": [{"description": "Check your plan and billing details",
                                                     "url": "https://ai.google.dev/gemini-api/docs/billing"}]},
            ]
            return HttpError(429, _status(429, "RESOURCE_EXHAUSTED", message, details))
        if name in ("overloaded", "midstream_error"):
            return HttpError(503, _status(503, "UNAVAILABLE", "The model is overloaded. Please try again later."))
        if name == "unavailable":
            return HttpError(503, _status(503, "UNAVAILABLE", "The service is currently unavailable."))
        if name == "server_error":
            return HttpError(500, _status(500, "INTERNAL", "An internal error has occurred. Please retry or "
                                          "report in https://developers.generativeai.google/guide/troubleshooting"))
        if name == "context_length":
            tokens, limit = fault.context_tokens(count_tokens(req.text) if req is not None else 0, 1_048_576,
                                                 2_000_000)
            message = f"The input token count ({tokens}) exceeds the maximum number of tokens allowed ({limit})."
            return HttpError(400, _status(400, "INVALID_ARGUMENT", message))
        if name == "auth":
            details = [{"@type": _RPC + "ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"}}]
            return HttpError(401, _status(401, "UNAUTHENTICATED", "API key not valid. Please pass a valid API key.",
                                          details))
        if name == "permission":
            return HttpError(403, _status(403, "PERMISSION_DENIED",
                                          "The caller does not have permission to access this model."))
        return HttpError(400, _status(400, "INVALID_ARGUMENT", "Request contains an invalid argument."))

    def invalid(self, message: str, rid: str) -> HttpError:
        return HttpError(400, _status(400, "INVALID_ARGUMENT", message))

    def unauthenticated(self, rid: str) -> HttpError:
        message = ("Method doesn't allow unregistered callers (callers without established identity). Please use "
                   "API Key or other form of API consumer identity to call this API.")
        return HttpError(401, _status(401, "UNAUTHENTICATED", message))

    def headers(self, model: str, rid: str, limits: RateLimitInfo) -> Headers:
        return [(b"x-request-id", rid.encode())]
