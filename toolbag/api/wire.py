"""The request bodies the front door accepts (pydantic) and how each becomes a job's input.

Only what phase 1 serves is modelled: text turns, a system prompt, ``max_tokens``, ``stream`` and
``stream_options.include_usage``. Unknown fields are ignored, as the vendors' own APIs do for optional ones.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


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

    def job_input(self) -> dict[str, Any]:
        system = "\n\n".join(content_text(m.content) for m in self.messages if m.role in ("system", "developer"))
        turns = [{"role": m.role, "content": content_text(m.content)}
                 for m in self.messages if m.role in ("user", "assistant")]
        return _input(turns, system)


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

    def job_input(self) -> dict[str, Any]:
        turns = [{"role": m.role, "content": content_text(m.content)} for m in self.messages]
        return _input(turns, content_text(self.system))


def _input(turns: list[dict[str, str]], system: str) -> dict[str, Any]:
    job_input: dict[str, Any] = {"messages": turns}
    if system:
        job_input["system"] = system
    return job_input


def field_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as ``messages[2].role``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path
