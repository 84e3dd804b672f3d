"""Name patterns, wherever the gateway takes them (policy rules, requested tools, audit filters, skills'
``allowed-tools``): shell globs (``*``, ``?``, ``[...]``) matching the whole name, case-sensitive.

A policy compares tool names with ``ignore_case=True``: both sides are Unicode-normalised (NFKC) and
case-folded first, so ``files.Delete`` and ``ｆｉｌｅｓ.ｄｅｌｅｔｅ`` meet a ``*.delete*`` deny."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

__all__ = ["first_match", "fold_case", "is_glob", "matches", "matching"]

_WILDCARD = re.compile(r"[*?\[]")


def is_glob(pattern: str) -> bool:
    """True when ``pattern`` has a wildcard; otherwise it names exactly one thing."""
    return _WILDCARD.search(pattern) is not None


def fold_case(name: str) -> str:
    """The form in which names are compared when case does not matter (NFKC, case-folded)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def matches(name: str, pattern: str, *, ignore_case: bool = False) -> bool:
    if ignore_case:
        return fnmatchcase(fold_case(name), fold_case(pattern))
    return fnmatchcase(name, pattern)


def first_match(patterns: Iterable[str], names: Sequence[str], *, ignore_case: bool = False) -> str | None:
    """The first pattern that matches any of ``names``, or None."""
    for pattern in patterns:
        if any(matches(name, pattern, ignore_case=ignore_case) for name in names):
            return pattern
    return None


def matching(names: Iterable[str], patterns: Sequence[str]) -> list[str]:
    """The names (in their order) that some pattern matches."""
    return [name for name in names if first_match(patterns, (name,)) is not None]
