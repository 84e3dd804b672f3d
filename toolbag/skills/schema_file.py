"""Reading schema.json: ``{"input": <JSON Schema>, "output": <JSON Schema>}``.

Only the file's shape is checked here; whether each schema is sound is :mod:`toolbag.skills.validation`'s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic_core import ErrorDetails

from toolbag.skills.errors import Problem, did_you_mean
from toolbag.skills.hashing import SCHEMA_FILE
from toolbag.skills.limits import MAX_NESTING, json_nesting
from toolbag.skills.plain_errors import failed, is_unknown_key, validated

_KEYS = ("input", "output")


class SchemaFile(BaseModel):
    """The top level of schema.json: one JSON Schema (an object) for the input and one for the output."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: dict[str, Any]
    output: dict[str, Any]


@dataclass(frozen=True)
class Schemas:
    """The schemas read from schema.json; one is ``None`` when it is missing or not an object."""

    file: str
    input: dict[str, Any] | None
    output: dict[str, Any] | None


def read_schema_json(folder: Path, text: str | None) -> tuple[Schemas, list[Problem]]:
    """Read schema.json (``None`` when it is missing). A schema that is fine is kept when the other is not."""
    file = str(folder / SCHEMA_FILE)
    if text is None:
        problem = Problem(
            file,
            "",
            "the skill has no schema.json (or it is not UTF-8 text)",
            'Add schema.json with {"input": {...JSON Schema...}, "output": {...JSON Schema...}}.',
        )
        return Schemas(file, None, None), [problem]
    depth = json_nesting(text)
    if depth > MAX_NESTING:
        problem = Problem(
            file,
            "",
            f"objects and lists are nested {depth} levels deep; schema.json may nest at most {MAX_NESTING}",
            'Define a part that repeats once under "$defs" and refer to it with {"$ref": "#/$defs/<name>"}.',
        )
        return Schemas(file, None, None), [problem]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        problem = Problem(
            file,
            f"line {err.lineno}, column {err.colno}",
            f"not valid JSON: {err.msg}",
            "Common causes: a comma after the last entry, a missing comma between entries, "
            "single quotes instead of double quotes, or a comment.",
        )
        return Schemas(file, None, None), [problem]
    schemas, errors = validated(SchemaFile, data)
    if schemas is not None:
        return Schemas(file, schemas.input, schemas.output), []
    usable = {key: data[key] for key in _KEYS if isinstance(data, dict) and not failed(errors, (key,))}
    return Schemas(file, usable.get("input"), usable.get("output")), [_problem(file, error) for error in errors]


def _problem(file: str, error: ErrorDetails) -> Problem:
    if not error["loc"]:
        return Problem(file, "top level", "schema.json must be an object", '{"input": {...}, "output": {...}}')
    key = str(error["loc"][0])
    if is_unknown_key(error):
        return Problem(
            file,
            f"top level, {key!r}",
            f"{key!r} is not expected here{did_you_mean(key, _KEYS)}",
            "schema.json holds exactly two entries: input and output.",
        )
    if error["type"] == "missing" or error["input"] is None:
        return Problem(
            file,
            "top level",
            f"there is no {key!r} schema",
            f'Add "{key}": {{"type": "object", "properties": {{...}}, "required": [...]}}.',
        )
    return Problem(file, key, f"the {key} schema must be a JSON object", '{"type": "object", ...}')
