"""Unit tests of the adapters' pure parts: normalized request → vendor wire, JSON Schema conversion, error and
refusal classification (on real SDK exception objects), retry-after parsing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from toolbag.providers.adapter import Received, Reply, VendorAdapter
from toolbag.providers.anthropic_provider import AnthropicAdapter
from toolbag.providers.base import (
    Adapter,
    AttemptFailure,
    Message,
    ModelRequest,
    OutcomeKind,
    Timeouts,
    ToolCall,
    ToolResult,
    ToolSpec,
    Usage,
)
from toolbag.providers.clock import AttemptClock
from toolbag.providers.errors import classify
from toolbag.providers.gemini_provider import GeminiAdapter, _Answer, _sdk_contents
from toolbag.providers.headers import parse_retry_after, ratelimit_headers
from toolbag.providers.openai_provider import OpenAIAdapter
from toolbag.providers.reasons import redact_failure
from toolbag.providers.stop_reasons import (
    anthropic_stop_failure,
    gemini_block_failure,
    gemini_finish_failure,
    openai_finish_failure,
)
from toolbag.providers.structured import openai_strict_schema, parse_json_output

WEATHER = ToolSpec(
    name="get_weather",
    description="Get weather",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "score": {"type": "integer", "minimum": 0}},
    "required": ["title"],
}
CONVERSATION = (
    Message("user", "Weather in Paris?"),
    Message(
        "assistant",
        "Let me check.",
        tool_calls=(ToolCall("call_1", "get_weather", {"city": "Paris"}, signature="c2lnbmF0dXJl"),),
    ),
    Message("user", "", tool_results=(ToolResult("call_1", "get_weather", "18C sunny"),)),
)
URL = "http://127.0.0.1:9"


@pytest.fixture(scope="module")
def adapters() -> Iterator[dict[str, Any]]:
    made: dict[str, Any] = {
        "anthropic": AnthropicAdapter(api_key="sk-unit", base_url=URL),
        "openai": OpenAIAdapter(api_key="sk-unit", base_url=URL + "/v1"),
        "openai-compatible": OpenAIAdapter(api_key="sk-unit", base_url=URL + "/v1", kind="openai-compatible"),
        "gemini": GeminiAdapter(api_key="sk-unit", base_url=URL),
    }
    yield made
    for adapter in made.values():
        adapter.close()


def test_adapters_satisfy_the_protocol(adapters: dict[str, Any]) -> None:
    for kind, adapter in adapters.items():
        assert isinstance(adapter, Adapter)
        assert adapter.kind == kind
        assert "sk-unit" not in repr(adapter)


@pytest.mark.parametrize("kind", ["anthropic", "openai", "openai-compatible", "gemini"])
def test_wire_request_is_json_and_deterministic(adapters: dict[str, Any], kind: str) -> None:
    request = ModelRequest(messages=CONVERSATION, system="be brief", tools=(WEATHER,), json_schema=SCHEMA)
    first = adapters[kind].wire_request("m-1", request)
    assert json.loads(json.dumps(first)) == first
    assert adapters[kind].wire_request("m-1", request) == first
    assert "timeout" not in first and "extra_headers" not in first


def test_anthropic_wire(adapters: dict[str, Any]) -> None:
    request = ModelRequest(
        messages=CONVERSATION, system="be brief", tools=(WEATHER,), json_schema=SCHEMA, max_output_tokens=77
    )
    wire = adapters["anthropic"].wire_request("claude-x", request)
    assert wire["model"] == "claude-x" and wire["max_tokens"] == 77 and wire["system"] == "be brief"
    assert wire["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "18C sunny"}]},
    ]
    assert wire["tools"] == [
        {"name": "get_weather", "description": "Get weather", "input_schema": WEATHER.parameters}
    ]
    fmt = wire["output_config"]["format"]
    assert fmt["type"] == "json_schema"
    assert fmt["schema"]["additionalProperties"] is False
    assert fmt["schema"]["required"] == ["title"]  # optional stays optional on Anthropic
    assert "stream" not in wire
    assert adapters["anthropic"].wire_request("m", ModelRequest(messages=CONVERSATION, stream=True))["stream"]


def test_openai_wire(adapters: dict[str, Any]) -> None:
    request = ModelRequest(
        messages=(*CONVERSATION, Message("user", "and tomorrow?")),
        system="be brief",
        tools=(WEATHER,),
        json_schema=SCHEMA,
        json_schema_name="weather report v1",
        stream=True,
    )
    wire = adapters["openai"].wire_request("gpt-x", request)
    assert wire["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C sunny"},
        {"role": "user", "content": "and tomorrow?"},
    ]
    assert wire["max_completion_tokens"] == 1024 and "max_tokens" not in wire
    assert wire["tools"][0] == {"type": "function", "function": {
        "name": "get_weather", "description": "Get weather", "parameters": WEATHER.parameters}}
    rf = wire["response_format"]["json_schema"]
    assert rf["name"] == "weather_report_v1"
    assert rf["strict"] is True
    assert rf["schema"]["required"] == ["title", "score"]
    assert rf["schema"]["additionalProperties"] is False
    assert wire["stream"] is True and wire["stream_options"] == {"include_usage": True}

    compatible = adapters["openai-compatible"].wire_request("llama", request)
    assert compatible["max_tokens"] == 1024 and "max_completion_tokens" not in compatible
    assert compatible["response_format"]["json_schema"]["strict"] is False
    assert compatible["response_format"]["json_schema"]["schema"] == SCHEMA


def test_openai_tool_error_results_are_marked(adapters: dict[str, Any]) -> None:
    message = Message("user", "", tool_results=(ToolResult("c", "t", "boom", is_error=True),))
    wire = adapters["openai"].wire_request("m", ModelRequest(messages=(message,)))
    assert wire["messages"] == [{"role": "tool", "tool_call_id": "c", "content": "[tool error] boom"}]


def test_gemini_wire(adapters: dict[str, Any]) -> None:
    request = ModelRequest(messages=CONVERSATION, system="be brief", tools=(WEATHER,), json_schema=SCHEMA)
    wire = adapters["gemini"].wire_request("gemini-x", request)
    assert wire["model"] == "gemini-x"
    assert wire["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Let me check."},
                {
                    "function_call": {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"},
                    "thought_signature": "c2lnbmF0dXJl",
                },
            ],
        },
        {
            "role": "user",
            "parts": [
                {"function_response": {"name": "get_weather", "response": {"result": "18C sunny"}, "id": "call_1"}}
            ],
        },
    ]
    config = wire["config"]
    assert config["system_instruction"] == "be brief"
    assert config["automatic_continuation"] is False
    assert config["response_mime_type"] == "application/json"
    assert config["response_json_schema"] == SCHEMA
    assert config["tools"][0]["function_declarations"][0]["parameters_json_schema"] == WEATHER.parameters
    # The SDK accepts every one of these arguments as they are.
    genai_types.GenerateContentConfig.model_validate(config)
    for content in wire["contents"]:
        genai_types.Content.model_validate_json(json.dumps(content))


def test_gemini_synthetic_call_ids_are_not_sent_back(adapters: dict[str, Any]) -> None:
    call = ToolCall("tb-gemini-call-abc", "get_weather", {"city": "Oslo"})
    request = ModelRequest(
        messages=(
            Message("assistant", "", tool_calls=(call,)),
            Message("user", "", tool_results=(ToolResult(call.id, "get_weather", "cold", is_error=True),)),
        )
    )
    contents = adapters["gemini"].wire_request("g", request)["contents"]
    assert contents[0]["parts"] == [{"function_call": {"name": "get_weather", "args": {"city": "Oslo"}}}]
    assert contents[1]["parts"] == [
        {"function_response": {"name": "get_weather", "response": {"error": "cold"}}}
    ]


# ----------------------------------------------------------------------------------------- schema


def test_strict_schema_requires_every_property_and_closes_objects() -> None:
    schema = {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}},
            "note": {"type": "string"},
        },
        "$defs": {"Item": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "number"}}}},
    }
    strict = openai_strict_schema(schema)
    assert strict is not None
    assert strict["required"] == ["items", "note"] and strict["additionalProperties"] is False
    item = strict["$defs"]["Item"]
    assert item["required"] == ["a", "b"] and item["additionalProperties"] is False
    assert "required" not in schema  # the caller's schema is not modified


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": True},
        {"type": "object", "additionalProperties": {"type": "string"}},
        {"type": "object", "properties": {"a": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}},
        {"type": "object", "properties": {"a": {"type": "object", "patternProperties": {"x": {}}}}},
        {"type": "array", "items": {"type": "string"}},
    ],
)
def test_strict_schema_falls_back_when_it_cannot_be_faithful(schema: dict[str, Any]) -> None:
    assert openai_strict_schema(schema) is None


def test_parse_json_output() -> None:
    assert parse_json_output('{"a": 1}', vendor="v") == {"a": 1}
    assert parse_json_output('```json\n{"a": 1}\n```', vendor="v") == {"a": 1}
    with pytest.raises(AttemptFailure) as info:
        parse_json_output('{"a": ', vendor="v")
    assert info.value.kind is OutcomeKind.INVALID_OUTPUT
    assert info.value.partial_text == '{"a": '


# ------------------------------------------------------------------------------------- retry-after


def test_parse_retry_after() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"Retry-After": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    date = parse_retry_after({"retry-after": "Wed, 21 Oct 2099 07:28:00 GMT"})
    assert date is not None and date > 1e6


def test_ratelimit_headers_are_lower_cased_and_filtered() -> None:
    headers = {"X-RateLimit-Remaining-Requests": "9", "anthropic-ratelimit-tokens-limit": "5", "server": "x"}
    assert ratelimit_headers(headers) == {
        "x-ratelimit-remaining-requests": "9",
        "anthropic-ratelimit-tokens-limit": "5",
    }


# ------------------------------------------------------------------------------ error classification

_REQ = httpx2.Request("POST", "http://127.0.0.1:9/v1/messages")


def _anthropic_error(status: int, error_type: str, message: str, *, code: str | None = None,
                     headers: dict[str, str] | None = None) -> anthropic.APIStatusError:
    error: dict[str, Any] = {"type": error_type, "message": message}
    if code:
        error["details"] = {"error_code": code}
    body = {"type": "error", "error": error, "request_id": "req_1"}
    response = httpx2.Response(status, headers={"request-id": "req_1", **(headers or {})}, json=body,
                               request=_REQ)
    client = anthropic.Anthropic(api_key="k", base_url=URL)
    return client._make_status_error(json.dumps(body), body=body, response=response)


def _openai_error(status: int, error_type: str, code: str | None, message: str,
                  headers: dict[str, str] | None = None) -> openai.APIStatusError:
    body = {"message": message, "type": error_type, "param": None, "code": code}
    response = httpx2.Response(status, headers={"x-request-id": "req_o", **(headers or {})},
                               json={"error": body}, request=_REQ)
    client = openai.OpenAI(api_key="k", base_url=URL)
    return client._make_status_error(message, body=body, response=response)


def _gemini_error(code: int, status: str, message: str, details: list[dict[str, Any]] | None = None,
                  ) -> genai_errors.APIError:
    body = {"error": {"code": code, "message": message, "status": status, "details": details or []}}
    response = httpx2.Response(code, json=body, request=_REQ)
    try:
        genai_errors.APIError.raise_for_response(response)
    except genai_errors.APIError as err:
        return err
    raise AssertionError("no error raised")


RPC = "type.googleapis.com/google.rpc."


@pytest.mark.parametrize(
    ("exc", "kind", "retry_after_s"),
    [
        (_anthropic_error(429, "rate_limit_error", "slow down", headers={"retry-after": "4"}),
         OutcomeKind.RATE_LIMITED, 4.0),
        (_anthropic_error(429, "rate_limit_error", "cap", code="enforced_spend_limit_reached"),
         OutcomeKind.QUOTA_EXHAUSTED, None),
        (_anthropic_error(402, "billing_error", "Your credit balance is too low"), OutcomeKind.QUOTA_EXHAUSTED,
         None),
        (_anthropic_error(400, "invalid_request_error", "Your credit balance is too low to access the API"),
         OutcomeKind.QUOTA_EXHAUSTED, None),
        (_anthropic_error(529, "overloaded_error", "Overloaded"), OutcomeKind.OVERLOADED, None),
        (_anthropic_error(500, "api_error", "Internal"), OutcomeKind.SERVER_ERROR, None),
        (_anthropic_error(400, "invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum"),
         OutcomeKind.CONTEXT_TOO_LONG, None),
        (_anthropic_error(413, "request_too_large", "Request exceeds the maximum size"),
         OutcomeKind.CONTEXT_TOO_LONG, None),
        (_anthropic_error(400, "invalid_request_error", "max_tokens: must be positive"), OutcomeKind.BAD_REQUEST,
         None),
        (_anthropic_error(401, "authentication_error", "invalid x-api-key"), OutcomeKind.AUTH, None),
        (_anthropic_error(403, "permission_error", "no access"), OutcomeKind.AUTH, None),
        (_anthropic_error(200, "overloaded_error", "Overloaded"), OutcomeKind.OVERLOADED, None),
        (_openai_error(429, "requests", "rate_limit_exceeded", "Rate limit reached",
                       headers={"retry-after-ms": "1500"}), OutcomeKind.RATE_LIMITED, 1.5),
        (_openai_error(429, "insufficient_quota", "insufficient_quota", "You exceeded your current quota"),
         OutcomeKind.QUOTA_EXHAUSTED, None),
        (_openai_error(400, "invalid_request_error", "context_length_exceeded", "maximum context length is 8k"),
         OutcomeKind.CONTEXT_TOO_LONG, None),
        (_openai_error(503, "server_error", None, "The engine is currently overloaded"), OutcomeKind.OVERLOADED,
         None),
        (_openai_error(401, "invalid_request_error", "invalid_api_key", "Incorrect API key"), OutcomeKind.AUTH,
         None),
        (_openai_error(404, "invalid_request_error", "model_not_found", "no such model"), OutcomeKind.BAD_REQUEST,
         None),
        (openai.APIError("boom", _REQ, body={"message": "boom", "type": "server_error", "code": None}),
         OutcomeKind.SERVER_ERROR, None),
        (_gemini_error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).", [
            {"@type": RPC + "QuotaFailure", "violations": [{"quotaId": "GenerateRequestsPerMinutePerProject"}]},
            {"@type": RPC + "RetryInfo", "retryDelay": "7s"}]), OutcomeKind.RATE_LIMITED, 7.0),
        (_gemini_error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
         OutcomeKind.RATE_LIMITED, None),
        (_gemini_error(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota, check billing", [
            {"@type": RPC + "QuotaFailure", "violations": [{"quotaId": "GenerateRequestsPerDayPerProject"}]}]),
         OutcomeKind.QUOTA_EXHAUSTED, None),
        (_gemini_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", [
            {"@type": RPC + "ErrorInfo", "reason": "API_KEY_INVALID"}]), OutcomeKind.AUTH, None),
        (_gemini_error(400, "INVALID_ARGUMENT",
                       "The input token count (2000000) exceeds the maximum number of tokens allowed (1048576)."),
         OutcomeKind.CONTEXT_TOO_LONG, None),
        (_gemini_error(503, "UNAVAILABLE", "The model is overloaded."), OutcomeKind.OVERLOADED, None),
        (_gemini_error(500, "INTERNAL", "An internal error has occurred."), OutcomeKind.SERVER_ERROR, None),
        (_gemini_error(403, "PERMISSION_DENIED", "denied"), OutcomeKind.AUTH, None),
        (_gemini_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument."), OutcomeKind.BAD_REQUEST,
         None),
        (httpx2.ReadTimeout("timed out"), OutcomeKind.TIMEOUT, None),
        (httpx2.ConnectTimeout("timed out"), OutcomeKind.TIMEOUT, None),
        (httpx2.ConnectError("[Errno 111] Connection refused"), OutcomeKind.NETWORK, None),
        (httpx2.RemoteProtocolError("peer closed connection"), OutcomeKind.NETWORK, None),
        (anthropic.APITimeoutError(request=_REQ), OutcomeKind.TIMEOUT, None),
        (anthropic.APIConnectionError(request=_REQ), OutcomeKind.NETWORK, None),
        (openai.APITimeoutError(request=_REQ), OutcomeKind.TIMEOUT, None),
        (json.JSONDecodeError("Expecting value", "{x", 1), OutcomeKind.SERVER_ERROR, None),
        (genai_errors.UnknownApiResponseError("Failed to parse"), OutcomeKind.SERVER_ERROR, None),
        (RuntimeError("surprise"), OutcomeKind.SERVER_ERROR, None),
    ],
)
def test_classify(exc: BaseException, kind: OutcomeKind, retry_after_s: float | None) -> None:
    failure = classify(exc, vendor="v", partial_text="half", latency_s=0.5)
    assert failure.kind is kind, failure.reason
    assert failure.retry_after_s == retry_after_s
    assert failure.partial_text == "half" and failure.latency_s == 0.5
    assert failure.reason


def test_classify_keeps_vendor_reason_and_request_id() -> None:
    failure = classify(_anthropic_error(529, "overloaded_error", "Overloaded right now"), vendor="anthropic")
    assert "overloaded_error" in failure.reason and "Overloaded right now" in failure.reason
    assert failure.status_code == 529 and failure.request_id == "req_1"
    failure = classify(_openai_error(429, "requests", "rate_limit_exceeded", "Rate limit reached",
                                     headers={"x-ratelimit-remaining-requests": "0"}), vendor="openai")
    assert failure.request_id == "req_o"
    assert failure.ratelimit_headers == {"x-ratelimit-remaining-requests": "0"}


# ---------------------------------------------------------------------------------------- refusals


def test_anthropic_stop_reasons() -> None:
    for ok in ("end_turn", "max_tokens", "stop_sequence", "tool_use"):
        assert anthropic_stop_failure(ok, None) is None
    refusal = anthropic_stop_failure("refusal", {"type": "refusal", "category": "cyber", "explanation": "no"})
    assert refusal is not None and refusal.kind is OutcomeKind.REFUSED and "cyber" in refusal.reason
    window = anthropic_stop_failure("model_context_window_exceeded", None)
    assert window is not None and window.kind is OutcomeKind.CONTEXT_TOO_LONG
    cut = anthropic_stop_failure(None, None, partial_text="Sure")
    assert cut is not None and cut.kind is OutcomeKind.NETWORK and cut.partial_text == "Sure"


def test_openai_finish_reasons() -> None:
    for ok in ("stop", "length", "tool_calls"):
        assert openai_finish_failure(ok, None) is None
    refusal = openai_finish_failure("stop", "I can't help with that.")
    assert refusal is not None and refusal.kind is OutcomeKind.REFUSED and "can't help" in refusal.reason
    filtered = openai_finish_failure("content_filter", None)
    assert filtered is not None and filtered.kind is OutcomeKind.REFUSED
    cut = openai_finish_failure(None, None)
    assert cut is not None and cut.kind is OutcomeKind.NETWORK


_BLOCKING = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "LANGUAGE", "OTHER",
             "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "IMAGE_OTHER", "MODEL_ARMOR", "ESCALATION"}


@pytest.mark.parametrize("reason", [member.value for member in genai_types.FinishReason])
def test_every_gemini_finish_reason_is_decided(reason: str) -> None:
    failure = gemini_finish_failure(reason, "because", partial_text="p")
    if reason in ("STOP", "MAX_TOKENS"):
        assert failure is None
        return
    assert failure is not None, reason
    assert failure.partial_text == "p"
    if reason in _BLOCKING:
        assert failure.kind is OutcomeKind.REFUSED
        assert reason in failure.reason and "because" in failure.reason
    else:
        assert failure.kind is not OutcomeKind.OK


@pytest.mark.parametrize("reason", [member.value for member in genai_types.BlockedReason])
def test_every_gemini_block_reason_refuses(reason: str) -> None:
    failure = gemini_block_failure(reason, None)
    assert failure is not None and failure.kind is OutcomeKind.REFUSED
    assert gemini_block_failure(None, None) is None


# ----------------------------------------------------------------------------- gemini specifics


def test_gemini_thought_signatures_round_trip() -> None:
    raw = b"\x00\x01opaque-signature"
    chunk = genai_types.GenerateContentResponse.model_validate(
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {"text": "thinking", "thought": True},
                            {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}},
                             "thoughtSignature": raw},
                        ],
                    },
                    "finishReason": "STOP",
                }
            ],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2, "thoughtsTokenCount": 3,
                              "cachedContentTokenCount": 1},
        }
    )
    answer = _Answer()
    answer.add(chunk, AttemptClock(Timeouts(), vendor="gemini"))
    answer.finish(streamed=False)
    assert answer.text == ""  # thought parts are not answer text
    (call,) = answer.calls
    assert call.name == "get_weather" and call.arguments == {"city": "Rome"}
    assert call.id.startswith("tb-gemini-call-")  # synthesized: Gemini sent no id
    assert answer.usage.output_tokens == 5 and answer.usage.cached_input_tokens == 1

    wire = GeminiAdapter(api_key="k", base_url=URL).wire_request(
        "g", ModelRequest(messages=(Message("assistant", "", tool_calls=(call,)),))
    )
    sdk_content = genai_types.Content.model_validate(_sdk_contents(wire["contents"])[0])
    assert sdk_content.parts is not None and sdk_content.parts[0].thought_signature == raw
    assert sdk_content.parts[0].function_call is not None and sdk_content.parts[0].function_call.id is None


def test_gemini_prompt_block_is_a_refusal() -> None:
    chunk = genai_types.GenerateContentResponse.model_validate(
        {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT", "blockReasonMessage": "nope"}}
    )
    with pytest.raises(AttemptFailure) as info:
        _Answer().add(chunk, AttemptClock(Timeouts(), vendor="gemini"))
    assert info.value.kind is OutcomeKind.REFUSED and "PROHIBITED_CONTENT" in info.value.reason


def test_redact_failure_cleans_reason_and_message() -> None:
    failure = AttemptFailure(OutcomeKind.AUTH, "bad key sk-secret-123 rejected")
    redact_failure(failure, ["sk-secret-123"])
    assert "sk-secret-123" not in failure.reason and "sk-secret-123" not in str(failure)
    assert "***" in str(failure)


class _FakeVendor(VendorAdapter[Received]):
    """A vendor whose send answers from a script: the skeleton's own behaviour, without an SDK."""

    kind = "openai"
    request_id_header = "x-request-id"

    def __init__(self, headers: dict[str, str], outcome: Reply | AttemptFailure) -> None:
        super().__init__(api_key="sk-fake-secret")
        self.headers = headers
        self.outcome = outcome

    def wire_request(self, model: str, request: ModelRequest) -> dict[str, Any]:
        return {"model": model}

    def close(self) -> None:
        pass

    def _new_received(self) -> Received:
        return Received()

    def _call_arguments(self, wire: dict[str, Any], request: ModelRequest, clock: AttemptClock) -> dict[str, Any]:
        return wire

    def _send(self, arguments: dict[str, Any], clock: AttemptClock, received: Received) -> Reply:
        received.headers.update(self.headers)
        received.text_parts.append("partial")
        received.response_id = "resp-from-body"
        if isinstance(self.outcome, AttemptFailure):
            raise self.outcome
        return self.outcome

    def _stream(self, arguments: dict[str, Any], clock: AttemptClock, received: Received) -> Reply:
        return self._send(arguments, clock, received)


