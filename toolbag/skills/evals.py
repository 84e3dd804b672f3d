"""Judging one eval case's output: the schema, then each check, with a plain reason for every failure.

A check's ``field`` is a dotted path into the output; a path that passes through a list looks at every
item (``line_items.amount`` is the amount of each line item). Text comparisons ignore case. What each
kind asks of the value(s) found:

============  =============================================================  =========
kind          passes when                                                    semantic
============  =============================================================  =========
schema_valid  the output fits the output schema (always checked)            no
max_items     every list has at most N items                                 no
max_words     every text has at most N words                                 no
max_chars     every text has at most N characters                            no
equals        some value equals the given one                                yes
one_of        every value is one of the given ones                           yes
contains      some value contains the text                                   yes
matches       some value matches the regular expression                      yes
min_items     every list has at least N items                                yes
not_null      every value is present and not empty                           yes
not_contains  no value contains the text                                     yes
============  =============================================================  =========

A *semantic* check depends on what the model wrote, so it only means something against a real vendor;
the simulator's answers are schema-valid but say nothing (each string is the prompt's first words, each
list has one item), so structural limits hold there only when they allow that much.
``semantic: true|false`` on a check overrides the default of its kind.
"""

from __future__ import annotations

from typing import Any

from toolbag.skills import patterns
from toolbag.skills.canonical import canonical_json
from toolbag.skills.contract import shown, validate_output
from toolbag.skills.model import Check, EvalCase, Skill


def check_case(skill: Skill, case: EvalCase, output: Any, *, semantic: bool = True) -> list[str]:
    """Every reason ``output`` fails ``case`` (empty: it passes). ``semantic=False`` skips semantic checks."""
    failures = [f"case {case.id!r}: {error}" for error in validate_output(skill, output)]
    for check in active_checks(case, semantic=semantic):
        reason = run_check(check, output)
        if reason:
            failures.append(f"case {case.id!r}: {reason}")
    return failures


def active_checks(case: EvalCase, *, semantic: bool) -> list[Check]:
    """The checks of ``case`` that run: all of them, or only the structural ones when not ``semantic``."""
    return [c for c in case.checks if semantic or not c.semantic]


def resolve(value: Any, path: str | None) -> tuple[list[Any], bool]:
    """``(values, found)`` at a dotted path; lists on the way are looked into item by item."""
    if path is None:
        return [value], True
    return _resolve(value, path.split("."))


def _resolve(value: Any, parts: list[str]) -> tuple[list[Any], bool]:
    if not parts:
        return [value], True
    if isinstance(value, list):
        found: list[Any] = []
        for item in value:
            values, ok = _resolve(item, parts)
            if ok:
                found.extend(values)
        return found, True
    if isinstance(value, dict) and parts[0] in value:
        return _resolve(value[parts[0]], parts[1:])
    return [], False


def text_of(value: Any) -> str:
    """The text a value stands for: strings as is, lists item by item, other values as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(text_of(v) for v in value)
    return canonical_json(value)


def same(a: Any, b: Any) -> bool:
    """Equality for checks: text ignores case and surrounding space; true is not 1."""
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().casefold() == b.strip().casefold()
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return canonical_json(a) == canonical_json(b)


def run_check(check: Check, output: Any) -> str:
    """Why ``output`` fails ``check``, or an empty string when it passes."""
    name = check.field or "the output"
    if check.kind == "schema_valid":
        return ""  # check_case validates the schema for every case
    values, found = resolve(output, check.field)
    if not found:
        return f"{name} is missing from the output"
    kind, want = check.kind, check.value
    if kind == "equals":
        if any(same(v, want) for v in values):
            return ""
        return f"{name} should be {shown(want)} but is {_shown_all(values)}"
    if kind == "one_of":
        bad = [v for v in values if not any(same(v, option) for option in want)]
        if values and not bad:
            return ""
        options = ", ".join(shown(o) for o in want)
        return f"{name} should be one of {options} but is {_shown_all(bad or values)}"
    if kind == "contains":
        if any(want.casefold() in text_of(v).casefold() for v in values):
            return ""
        return f"{name} should contain {want!r} but is {_shown_all(values)}"
    if kind == "not_contains":
        if not any(want.casefold() in text_of(v).casefold() for v in values):
            return ""
        return f"{name} should not contain {want!r}, but it does"
    if kind == "matches":
        if any(patterns.search(want, text_of(v)) for v in values):
            return ""
        return f"{name} should match {want!r} but is {_shown_all(values)}"
    if kind in ("min_items", "max_items"):
        if not values or any(not isinstance(v, list) for v in values):
            return f"{name} should be a list"
        sizes = [len(v) for v in values]
        if kind == "min_items" and min(sizes) < want:
            return f"{name} should have at least {want} item(s) but has {min(sizes)}"
        if kind == "max_items" and max(sizes) > want:
            return f"{name} should have at most {want} item(s) but has {max(sizes)}"
        return ""
    if kind == "max_words":
        longest = max((len(text_of(v).split()) for v in values), default=0)
        return "" if longest <= want else f"{name} should have at most {want} words but has {longest}"
    if kind == "max_chars":
        longest = max((len(text_of(v)) for v in values), default=0)
        return "" if longest <= want else f"{name} should have at most {want} characters but has {longest}"
    if kind == "not_null":
        empty = not values or any(v is None or v == "" or v == [] or v == {} for v in values)
        return f"{name} should be present and not empty" if empty else ""
    return f"unknown check kind {kind!r}"


def _shown_all(values: list[Any]) -> str:
    if not values:
        return "absent"
    if len(values) == 1:
        return shown(values[0])
    more = f" and {len(values) - 3} more" if len(values) > 3 else ""
    return "[" + ", ".join(shown(v) for v in values[:3]) + more + "]"
