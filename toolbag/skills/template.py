"""``{{ placeholder }}`` templates in a skill body: find them, and fill them from a job's input.

A placeholder names an input field by a dotted path (``{{ text }}``, ``{{ customer.tier }}``). Strings
are inserted as they are; a list of plain values as one line of JSON; any other value as indented
canonical JSON; a missing or null value as nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from toolbag.skills.canonical import canonical_json

_PLACEHOLDER = re.compile(r"\{\{([^{}\n]*)\}\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


@dataclass(frozen=True)
class Placeholder:
    """One ``{{ ... }}`` in a template. ``name`` is the stripped text inside; ``valid`` if it is a path."""

    name: str
    start: int
    valid: bool


def find_placeholders(template: str) -> list[Placeholder]:
    """Every ``{{ ... }}`` in ``template``, in order."""
    found = []
    for match in _PLACEHOLDER.finditer(template):
        name = match.group(1).strip()
        found.append(Placeholder(name=name, start=match.start(), valid=bool(_NAME.fullmatch(name))))
    return found


def stray_braces(template: str) -> list[int]:
    """Offsets of ``{{`` or ``}}`` that are not part of a placeholder (an unclosed one, usually)."""
    masked = _PLACEHOLDER.sub(lambda m: " " * len(m.group(0)), template)
    return [m.start() for m in re.finditer(r"\{\{|\}\}", masked)]


def lookup(values: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    """``(found, value)`` for a dotted ``path`` into nested mappings."""
    current: Any = values
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return False, None
        current = current[part]
    return True, current


def value_text(value: Any) -> str:
    """How a value appears in rendered text: strings verbatim, ``None`` as nothing, the rest as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(v is None or isinstance(v, (str, int, float, bool)) for v in value):
        return json.dumps(value, ensure_ascii=False)  # a list of plain values reads best on one line
    return canonical_json(value, pretty=True)


def render_template(template: str, values: Mapping[str, Any]) -> str:
    """``template`` with every valid placeholder replaced from ``values``."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        if not _NAME.fullmatch(name):
            return match.group(0)
        _found, value = lookup(values, name)
        return value_text(value)

    return _PLACEHOLDER.sub(fill, template)
