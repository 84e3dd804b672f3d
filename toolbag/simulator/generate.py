"""What the simulated model says: deterministic text, token counts, structured output and tool-call decisions.

The answer is a pure function of the request (model + text):

- tools offered and the latest user turn (or a tool result in it) carries ``[[sim:tool=NAME]]`` or
  ``[[sim:tool=NAME {"json": "args"}]]`` → a tool call to NAME (arguments given, else generated from the
  tool's parameter schema); several directives give parallel calls;
- the latest turn carries tool results without a directive → ``"[model] tool said: <results>"``;
- a JSON schema was requested → a valid instance of it (:mod:`.schema_instance`);
- otherwise ``"[model] <the first words of the last user text>"``.

A prefill (an Anthropic request whose last turn is the assistant's) is continued: the reply is what follows
it (:func:`continue_text`), counted as the output, and the prefill is not repeated.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from .request import SimRequest, Turn
from .schema_instance import schema_instance

SUMMARY_WORDS = 24

_TOOL_DIRECTIVE = re.compile(r"\[\[sim:tool=([A-Za-z0-9_.:\-]+)")
_ANY_DIRECTIVE = re.compile(r"\[\[sim:[^\]]*\]\]")
_DECODER = json.JSONDecoder()
_IDS = itertools.count(1)
_ID_PREFIX = os.urandom(3).hex()
_CALL_PREFIX = {"anthropic": "toolu_", "openai": "call_", "gemini": "fc_"}


def new_id(prefix: str) -> str:
    """A unique id with a vendor-style prefix (``msg_``, ``toolu_``, ``chatcmpl-``, ``call_`` …)."""
    return f"{prefix}{_ID_PREFIX}{next(_IDS):010d}"


def count_tokens(text: str) -> int:
    """A realistic token estimate: about four characters per token, at least one."""
    return max(1, (len(text) + 3) // 4)


@dataclass(frozen=True)
class ToolCallOut:
    """A tool call the simulated model makes."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass
class Reply:
    """The simulated model's answer to one request."""

    text: str
    input_tokens: int
    output_tokens: int
    tool_calls: list[ToolCallOut] = field(default_factory=list)
    truncated: bool = False  # cut at max_tokens
    is_json: bool = False
    cache_read_tokens: int = 0  # of input_tokens: read from the prompt cache
    cache_write_tokens: int = 0  # of input_tokens: written to it


def tool_directives(text: str) -> list[tuple[str, dict[str, Any] | None]]:
    """Every ``[[sim:tool=NAME [json args]]]`` in ``text``, in order."""
    if "[[sim:tool=" not in text:
        return []
    found: list[tuple[str, dict[str, Any] | None]] = []
    for match in _TOOL_DIRECTIVE.finditer(text):
        pos = match.end()
        while pos < len(text) and text[pos] == " ":
            pos += 1
        args: dict[str, Any] | None = None
        if pos < len(text) and text[pos] == "{":
            try:
                value, _ = _DECODER.raw_decode(text, pos)
            except json.JSONDecodeError:
                value = None
            if isinstance(value, dict):
                args = value
        found.append((match.group(1), args))
    return found


def strip_directives(text: str) -> str:
    """``text`` without any ``[[sim:…]]`` directive (JSON tool arguments included)."""
    if "[[sim:" not in text:
        return text
    out: list[str] = []
    pos = 0
    while True:
        start = text.find("[[sim:", pos)
        if start < 0:
            out.append(text[pos:])
            break
        out.append(text[pos:start])
        search_from = start
        tool = _TOOL_DIRECTIVE.match(text, start)
        if tool is not None:
            brace = tool.end()
            while brace < len(text) and text[brace] == " ":
                brace += 1
            if brace < len(text) and text[brace] == "{":
                try:
                    _, search_from = _DECODER.raw_decode(text, brace)
                except json.JSONDecodeError:
                    pass
        end = text.find("]]", search_from)
        if end < 0:
            break
        pos = end + 2
    return "".join(out)


