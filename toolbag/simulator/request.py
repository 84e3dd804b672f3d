"""The vendor-neutral view of one simulated request, built by each wire module's parser."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


class RequestError(ValueError):
    """The request body is not something the vendor would accept; answered with a native 400."""


@dataclass(frozen=True)
class ToolDef:
    """A tool offered to the model."""

    name: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolResultIn:
    """A tool result the caller sent back."""

    call_id: str
    name: str
    content: str


@dataclass
class Turn:
    """One conversation turn: text and, for user turns, tool results."""

    role: Literal["user", "assistant"]
    text: str = ""
    tool_results: list[ToolResultIn] = field(default_factory=list)


@dataclass
class SimRequest:
    """What the simulator needs to answer: model, conversation, tools, output format, limits."""

    vendor: str
    model: str
    system: str
    turns: list[Turn]
    stream: bool = False
    tools: list[ToolDef] = field(default_factory=list)
    json_schema: dict[str, Any] | None = None
    json_mode: bool = False  # JSON requested without a schema
    max_tokens: int | None = None
    include_usage: bool = False  # OpenAI chat stream_options.include_usage
    cache_prefix: str = ""  # the part of the input the vendor would cache (see .prompt_cache)
    prefill: str = ""  # a trailing assistant turn's text, which the model continues (Anthropic)
    _text: str | None = None

    @property
    def text(self) -> str:
        """All request text in order: system, then every turn's text and tool results."""
        if self._text is None:
            parts = [self.system] if self.system else []
            for turn in self.turns:
                if turn.text:
                    parts.append(turn.text)
                parts.extend(r.content for r in turn.tool_results)
            self._text = "\n".join(parts)
        return self._text

    @property
    def latest_turn(self) -> Turn | None:
        """The last user turn (the one the model answers), or None."""
        for turn in reversed(self.turns):
            if turn.role == "user":
                return turn
        return None

    def tool(self, name: str) -> ToolDef | None:
        for tool in self.tools:
            if tool.name == name:
                return tool
        return None
