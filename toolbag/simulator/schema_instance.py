"""A deterministic, valid instance of a JSON Schema (or Gemini's OpenAPI-subset ``Schema``).

Objects get every property (required first is not needed: all are given), enums their first value, ``const``
its value, ``anyOf``/``oneOf`` the first branch, ``allOf`` the merged branches, arrays one item (or
``minItems``), numbers the smallest allowed value >= 1 within bounds, strings the caller's hint text cut to
``maxLength``. Local ``$ref`` (``#``, ``#/$defs/…``, ``#/definitions/…``) are followed, with a depth guard for
recursive schemas.
"""

from __future__ import annotations

import math
from typing import Any

_MAX_DEPTH = 12

_FORMATS: dict[str, str] = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00Z",
    "email": "sim@example.com",
    "uri": "https://example.com/sim",
    "url": "https://example.com/sim",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "hostname": "example.com",
    "duration": "PT1S",
}


def schema_instance(schema: Any, hint: str = "sim") -> Any:
    """Return a value valid against ``schema``; strings are derived from ``hint``."""
    return _Generator(schema if isinstance(schema, dict) else {}, hint or "sim").value(schema, 0)


def _int(value: Any) -> int | None:
    """Gemini's proto JSON sends int64 limits as strings ("1"); accept both."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class _Generator:
    def __init__(self, root: dict[str, Any], hint: str) -> None:
        self.root = root
        self.hint = hint

    def resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            return {}
        node: Any = self.root
        for part in ref[1:].split("/"):
            if not part:
                continue
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return {}
        return node

    def value(self, schema: Any, depth: int) -> Any:
        if schema is True or schema is None:
            return self.hint
        if not isinstance(schema, dict):
            return None
        if "$ref" in schema:
            if depth >= _MAX_DEPTH:
                return None
            return self.value(self.resolve(str(schema["$ref"])), depth + 1)
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return enum[0]
        for key in ("anyOf", "any_of", "oneOf", "one_of"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                merged = {k: v for k, v in schema.items() if k not in (key,)}
                return self.value({**merged, **branches[0]} if isinstance(branches[0], dict) else branches[0],
                                  depth + 1)
        all_of = schema.get("allOf") or schema.get("all_of")
        if isinstance(all_of, list) and all_of:
            return self.value(self.merge(schema, all_of, depth), depth + 1)
        kind = self.kind(schema)
        if kind == "object":
            return self.object(schema, depth)
        if kind == "array":
            return self.array(schema, depth)
        if kind == "integer":
            return self.integer(schema)
        if kind == "number":
            return self.number(schema)
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return self.string(schema)

    def merge(self, schema: dict[str, Any], branches: list[Any], depth: int) -> dict[str, Any]:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k not in ("allOf", "all_of")}
        properties: dict[str, Any] = dict(merged.get("properties") or {})
        required: list[str] = list(merged.get("required") or [])
        for branch in branches:
            if isinstance(branch, dict) and "$ref" in branch and depth < _MAX_DEPTH:
                branch = self.resolve(str(branch["$ref"]))
            if not isinstance(branch, dict):
                continue
            for key, value in branch.items():
                if key == "properties" and isinstance(value, dict):
                    properties.update(value)
                elif key == "required" and isinstance(value, list):
                    required.extend(v for v in value if v not in required)
                else:
                    merged.setdefault(key, value)
        if properties:
            merged["properties"] = properties
        if required:
            merged["required"] = required
        return merged

    @staticmethod
    def kind(schema: dict[str, Any]) -> str:
        kind = schema.get("type")
        if isinstance(kind, list):
            non_null = [str(k) for k in kind if str(k).lower() != "null"]
            kind = non_null[0] if non_null else "null"
        if isinstance(kind, str) and kind:
            kind = kind.lower()
            if kind == "type_unspecified":
                kind = ""
            if kind:
                return kind
        if "properties" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
        return "string"

    def object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            properties = {}
        order = schema.get("propertyOrdering") or schema.get("property_ordering") or []
        names = [n for n in order if n in properties] + [n for n in properties if n not in order]
        required = schema.get("required") or []
        out: dict[str, Any] = {}
        for name in names:
            if depth >= _MAX_DEPTH - 2 and name not in required:
                continue  # recursive schemas: stop growing, keep only what is required
            out[name] = self.value(properties[name], depth + 1)
        return out

    def array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        low = _int(schema.get("minItems") or schema.get("min_items")) or 0
        high = _int(schema.get("maxItems") if "maxItems" in schema else schema.get("max_items"))
        count = max(low, 0 if depth >= _MAX_DEPTH - 2 else 1)
        if high is not None:
            count = min(count, high)
        prefix = schema.get("prefixItems")
        items = schema.get("items")
        out: list[Any] = []
        for i in range(count):
            if isinstance(prefix, list) and i < len(prefix):
                item_schema = prefix[i]
            else:
                item_schema = items if isinstance(items, dict | bool) else {}
            value = self.value(item_schema, depth + 1)
            if i and isinstance(value, str):
                value = f"{value} {i + 1}"  # keep uniqueItems satisfied for strings
            elif i and isinstance(value, int | float) and not isinstance(value, bool):
                value = value + i
            out.append(value)
        return out

    def integer(self, schema: dict[str, Any]) -> int:
        low, high = self.bounds(schema, integer=True)
        value = 1
        if low is not None:
            value = max(value, math.ceil(low))
        if high is not None and value > high:
            value = math.floor(high) if low is None else math.ceil(low)
        step = _int(schema.get("multipleOf"))
        if step and step > 0 and value % step:
            value = (value // step + 1) * step
        return int(value)

    def number(self, schema: dict[str, Any]) -> float:
        low, high = self.bounds(schema, integer=False)
        value = 1.0
        if low is not None:
            value = max(value, low)
        if high is not None and value > high:
            value = high if low is None else low
        step = _float(schema.get("multipleOf"))
        if step and step > 0:
            value = math.ceil(value / step) * step
        return float(value)

    @staticmethod
    def bounds(schema: dict[str, Any], *, integer: bool) -> tuple[float | None, float | None]:
        nudge = 1.0 if integer else 0.5
        low = _float(schema.get("minimum"))
        high = _float(schema.get("maximum"))
        exclusive_low = schema.get("exclusiveMinimum")
        exclusive_high = schema.get("exclusiveMaximum")
        if exclusive_low is True and low is not None:  # draft-4 boolean form
            low += nudge
        elif _float(exclusive_low) is not None:
            low = (_float(exclusive_low) or 0.0) + nudge
        if exclusive_high is True and high is not None:
            high -= nudge
        elif _float(exclusive_high) is not None:
            high = (_float(exclusive_high) or 0.0) - nudge
        if not integer and low is not None and high is not None and low > high:
            low = high = ((low - nudge) + (high + nudge)) / 2
        return low, high

    def string(self, schema: dict[str, Any]) -> str:
        fmt = schema.get("format")
        if isinstance(fmt, str) and fmt in _FORMATS:
            return _FORMATS[fmt]
        text = self.hint
        low = _int(schema.get("minLength") or schema.get("min_length")) or 0
        high = _int(schema.get("maxLength") if "maxLength" in schema else schema.get("max_length"))
        if high is not None:
            text = text[:high]
        if len(text) < low:
            text = text + "x" * (low - len(text))
        return text
