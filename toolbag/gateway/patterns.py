"""Name patterns, wherever the gateway takes them (policy rules, requested tools, audit filters, skills'
``allowed-tools``): shell globs (``*``, ``?``, ``[...]``), case-sensitive, matching the whole name."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

__all__ = ["first_match", "is_glob", "matches", "matching"]

_WILDCARD = re.compile(r"[*?\[]")


def is_glob(pattern: str) -> bool:
    """True when ``pattern`` has a wildcard; otherwise it names exactly one thing."""
    return _WILDCARD.search(pattern) is not None


def matches(name: str, pattern: str) -> bool:
    return fnmatchcase(name, pattern)


def first_match(patterns: Iterable[str], names: Sequence[str]) -> str | None:
    """The first pattern that matches any of ``names``, or None."""
    for pattern in patterns:
        if any(fnmatchcase(name, pattern) for name in names):
            return pattern
    return None


def matching(names: Iterable[str], patterns: Sequence[str]) -> list[str]:
    """The names (in their order) that some pattern matches."""
    return [name for name in names if first_match(patterns, (name,)) is not None]