def test_vendor_adapter_skeleton_builds_the_response() -> None:
    reply = Reply(text='{"title": "t"}', tool_calls=(), model="m", usage=Usage(1, 2), stop_reason="stop",
                  response_id="resp-1")
    vendor = _FakeVendor({"x-ratelimit-remaining-requests": "3", "other": "x"}, reply)
    response = vendor.call("m", ModelRequest(messages=(Message("user", "hi"),), json_schema=SCHEMA))
    assert response.parsed == {"title": "t"} and response.request_id == "resp-1"
    assert response.ratelimit_headers == {"x-ratelimit-remaining-requests": "3"}
    assert response.time_to_first_token_s is None and response.latency_s >= 0


def test_vendor_adapter_skeleton_completes_and_redacts_the_failure() -> None:
    failure = AttemptFailure(OutcomeKind.AUTH, "key sk-fake-secret rejected")
    vendor = _FakeVendor({"x-request-id": "req-9", "x-ratelimit-limit-tokens": "10"}, failure)
    with pytest.raises(AttemptFailure) as info:
        vendor.call("m", ModelRequest(messages=(Message("user", "hi"),)))
    assert info.value.kind is OutcomeKind.AUTH and "sk-fake-secret" not in str(info.value)
    assert info.value.request_id == "req-9" and info.value.partial_text == "partial"
    assert info.value.ratelimit_headers == {"x-ratelimit-limit-tokens": "10"}
