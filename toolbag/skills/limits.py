"""The bounds on what a skill's files may hold, checked before any parser sees the text, so that reading a
skill takes a fraction of a second whatever its files contain."""

from __future__ import annotations

import re
from typing import Any

#: The largest SKILL.md, schema.json or evals.yaml read.
MAX_FILE_BYTES = 256 * 1024
#: The largest SKILL.md frontmatter (the part between the two ``---`` lines).
MAX_FRONTMATTER_CHARS = 8 * 1024
#: The deepest nesting of objects and lists in schema.json, evals.yaml and a value checked against a schema.
MAX_NESTING = 64

# Tab and newline are the only control characters a skill file may hold (carriage returns are read as newlines).
_CONTROL_CHARACTER = re.compile("[^\t\n\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_JSON_SYNTAX = re.compile(r'[\[\]{}"\\]')


def control_character(text: str) -> tuple[int, str] | None:
    """``(offset, "U+001B")`` of the first control character in ``text``, if any."""
    found = _CONTROL_CHARACTER.search(text)
    return (found.start(), f"U+{ord(found.group()):04X}") if found else None


def json_nesting(text: str) -> int:
    """How deeply the objects and lists of the JSON ``text`` nest (brackets inside strings do not count)."""
    depth = deepest = 0
    in_string = False
    escaped_at = -1
    for found in _JSON_SYNTAX.finditer(text):
        char, at = found.group(), found.start()
        if in_string:
            if char == "\\" and escaped_at != at:
                escaped_at = at + 1
            elif char == '"' and escaped_at != at:
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def nests_deeper_than(value: Any, limit: int) -> bool:
    """Whether the lists and objects of ``value`` nest more than ``limit`` levels deep (however deep they go)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
