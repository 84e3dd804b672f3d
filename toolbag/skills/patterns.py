"""Regular expressions in skills (a schema's ``pattern`` and ``patternProperties``, an eval's ``matches:``), run by
RE2: the time a match takes grows with the length of the text and nothing else, whatever the pattern."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2

from toolbag.errors import ToolbagError

#: What RE2 leaves out of the syntax most regular expressions share, for a problem's fix.
RE2_SYNTAX = (
    "Patterns run with RE2, which has no look-ahead or look-behind ((?=, (?!, (?<=, (?<!), no back-references "
    r"(\1) and no possessive or atomic groups, and writes the end of the text as \z; rewrite the pattern "
    "without them."
)
_MAX_CACHED = 1024


class PatternError(ToolbagError):
    """A pattern RE2 cannot compile; the message says why in RE2's words."""


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False
    return options


_OPTIONS = _options()


def _compile(pattern: str) -> Any:
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as err:
        reason = err.args[0].decode(errors="replace") if err.args and isinstance(err.args[0], bytes) else str(err)
        raise PatternError(reason) from None


_compiled = lru_cache(maxsize=_MAX_CACHED)(_compile)


def pattern_problem(pattern: str) -> str | None:
    """Why RE2 cannot compile ``pattern`` (``None`` when it can)."""
    try:
        _compiled(pattern)
    except PatternError as err:
        return str(err)
    return None


def search(pattern: str, text: str) -> bool:
    """Whether ``pattern`` matches somewhere in ``text``; raises :class:`PatternError` for a pattern RE2 refuses."""
    return _compiled(pattern).search(text) is not None


def first_group(pattern: str, text: str) -> str | None:
    """The text of the first group of ``pattern``'s first match in ``text`` (``None`` when it does not match)."""
    found = _compiled(pattern).search(text)
    return None if found is None else str(found.group(1))


def is_pattern(text: str) -> bool:
    """Whether ``text`` (a value, not a skill's own pattern, so it is not cached) is a pattern RE2 accepts."""
    try:
        _compile(text)
    except PatternError:
        return False
    return True
