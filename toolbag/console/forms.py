"""Forms: the escalation output form generated from a skill's output schema, and reading it back.

Each top-level property of the output schema becomes one field: a string a text box (or a choice for an
``enum``), a number or integer a number box, a boolean a check box, anything else a JSON box. The value read
back is validated against the whole schema with the same plain-words messages the fleet uses
(:func:`toolbag.skills.contract.schema_error_items`); each message is put next to its field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from toolbag.skills.contract import schema_error_items

FREE_FIELD = "output"  # the one field of a job without a skill: JSON or text, as `toolbag escalations resolve`
MAX_FIELD_CHARS = 200_000


@dataclass(frozen=True)
class FormField:
    name: str
    kind: str  # text | textarea | number | integer | boolean | choice | json
    required: bool
    description: str = ""
    options: tuple[str, ...] = ()


def output_fields(schema: Mapping[str, Any] | None) -> list[FormField]:
    """The form for ``schema`` (a skill's output schema); one free field when there is none or it is not an
    object with properties."""
    if not schema or schema.get("type") != "object" or not isinstance(schema.get("properties"), Mapping):
        return [FormField(FREE_FIELD, "textarea", True, "the answer: JSON, or plain text")]
    required = set(schema.get("required") or ())
    out = []
    for name, sub in schema["properties"].items():
        sub = sub if isinstance(sub, Mapping) else {}
        kind = sub.get("type")
        description = str(sub.get("description", ""))
        if isinstance(sub.get("enum"), list) and all(isinstance(o, str) for o in sub["enum"]):
            out.append(FormField(name, "choice", name in required, description, tuple(sub["enum"])))
        elif kind == "string":
            out.append(FormField(name, "textarea" if sub.get("maxLength", 1000) > 200 else "text",
                                 name in required, description))
        elif kind in ("number", "integer", "boolean"):
            out.append(FormField(name, str(kind), name in required, description))
        else:
            out.append(FormField(name, "json", name in required, description or "JSON"))
    return out


def read_output(fields: list[FormField], form: Mapping[str, str],
                schema: Mapping[str, Any] | None) -> tuple[Any, dict[str, str]]:
    """The output value the form describes, and ``field -> message`` for every problem (empty: valid)."""
    errors: dict[str, str] = {}
    if len(fields) == 1 and fields[0].name == FREE_FIELD and fields[0].kind == "textarea" and not (
            schema and schema.get("type") == "object" and schema.get("properties")):
        raw = form.get(FREE_FIELD, "")
        if not raw.strip():
            return None, {FREE_FIELD: "the answer is required"}
        if len(raw) > MAX_FIELD_CHARS:
            return None, {FREE_FIELD: f"at most {MAX_FIELD_CHARS} characters"}
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        return value, {}
    value = {}
    for f in fields:
        raw = form.get(f.name, "")
        if len(raw) > MAX_FIELD_CHARS:
            errors[f.name] = f"at most {MAX_FIELD_CHARS} characters"
            continue
        if f.kind == "boolean":
            value[f.name] = raw == "on"
            continue
        if raw == "":
            continue  # absent: the schema says whether it may be
        if f.kind in ("text", "textarea", "choice"):
            value[f.name] = raw
        elif f.kind in ("number", "integer"):
            try:
                number = float(raw) if f.kind == "number" else int(raw)
            except ValueError:
                errors[f.name] = f"must be {'a number' if f.kind == 'number' else 'a whole number'}"
                continue
            value[f.name] = number
        else:
            try:
                value[f.name] = json.loads(raw)
            except json.JSONDecodeError as err:
                errors[f.name] = f"is not valid JSON ({err.msg} at character {err.pos})"
    if errors or schema is None:
        return value, errors
    names = {f.name for f in fields}
    for path, line in schema_error_items(schema, value, "output"):
        where = str(path[0]) if path and str(path[0]) in names else "_form"
        errors.setdefault(where, line)
    return value, errors
