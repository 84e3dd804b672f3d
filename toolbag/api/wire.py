"""The request bodies the front door accepts (pydantic) and how each becomes a job's input.

Passed to the model: text turns (an Anthropic assistant turn last is a prefill), the system prompt
(``instructions`` on the Responses API), ``max_tokens`` (``max_completion_tokens``, ``max_output_tokens``) and a
``response_format`` (``text.format``) JSON schema, and on chat completions and messages the caller's own tools
(``tools``, ``tool_choice``), earlier tool calls and their results: the model's tool calls come back to the
caller, who runs them; toolbag never does. Refused with 400 naming the field: a tool whose name or parameter
schema the vendors would refuse, a ``tool_choice`` naming no offered tool, ``tools`` on the Responses API.
Sampling settings
(``temperature``, ``top_p``, ``stop``...) are accepted and not forwarded. Unknown fields are ignored, as the
vendors' own APIs do for optional ones.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from toolbag.attempt.request import CALLER_TOOLS_FIELD
from toolbag.errors import ToolbagError


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str


Content = str | list[TextPart]


def content_text(content: Content | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.text for part in content)


TOOL_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"  # what every vendor accepts as a function name
ToolName = Annotated[str, Field(pattern=TOOL_NAME_PATTERN)]


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: ToolName
    arguments: str = "{}"


class ChatToolCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=200)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Content | None = None
    tool_calls: list[ChatToolCall] | None = None  # an assistant turn's calls
    tool_call_id: str | None = Field(default=None, max_length=200)  # a tool turn's answer to that call


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: ToolName
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ChatTool(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: ToolName


class ChatNamedToolChoice(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(default="output", min_length=1, max_length=64)
    schema_: dict[str, Any] = Field(alias="schema")


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    response_format: ResponseFormat | None = None
    tools: list[ChatTool] | None = None
    tool_choice: Literal["auto", "none", "required"] | ChatNamedToolChoice | None = None

    def job_input(self) -> dict[str, Any]:
        system = "\n\n".join(content_text(m.content) for m in self.messages if m.role in ("system", "developer"))
        turns = self._turns()
        schema = None
        if self.response_format is not None and self.response_format.type == "json_schema":
            if self.response_format.json_schema is None:
                raise WireError("response_format.json_schema", "is required when type is json_schema")
            schema = self.response_format.json_schema.schema_
        job_input = _input(turns, system, self.max_completion_tokens or self.max_tokens, schema)
        specs = [_spec(f"tools[{i}].function.parameters", t.function.name, t.function.description,
                       t.function.parameters) for i, t in enumerate(self.tools or ())]
        choice = self.tool_choice
        named = choice.function.name if isinstance(choice, ChatNamedToolChoice) else None
        return _with_tools(job_input, specs, "tool_choice", choice if isinstance(choice, str) else None, named)

    def _turns(self) -> list[dict[str, Any]]:
        """User and assistant turns; an assistant turn's ``tool_calls`` and the ``tool`` turns answering them
        (consecutive ones make one user turn of tool results)."""
        turns: list[dict[str, Any]] = []
        names: dict[str, str] = {}
        for index, m in enumerate(self.messages):
            if m.role in ("system", "developer"):
                continue
            if m.role != "tool":
                turn: dict[str, Any] = {"role": m.role, "content": content_text(m.content)}
                if m.role == "assistant" and m.tool_calls:
                    turn["tool_calls"] = [_chat_call(index, j, c) for j, c in enumerate(m.tool_calls)]
                    names.update((c.id, c.function.name) for c in m.tool_calls)
                turns.append(turn)
                continue
            if not m.tool_call_id or m.tool_call_id not in names:
                raise WireError(f"messages[{index}].tool_call_id",
                                "must name a tool call of an earlier assistant message")
            result = {"call_id": m.tool_call_id, "name": names[m.tool_call_id], "content": content_text(m.content)}
            if turns and turns[-1].get("tool_results") is not None:
                turns[-1]["tool_results"].append(result)
            else:
                turns.append({"role": "user", "content": "", "tool_results": [result]})
        return turns


def _chat_call(index: int, j: int, call: ChatToolCall) -> dict[str, Any]:
    field = f"messages[{index}].tool_calls[{j}].function.arguments"
    try:
        arguments = json.loads(call.function.arguments or "{}")
    except ValueError:
        raise WireError(field, "is not valid JSON") from None
    if not isinstance(arguments, dict):
        raise WireError(field, "must be a JSON object")
    return {"id": call.id, "name": call.function.name, "arguments": arguments}


class ToolUseBlock(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["tool_use"]
    id: str = Field(min_length=1, max_length=200)
    name: ToolName
    input: dict[str, Any]


class ToolResultBlock(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1, max_length=200)
    content: Content | None = None
    is_error: bool = False


Block = Annotated[TextPart | ToolUseBlock | ToolResultBlock, Field(discriminator="type")]


class AnthropicMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["user", "assistant"]
    content: str | list[Block]


class AnthropicTool(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["custom"] | None = None  # the vendor's server tools (web search...) are not passed on
    name: ToolName
    description: str = ""
    input_schema: dict[str, Any]


class AnthropicToolChoice(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["auto", "any", "tool", "none"]
    name: ToolName | None = None


class MessagesRequest(BaseModel):
    """``POST /v1/messages``."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    messages: list[AnthropicMessage] = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    system: Content | None = None
    stream: bool = False
    tools: list[AnthropicTool] | None = None
    tool_choice: AnthropicToolChoice | None = None

    def job_input(self) -> dict[str, Any]:
        if self.messages[0].role != "user":
            raise WireError("messages[0].role", "the first message must be a user turn")
        names: dict[str, str] = {}
        turns = [_anthropic_turn(index, m, names) for index, m in enumerate(self.messages)]
        job_input = _input(turns, content_text(self.system), self.max_tokens, None)
        specs = [_spec(f"tools[{i}].input_schema", t.name, t.description, t.input_schema)
                 for i, t in enumerate(self.tools or ())]
        choice = self.tool_choice
        if choice is not None and choice.type == "tool" and choice.name is None:
            raise WireError("tool_choice.name", "is required when type is tool")
        mode = None if choice is None or choice.type == "tool" else "required" if choice.type == "any" else choice.type
        named = choice.name if choice is not None and choice.type == "tool" else None
        return _with_tools(job_input, specs, "tool_choice", mode, named)


