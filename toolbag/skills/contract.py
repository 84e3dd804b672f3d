"""Checking values against a skill's input and output JSON Schemas, with errors in plain words.

Every message starts with the path of the offending value (``input.total``, ``output.items[2].amount``)
and then states the rule it breaks, e.g. ``input.total: -3 is less than the minimum of 0``.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Mapping
from typing import Any

from jsonschema.exceptions import ValidationError

from toolbag.providers.base import AttemptFailure, ModelResponse, OutcomeKind
from toolbag.skills import patterns
from toolbag.skills.errors import SkillInputError
from toolbag.skills.jsonpath import JsonPath, path_text
from toolbag.skills.limits import MAX_NESTING, json_nesting, nests_deeper_than
from toolbag.skills.model import Skill
from toolbag.skills.schema_engine import schema_validator, unlisted_properties

_MAX_SHOWN_CHARS = 60
_MAX_ERRORS = 20
_MAX_CACHED_VALIDATORS = 512
_TYPE_WORDS = {
    "string": "a string",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
    "null": "null",
}

_cache_lock = threading.Lock()
_validators: dict[tuple[str, str], Any] = {}


def _validator(schema: Mapping[str, Any], key: tuple[str, str] | None, documents: Mapping[str, Any] | None) -> Any:
    if key is None:
        return schema_validator(schema, documents)
    with _cache_lock:
        found = _validators.get(key)
        if found is None:
            if len(_validators) >= _MAX_CACHED_VALIDATORS:
                _validators.clear()  # edited skills leave old hashes behind; start over rather than grow
            found = schema_validator(schema, documents)
            _validators[key] = found
        return found


def shown(value: Any) -> str:
    """A short, safe rendering of a value for an error message (long text is cut)."""
    if isinstance(value, str):
        text = value if len(value) <= _MAX_SHOWN_CHARS else value[:_MAX_SHOWN_CHARS] + "..."
        return repr(text)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false value"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int):
        return "whole number"
    if isinstance(value, float):
        return "number"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


ErrorItem = tuple[JsonPath, str]


def describe_error(error: ValidationError, root: str) -> list[ErrorItem]:
    """``(path, line)`` in plain words for one jsonschema error (one per missing or unexpected field)."""
    parts = tuple(error.absolute_path)
    rule, value, inst = error.validator, error.validator_value, error.instance

    def at(text: str, extra: JsonPath = ()) -> ErrorItem:
        return parts + extra, f"{path_text(root, parts + extra)}: {text}"

    if rule == "required" and isinstance(inst, dict):
        missing = [name for name in value if name not in inst]
        return [at("is required but missing", (name,)) for name in missing] or [at(error.message)]
    if rule == "additionalProperties" and isinstance(inst, dict):
        allowed = sorted(error.schema.get("properties", {}))
        extras = sorted(unlisted_properties(inst, error.schema))
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return [at(f"is not an allowed field{hint}", (name,)) for name in extras]
    if rule == "type":
        wanted = [value] if isinstance(value, str) else list(value)
        words = " or ".join(_TYPE_WORDS.get(w, w) for w in wanted)
        got = "null" if inst is None else f"the {_kind_of(inst)} {shown(inst)}"
        return [at(f"should be {words}, got {got}")]
    if rule == "enum":
        return [at(f"{shown(inst)} is not one of the allowed values: {', '.join(shown(v) for v in value)}")]
    if rule == "const":
        return [at(f"must be exactly {shown(value)}, got {shown(inst)}")]
    if rule in ("minLength", "maxLength") and isinstance(inst, str):
        bound = "minimum" if rule == "minLength" else "maximum"
        return [at(f"is {len(inst)} characters long; the {bound} is {value}")]
    if rule in ("minItems", "maxItems") and isinstance(inst, list):
        bound = "minimum" if rule == "minItems" else "maximum"
        return [at(f"has {len(inst)} item(s); the {bound} is {value}")]
    if rule == "pattern":
        return [at(f"{shown(inst)} does not match the pattern {value!r}")]
    if rule == "format":
        return [at(f"{shown(inst)} is not a valid {value}")]
    if rule == "uniqueItems":
        return [at("the list has repeated items; each item must be different")]
    message = error.message
    if len(message) > 200:
        message = message[:200] + "..."
    return [at(message)]


def schema_error_items(
    schema: Mapping[str, Any],
    value: Any,
    root: str,
    cache_key: tuple[str, str] | None = None,
    documents: Mapping[str, Any] | None = None,
) -> list[ErrorItem]:
    """Every way ``value`` breaks ``schema``: ``(path, plain-words line)``, sorted by path, at most 20.

    ``documents`` are the skill folder's files the schema refers to, by relative path (``Skill.schema_documents``).
    """
    if nests_deeper_than(value, MAX_NESTING):
        return [((), f"{root}: lists and objects are nested more than {MAX_NESTING} levels deep, the most allowed")]
    validator = _validator(schema, cache_key, documents)
    ordered = sorted(
        validator.iter_errors(value),
        key=lambda e: ([str(p) for p in e.absolute_path], str(e.validator), e.message),
    )
    items: dict[str, ErrorItem] = {}
    for error in ordered:
        for item in describe_error(error, root):
            items.setdefault(item[1], item)
    unique = sorted(items.values(), key=_item_order)
    if len(unique) > _MAX_ERRORS:
        unique = unique[:_MAX_ERRORS] + [((), f"... and {len(unique) - _MAX_ERRORS} more")]
    return unique


def _item_order(item: ErrorItem) -> tuple[list[tuple[int, int, str]], str]:
    path, line = item
    return [(0, p, "") if isinstance(p, int) else (1, 0, p) for p in path], line


def schema_errors(
    schema: Mapping[str, Any],
    value: Any,
    root: str,
    cache_key: tuple[str, str] | None = None,
    documents: Mapping[str, Any] | None = None,
) -> list[str]:
    """Every way ``value`` breaks ``schema``, as plain-words lines sorted by path (at most 20)."""
    return [line for _path, line in schema_error_items(schema, value, root, cache_key, documents)]


def validate_input(skill: Skill, value: Any) -> None:
    """Raise :class:`SkillInputError` naming each field and rule when ``value`` fails the input schema."""
    errors = schema_errors(skill.input_schema, value, "input", (skill.content_hash, "input"), skill.schema_documents)
    if errors:
        raise SkillInputError(skill.name, errors)


def validate_output(skill: Skill, parsed: Any) -> list[str]:
    """Every way ``parsed`` breaks the skill's output schema (empty when it is valid)."""
    return schema_errors(
        skill.output_schema, parsed, "output", (skill.content_hash, "output"), skill.schema_documents
    )


