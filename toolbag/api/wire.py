"""The request bodies the front door accepts (pydantic) and how each becomes a job's input.

Passed to the model: text turns (an Anthropic assistant turn last is a prefill), the system prompt
(``instructions`` on the Responses API), ``max_tokens`` (``max_completion_tokens``, ``max_output_tokens``) and a
``response_format`` (``text.format``) JSON schema. Refused with 400 naming the
field: caller-defined ``tools`` (the worker's attempt path does not carry them yet). Sampling settings
(``temperature``, ``top_p``, ``stop``...) are accepted and not forwarded. Unknown fields are ignored, as the
vendors' own APIs do for optional ones.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: Content | None = None


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
    tools: list[Any] | None = None

    def job_input(self) -> dict[str, Any]:
        no_tools(self.tools)
        system = "\n\n".join(content_text(m.content) for m in self.messages if m.role in ("system", "developer"))
        turns = [{"role": m.role, "content": content_text(m.content)}
                 for m in self.messages if m.role in ("user", "assistant")]
        schema = None
        if self.response_format is not None and self.response_format.type == "json_schema":
            if self.response_format.json_schema is None:
                raise WireError("response_format.json_schema", "is required when type is json_schema")
            schema = self.response_format.json_schema.schema_
        return _input(turns, system, self.max_completion_tokens or self.max_tokens, schema)


class AnthropicMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["user", "assistant"]
    content: Content


class MessagesRequest(BaseModel):
    """``POST /v1/messages``."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    messages: list[AnthropicMessage] = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    system: Content | None = None
    stream: bool = False
    tools: list[Any] | None = None

    def job_input(self) -> dict[str, Any]:
        no_tools(self.tools)
        if self.messages[0].role != "user":
            raise WireError("messages[0].role", "the first message must be a user turn")
        turns = [{"role": m.role, "content": content_text(m.content)} for m in self.messages]
        return _input(turns, content_text(self.system), self.max_tokens, None)


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
        raise WireError("tools", "caller-defined tools are not passed to models yet; use a capability or skill "
                                 "whose tools the fleet's tool gateway runs")


def _input(turns: list[dict[str, str]], system: str, max_tokens: int | None,
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