def _anthropic_turn(index: int, message: AnthropicMessage, names: dict[str, str]) -> dict[str, Any]:
    """One turn: its text, an assistant's ``tool_use`` blocks as calls, a user's ``tool_result`` blocks as
    results (``names``: the tool of every call seen so far, by id)."""
    if isinstance(message.content, str):
        return {"role": message.role, "content": message.content}
    turn: dict[str, Any] = {"role": message.role,
                            "content": "".join(b.text for b in message.content if isinstance(b, TextPart))}
    calls, results = [], []
    for j, block in enumerate(message.content):
        where = f"messages[{index}].content[{j}]"
        if isinstance(block, ToolUseBlock):
            if message.role != "assistant":
                raise WireError(f"{where}.type", "tool_use blocks belong in assistant messages")
            names[block.id] = block.name
            calls.append({"id": block.id, "name": block.name, "arguments": block.input})
        elif isinstance(block, ToolResultBlock):
            if message.role != "user":
                raise WireError(f"{where}.type", "tool_result blocks belong in user messages")
            if block.tool_use_id not in names:
                raise WireError(f"{where}.tool_use_id", "must name a tool_use block of an earlier assistant message")
            results.append({"call_id": block.tool_use_id, "name": names[block.tool_use_id],
                            "content": content_text(block.content), "is_error": block.is_error})
    if calls:
        turn["tool_calls"] = calls
    if results:
        turn["tool_results"] = results
    return turn


class InputPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["input_text", "output_text", "text"]
    text: str


class InputItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["message"] = "message"
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[InputPart]


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text", "json_object", "json_schema"]
    name: str = Field(default="output", min_length=1, max_length=64)
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")


class TextConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    format: TextFormat | None = None


class ResponsesRequest(BaseModel):
    """``POST /v1/responses``: text input (a string or message items), ``instructions``, ``max_output_tokens``
    and a ``text.format`` JSON schema."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    input: str | list[InputItem] = Field(min_length=1)
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    text: TextConfig | None = None
    stream: bool = False
    tools: list[Any] | None = None

    def job_input(self) -> dict[str, Any]:
        no_tools(self.tools)
        items = [InputItem(role="user", content=self.input)] if isinstance(self.input, str) else self.input
        system = [self.instructions] if self.instructions else []
        system += [_parts_text(i.content) for i in items if i.role in ("system", "developer")]
        turns = [{"role": i.role, "content": _parts_text(i.content)} for i in items if i.role in ("user", "assistant")]
        if not turns:
            raise WireError("input", "needs at least one user message")
        schema = None
        if self.text is not None and self.text.format is not None and self.text.format.type == "json_schema":
            if self.text.format.schema_ is None:
                raise WireError("text.format.schema", "is required when type is json_schema")
            schema = self.text.format.schema_
        return _input(turns, "\n\n".join(system), self.max_output_tokens, schema)


def _parts_text(content: str | list[InputPart]) -> str:
    return content if isinstance(content, str) else "".join(part.text for part in content)


class WireError(ToolbagError, ValueError):
    """A body that parses but asks for something the front door cannot pass on."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


def no_tools(tools: list[Any] | None) -> None:
    if tools:
        raise WireError("tools", "tools are not passed on /v1/responses; send them to /v1/chat/completions or "
                                 "/v1/messages")


def _spec(field: str, name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """One caller tool for the job's input; its parameters must be a JSON schema of an object."""
    if parameters.get("type", "object") != "object":
        raise WireError(field, "must be a JSON schema whose type is object")
    if not isinstance(parameters.get("properties", {}), dict):
        raise WireError(f"{field}.properties", "must be an object")
    if not isinstance(parameters.get("required", []), list):
        raise WireError(f"{field}.required", "must be an array")
    return {"name": name, "description": description, "parameters": {"type": "object", **parameters}}


def _with_tools(job_input: dict[str, Any], specs: list[dict[str, Any]], choice_field: str, mode: str | None,
                named: str | None) -> dict[str, Any]:
    """The job's input with the caller's tools (``tool_specs``) and choice (``tool_choice``)."""
    if len({s["name"] for s in specs}) != len(specs):
        raise WireError("tools", "tool names must be unique")
    if named is not None and named not in {s["name"] for s in specs}:
        raise WireError(choice_field, f"names {named!r}, which is not one of the offered tools")
    if (mode == "required" or named is not None) and not specs:
        raise WireError(choice_field, "asks for a tool call, but no tools are offered")
    if specs:
        job_input[CALLER_TOOLS_FIELD] = specs
    if named is not None:
        job_input["tool_choice"] = {"mode": "tool", "name": named}
    elif mode is not None and specs:
        job_input["tool_choice"] = {"mode": mode}
    return job_input


def _input(turns: list[dict[str, Any]], system: str, max_tokens: int | None,
           schema: dict[str, Any] | None) -> dict[str, Any]:
    job_input: dict[str, Any] = {"messages": turns}
    if system:
        job_input["system"] = system
    if max_tokens is not None:
        job_input["max_output_tokens"] = max_tokens
    if schema is not None:
        job_input["json_schema"] = schema
    return job_input


def field_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as ``messages[2].role``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path