def with_defaults(schema: Mapping[str, Any], value: Any) -> Any:
    """A copy of ``value`` with each absent object property that has a schema ``default`` filled in."""
    result = copy.deepcopy(value)
    _fill_defaults(schema, result)
    return result


def _fill_defaults(schema: Mapping[str, Any], value: Any) -> None:
    if not isinstance(value, dict):
        return
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return
    for name, sub in properties.items():
        if not isinstance(sub, Mapping):
            continue
        if name not in value and "default" in sub:
            value[name] = copy.deepcopy(sub["default"])
        if name in value:
            _fill_defaults(sub, value[name])


_FENCE = r"(?s)\A```(?:json)?\s*\n(.*)\n```\s*\z"


def parse_output_text(text: str) -> Any:
    """The JSON value in a reply's text (a surrounding ```json fence is tolerated); ``ValueError`` if none."""
    stripped = text.strip()
    fenced = patterns.first_group(_FENCE, stripped)
    if fenced is not None:
        stripped = fenced.strip()
    if json_nesting(stripped) > MAX_NESTING:
        raise ValueError(f"lists and objects are nested more than {MAX_NESTING} levels deep")
    return json.loads(stripped)


def accept_output(skill: Skill, response: ModelResponse) -> Any:
    """The skill's answer in ``response``, checked against the output schema.

    Uses ``response.parsed`` when the adapter set it, else parses ``response.text``. Raises
    :class:`AttemptFailure` with :attr:`OutcomeKind.INVALID_OUTPUT` and a plain reason (which is the
    feedback to pass to ``render`` on the retry) when the reply is not JSON or breaks the schema.
    """
    parsed = response.parsed
    if parsed is None:
        try:
            parsed = parse_output_text(response.text)
        except ValueError as err:
            raise AttemptFailure(
                OutcomeKind.INVALID_OUTPUT,
                f"the reply is not JSON ({err}); reply with one JSON object only",
                request_id=response.request_id,
                latency_s=response.latency_s,
            ) from None
    errors = validate_output(skill, parsed)
    if errors:
        raise AttemptFailure(
            OutcomeKind.INVALID_OUTPUT,
            "; ".join(errors),
            request_id=response.request_id,
            latency_s=response.latency_s,
        )
    return parsed
