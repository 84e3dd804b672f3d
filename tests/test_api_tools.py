"""The caller's own tools, from the front door's body to each vendor's wire: the body becomes the job's input,
``build_request`` makes it a ``ModelRequest``, and each adapter's request translation (the one function both
the threads worker and the attempt loop call) sends the tools, the choice, the earlier calls and their results."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from toolbag.api.wire import ChatCompletionRequest, MessagesRequest, WireError
from toolbag.attempt.request import build_request
from toolbag.config import DEFAULT_CONFIG_PATH, parse_config
from toolbag.providers.base import ToolCall, ToolChoice, ToolResult, ToolSpec
from toolbag.providers.registry import build_adapter

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
CHAT_BODY: dict[str, Any] = {
    "model": "gpt-luna",
    "messages": [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "rain"},
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Now.", "parameters": SCHEMA}}],
    "tool_choice": "required",
}


def request_for(job_input: dict[str, Any]) -> Any:
    config = parse_config(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()))
    return config, build_request(config, capability="chat", tier="standard", model="gpt-luna", job_input=job_input)


def test_an_openai_body_becomes_a_request_with_tools_calls_and_results() -> None:
    _, request = request_for(ChatCompletionRequest.model_validate(CHAT_BODY).job_input())
    assert request.tools == (ToolSpec("get_weather", "Now.", SCHEMA),)
    assert request.tool_choice == ToolChoice("required")
    user, assistant, results = request.messages
    assert assistant.tool_calls == (ToolCall("call_1", "get_weather", {"city": "Paris"}),
                                    ToolCall("call_2", "get_weather", {"city": "Rome"}))
    assert results.role == "user" and results.tool_results == (ToolResult("call_1", "get_weather", "sunny"),
                                                               ToolResult("call_2", "get_weather", "rain"))


def test_an_anthropic_body_becomes_the_same_request() -> None:
    body = {"model": "claude-haiku", "max_tokens": 50, "tool_choice": {"type": "tool", "name": "get_weather"},
            "tools": [{"name": "get_weather", "description": "Now.", "input_schema": SCHEMA}],
            "messages": [{"role": "user", "content": "Weather in Paris?"},
                         {"role": "assistant", "content": [
                             {"type": "text", "text": "Looking."},
                             {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
                         {"role": "user", "content": [
                             {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny", "is_error": True}]}]}
    _, request = request_for(MessagesRequest.model_validate(body).job_input())
    assert request.tools == (ToolSpec("get_weather", "Now.", SCHEMA),)
    assert request.tool_choice == ToolChoice("tool", "get_weather")
    assert request.messages[1].text == "Looking."
    assert request.messages[1].tool_calls == (ToolCall("toolu_1", "get_weather", {"city": "Paris"}),)
    assert request.messages[2].tool_results == (ToolResult("toolu_1", "get_weather", "sunny", is_error=True),)


@pytest.mark.parametrize(("choice", "openai", "anthropic", "gemini"), [
    ("auto", "auto", {"type": "auto"}, {"mode": "AUTO"}),
    ("none", "none", {"type": "none"}, {"mode": "NONE"}),
    ("required", "required", {"type": "any"}, {"mode": "ANY"}),
    ({"type": "function", "function": {"name": "get_weather"}},
     {"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"},
     {"mode": "ANY", "allowed_function_names": ["get_weather"]}),
])
def test_each_vendor_gets_the_tools_and_the_choice_in_its_shape(choice: Any, openai: Any, anthropic: Any,
                                                                 gemini: Any) -> None:
    config, request = request_for(ChatCompletionRequest.model_validate({**CHAT_BODY, "tool_choice": choice})
                                  .job_input())
    sent = build_adapter("openai", config, environ={}).wire_request("m", request)
    assert sent["tool_choice"] == openai
    assert sent["tools"][0]["function"] == {"name": "get_weather", "description": "Now.", "parameters": SCHEMA}
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "tool", "tool"]
    sent = build_adapter("anthropic", config, environ={}).wire_request("m", request)
    assert sent["tool_choice"] == anthropic
    assert sent["tools"] == [{"name": "get_weather", "description": "Now.", "input_schema": SCHEMA}]
    assert [b["type"] for b in sent["messages"][2]["content"]] == ["tool_result", "tool_result"]
    sent = build_adapter("gemini", config, environ={}).wire_request("m", request)
    assert sent["config"]["tool_config"] == {"function_calling_config": gemini}


def test_a_plain_request_offers_no_tools() -> None:
    _, request = request_for({"messages": [{"role": "user", "content": "hi"}], "tools": ["notes_*"]})
    assert request.tools == () and request.tool_choice is None  # "tools" names gateway tools, not definitions


@pytest.mark.parametrize(("change", "field"), [
    ({"tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "array"}}}]},
     "tools[0].function.parameters"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"properties": []}}}]},
     "tools[0].function.parameters.properties"),
    ({"tools": CHAT_BODY["tools"] * 2}, "tools"),
    ({"tools": [], "tool_choice": "required"}, "tool_choice"),
])
def test_bad_tool_definitions_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(WireError) as caught:
        ChatCompletionRequest.model_validate({**CHAT_BODY, **change}).job_input()
    assert caught.value.field == field
