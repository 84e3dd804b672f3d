"""Can every vendor enforce this output schema natively? The common subset of strict structured output.

OpenAI's strict mode, Anthropic's ``output_config.format`` and Gemini's ``responseJsonSchema`` all accept:
objects whose ``properties`` are all listed in ``required`` with ``additionalProperties: false``; arrays
with ``items``; ``enum``; ``anyOf`` below the top; ``type`` as one name or ``[name, "null"]`` for a value
that may be absent; ``description`` and ``title``. A skill's output schema stays inside that subset so it
runs the same on whichever model picks it up. Rules beyond it (a minimum, a length) go in ``description``.
"""

from __future__ import annotations

from typing import Any

from toolbag.skills.jsonpath import JsonPath, path_text

PORTABLE_KEYWORDS: frozenset[str] = frozenset(
    {"type", "properties", "required", "additionalProperties", "items", "enum", "anyOf", "description", "title"}
)
_WHY = {
    "format": "vendors differ on which formats they enforce",
    "pattern": "not every vendor enforces patterns in structured output",
    "$ref": "references are not resolved the same way by every vendor",
    "$defs": "references are not resolved the same way by every vendor",
    "oneOf": "OpenAI strict mode does not accept oneOf; use anyOf",
    "allOf": "not every vendor accepts allOf in structured output",
    "const": "not every vendor accepts const; use an enum with one value",
    "default": "structured output has no defaults; every field is always present",
}
_TYPE_CHECK = {
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def portability_problems(schema: Any, root: str = "output") -> list[tuple[str, str, str]]:
    """``(location, message, fix)`` for each place the output schema leaves the common strict subset."""
    found: list[tuple[str, str, str]] = []
    if not isinstance(schema, dict) or schema.get("type") != "object":
        found.append(
            (
                root,
                'the output schema must be an object at the top ("type": "object")',
                'Wrap the answer in an object, e.g. {"type": "object", "properties": {"answer": ...}}.',
            )
        )
        if not isinstance(schema, dict):
            return found
    _node(schema, (), root, found, top=True)
    return found


def _node(schema: Any, path: JsonPath, root: str, found: list[tuple[str, str, str]], top: bool) -> None:
    where = path_text(root, path)
    if not isinstance(schema, dict):
        found.append((where, 'each part of the output schema must be an object with a "type"', ""))
        return
    for key in sorted(schema):
        if key not in PORTABLE_KEYWORDS:
            why = _WHY.get(key, "vendors' strict structured output does not accept it")
            found.append(
                (
                    path_text(root, path + (key,)),
                    f"{key!r} cannot be used in an output schema: {why}",
                    'Remove it and state the rule in "description" instead; the model reads descriptions.',
                )
            )
    if "anyOf" in schema:
        if top:
            found.append((where, "anyOf is not allowed at the top of the output schema", ""))
        options = schema["anyOf"]
        if isinstance(options, list):
            for i, option in enumerate(options):
                _node(option, path + ("anyOf", i), root, found, top=False)
        return
    kind = schema.get("type")
    if kind is None:
        found.append((where, 'this part of the output schema has no "type"', 'Add e.g. "type": "string".'))
        return
    kinds = [kind] if isinstance(kind, str) else list(kind) if isinstance(kind, list) else []
    real = [k for k in kinds if k != "null"]
    if len(real) != 1 or len(kinds) > 2:
        found.append(
            (
                path_text(root, path + ("type",)),
                f'type {kind!r} is not portable: use one type, or one type and "null"',
                'e.g. "type": ["string", "null"] for a value that may be missing.',
            )
        )
        return
    if "enum" in schema:
        enum = schema["enum"]
        if isinstance(enum, list):
            for value in enum:
                checks = [_TYPE_CHECK[k](value) for k in kinds if k in _TYPE_CHECK]
                if checks and not any(checks):
                    where = path_text(root, path + ("enum",))
                    found.append((where, f"enum value {value!r} is not of type {kind!r}", ""))
            if "null" in kinds and None not in enum:
                found.append(
                    (
                        path_text(root, path + ("enum",)),
                        "the type allows null but the enum does not list null",
                        "Add null to the enum list.",
                    )
                )
    if real[0] == "object":
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            found.append((where, 'an object needs "properties"', ""))
            return
        if schema.get("additionalProperties") is not False:
            found.append(
                (
                    where,
                    'an object must say "additionalProperties": false (OpenAI strict mode requires it)',
                    'Add "additionalProperties": false next to "properties".',
                )
            )
        required = schema.get("required", [])
        missing = [name for name in properties if not isinstance(required, list) or name not in required]
        if missing:
            found.append(
                (
                    path_text(root, path + ("required",)),
                    f'every property must be listed in "required"; missing: {", ".join(missing)}',
                    'For a value that may be absent, list it anyway and give it a type like ["string", "null"].',
                )
            )
        for name, child in properties.items():
            _node(child, path + ("properties", name), root, found, top=False)
    elif real[0] == "array":
        if "items" not in schema:
            found.append((where, 'a list needs "items" saying what each item is', ""))
        else:
            _node(schema["items"], path + ("items",), root, found, top=False)