def summary(text: str, words: int = SUMMARY_WORDS) -> str:
    """The first ``words`` words of ``text`` (directives removed), with ``...`` when cut."""
    parts = strip_directives(text).split()
    if not parts:
        return "(empty)"
    head = " ".join(parts[:words])
    return head + " ..." if len(parts) > words else head


def _tool_calls(req: SimRequest, turn: Turn) -> list[ToolCallOut]:
    directives: list[tuple[str, dict[str, Any] | None]] = []
    for result in turn.tool_results:
        directives.extend(tool_directives(result.content))
    directives.extend(tool_directives(turn.text))
    calls: list[ToolCallOut] = []
    hint = summary(turn.text, 8) if turn.text.strip() else req.model
    for name, args in directives:
        if args is None:
            tool = req.tool(name)
            generated = schema_instance(tool.parameters, hint) if tool is not None else {}
            args = generated if isinstance(generated, dict) else {}
        calls.append(ToolCallOut(id=new_id(_CALL_PREFIX.get(req.vendor, "call_")), name=name, arguments=args))
    return calls


def make_reply(req: SimRequest) -> Reply:
    """Decide the answer for ``req``."""
    input_tokens = count_tokens(req.text)
    turn = req.latest_turn
    if req.tools and turn is not None:
        calls = _tool_calls(req, turn)
        if calls:
            out_tokens = sum(count_tokens(c.name + json.dumps(c.arguments)) for c in calls)
            return Reply(text="", input_tokens=input_tokens, output_tokens=out_tokens, tool_calls=calls)
    user_text = turn.text if turn is not None else ""
    if req.json_schema is not None:
        value = schema_instance(req.json_schema, summary(user_text, 8) if user_text.strip() else req.model)
        text = json.dumps(value, ensure_ascii=False)
        return Reply(text=text, input_tokens=input_tokens, output_tokens=count_tokens(text), is_json=True)
    if turn is not None and turn.tool_results:
        said = " | ".join(r.content for r in turn.tool_results)
        text = f"[{req.model}] tool said: {said}"
    else:
        text = f"[{req.model}] {summary(user_text)}"
    if req.json_mode:
        text = json.dumps({"text": text}, ensure_ascii=False)
        return Reply(text=text, input_tokens=input_tokens, output_tokens=count_tokens(text), is_json=True)
    if req.prefill:
        text = continue_text(text, req.prefill)
    output_tokens = count_tokens(text)
    if req.max_tokens is not None and 0 < req.max_tokens < output_tokens:
        text = text[: req.max_tokens * 4]
        return Reply(text=text, input_tokens=input_tokens, output_tokens=req.max_tokens, truncated=True)
    return Reply(text=text, input_tokens=input_tokens, output_tokens=output_tokens)


_TAG = re.compile(r"^\[[^\]]*\] ")


def continue_text(answer: str, prefill: str) -> str:
    """What a model whose answer is ``answer`` writes after ``prefill``: the rest of its answer when the prefill
    is a start of it, also when the prefill was begun under another model's ``[model]`` tag (the words after the
    tag are the same for every model); otherwise, not recognising the start, its whole answer after a space."""
    if answer.startswith(prefill):
        return answer[len(prefill):]
    tag, own_tag = _TAG.match(prefill), _TAG.match(answer)
    if tag is not None and own_tag is not None:
        body, own_body = prefill[tag.end():], answer[own_tag.end():]
        if own_body.startswith(body):
            return own_body[len(body):]
    return " " + answer


def text_pieces(text: str, *, is_json: bool = False) -> list[str]:
    """Split ``text`` into stream deltas: words (or 16-character slices of JSON), at least two when possible."""
    if not text:
        return []
    if is_json:
        size = 16
        return [text[i : i + size] for i in range(0, len(text), size)]
    words = re.findall(r"\s*\S+", text)
    if len(words) <= 1:
        return [text] if len(text) < 2 else [text[: len(text) // 2], text[len(text) // 2 :]]
    per = 1 if len(words) <= 12 else 4
    pieces = ["".join(words[i : i + per]) for i in range(0, len(words), per)]
    tail = text[len("".join(words)) :]
    if tail:
        pieces[-1] += tail
    return pieces
