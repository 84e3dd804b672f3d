"""JSON Schema for each vendor's native structured output, and parsing of what comes back.

- OpenAI ``strict`` mode accepts a subset of JSON Schema: every object closed (``additionalProperties:
  false``) with every property listed in ``required``, the root an object, no conditional / property-count
  keywords. :func:`openai_strict_schema` converts a schema to that form (an optional property becomes
  required; any value it then carries still satisfies the original schema), or returns ``None`` when it
  cannot be converted faithfully (an open object, an unsupported keyword, a non-object root); the adapter
  then sends the original schema with ``strict: false``.
- Anthropic ``output_config.format``: the SDK's own transform (what ``messages.parse`` sends).
- Gemini ``responseJsonSchema``: standard JSON Schema, passed through unchanged.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from toolbag.providers.base import AttemptFailure, OutcomeKind

__all__ = ["anthropic_output_schema", "openai_strict_schema", "parse_json_output"]

# Keywords OpenAI strict mode rejects; a schema using any of them is sent non-strict.
_STRICT_UNSUPPORTED = frozenset(
    {
        "patternProperties",
        "unevaluatedProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "dependentRequired",
        "dependentSchemas",
        "if",
        "then",
        "else",
        "not",
        "oneOf",
        "contains",
        "minContains",
        "maxContains",
        "unevaluatedItems",
        "prefixItems",
        "uniqueItems",
    }
)
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions")
_SUBSCHEMA_LISTS = ("anyOf", "allOf")


class _NotStrict(Exception):
    pass


def _strict(node: Any, depth: int) -> Any:
    if depth > 64:
        raise _NotStrict("schema nested too deeply")
    if not isinstance(node, dict):
        if isinstance(node, bool):
            raise _NotStrict("boolean schema")
        return node
    unsupported = _STRICT_UNSUPPORTED.intersection(node)
    if unsupported:
        raise _NotStrict(f"unsupported keyword(s) {sorted(unsupported)}")
    out = dict(node)
    for key in _SUBSCHEMA_MAPS:
        if isinstance(node.get(key), dict):
            out[key] = {name: _strict(sub, depth + 1) for name, sub in node[key].items()}
    for key in _SUBSCHEMA_LISTS:
        if isinstance(node.get(key), list):
            out[key] = [_strict(sub, depth + 1) for sub in node[key]]
    if "items" in node:
        if not isinstance(node["items"], dict):
            raise _NotStrict("tuple-style items")
        out["items"] = _strict(node["items"], depth + 1)
    types = node.get("type")
    is_object = types == "object" or (isinstance(types, list) and "object" in types) or "properties" in node
    if is_object:
        extra = node.get("additionalProperties", False)
        if extra is not False:
            raise _NotStrict("an object allows additional properties")
        out["additionalProperties"] = False
        out["required"] = list(out.get("properties", {}))
    if out.get("default", 0) is None:
        out.pop("default")
    return out


def openai_strict_schema(schema: dict[str, Any]) -> dict[str, Any] | None:
    """``schema`` converted for OpenAI strict mode, or ``None`` if it cannot be sent strictly."""
    if schema.get("type") != "object":
        return None
    try:
        converted = _strict(copy.deepcopy(schema), 0)
    except _NotStrict:
        return None
    return converted if isinstance(converted, dict) else None


def anthropic_output_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` as Anthropic structured outputs expect it (closed objects, unsupported constraints moved
    into descriptions), via the SDK's own transform; unchanged if the transform cannot handle it. (Imported
    here: only an Anthropic worker, or a lockfile digest, needs the Anthropic SDK.)"""
    from anthropic.lib._parse._transform import transform_schema

    try:
        return transform_schema(copy.deepcopy(schema))
    except (ValueError, TypeError, KeyError, AssertionError):
        return schema


def parse_json_output(text: str, *, vendor: str, partial_text: str = "") -> Any:
    """The JSON value of a structured answer, or ``AttemptFailure(INVALID_OUTPUT)`` quoting the problem."""
    candidate = text.strip()
    if candidate.startswith("```"):  # some compatible servers fence JSON despite response_format
        candidate = candidate.strip("`")
        candidate = candidate[4:] if candidate.startswith("json") else candidate
    try:
        return json.loads(candidate)
    except json.JSONDecodeError as err:
        snippet = text[:120].replace("\n", " ")
        raise AttemptFailure(
            OutcomeKind.INVALID_OUTPUT,
            f"{vendor} answer is not valid JSON for the requested schema ({err.msg} at char {err.pos}): "
            f"{snippet!r}",
            partial_text=partial_text or text,
        ) from None
