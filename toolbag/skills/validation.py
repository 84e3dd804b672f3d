"""``validate_skill_dir``: every problem with a skill folder, in plain words, with the file and place.

Three kinds of check run: the form of each file (:mod:`toolbag.skills.parse`), the Agent Skills reference
validator on SKILL.md's frontmatter (:mod:`toolbag.skills.reference`), and the checks across files here:
both schemas are sound Draft 2020-12 (the output within the common strict subset), every input field is a
possible placeholder and is shown by one, and the eval cases and examples fit the schemas.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from toolbag.skills.contract import schema_error_items, schema_errors
from toolbag.skills.errors import Problem, did_you_mean
from toolbag.skills.evals_file import Evals
from toolbag.skills.model import Check
from toolbag.skills.parse import ParsedSkill, parse_skill_dir
from toolbag.skills.portability import portability_problems
from toolbag.skills.reference import reference_problems
from toolbag.skills.schema_refs import label
from toolbag.skills.schemas import engine_problems, keyword_problems, meta_problems, pattern_problems
from toolbag.skills.skill_md import SkillMd
from toolbag.skills.template import find_placeholders, stray_braces

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def validate_skill_dir(
    path: str | Path,
    *,
    capabilities: Collection[str] | None = None,
    route_targets: Collection[str] | None = None,
) -> list[Problem]:
    """Every problem with the skill folder at ``path`` (empty when it is valid).

    ``capabilities`` (the routes of a config), when given, must include the skill's capability;
    ``route_targets`` (provider and model names), when given, must include every name in its route hints.
    """
    _parsed, problems = inspect_skill_dir(path, capabilities=capabilities, route_targets=route_targets)
    return problems


def inspect_skill_dir(
    path: str | Path,
    *,
    capabilities: Collection[str] | None = None,
    route_targets: Collection[str] | None = None,
) -> tuple[ParsedSkill, list[Problem]]:
    """Parse and validate; returns the parts read and every problem, each once (used by the loader)."""
    parsed, problems = parse_skill_dir(path, capabilities=capabilities, route_targets=route_targets)
    if parsed.md is not None:
        problems[:0] = reference_problems(parsed.path, parsed.md)
    problems.extend(_across_files(parsed))
    return parsed, list(dict.fromkeys(problems))


def _across_files(p: ParsedSkill) -> list[Problem]:
    out: list[Problem] = []
    schemas, documents = p.schemas, p.referenced.documents
    sound = not p.referenced.problems
    for uri, document in documents.items():
        file, name = str(p.path / uri), label(uri)
        for where, message, fix in meta_problems(document, name) or pattern_problems(document, name):
            out.append(Problem(file, where, message, fix))
            sound = False
        out.extend(Problem(file, where, message, fix) for where, message, fix in keyword_problems(document, name))
    for key, schema in (("input", schemas.input), ("output", schemas.output)):
        if schema is None:
            sound = False
            continue
        for where, message, fix in meta_problems(schema, key) or engine_problems(schema, key, documents):
            out.append(Problem(schemas.file, where, message, fix))
            sound = False
        for where, message, fix in keyword_problems(schema, key):
            out.append(Problem(schemas.file, where, message, fix))
    if schemas.input is not None:
        shape = _input_shape_problems(schemas.file, schemas.input)
        out.extend(shape)
        sound = sound and not shape
    if schemas.output is not None:
        for where, message, fix in portability_problems(schemas.output, "output"):
            out.append(Problem(schemas.file, where, message, fix))
    if not sound or schemas.input is None or schemas.output is None:
        return out  # data cannot be checked against a broken schema
    if p.md is not None:
        out.extend(_placeholder_problems(p.md, schemas.input))
    if p.evals is not None:
        out.extend(_eval_problems(p.evals, schemas.input, schemas.output, documents))
    return out


def _input_shape_problems(file: str, schema: dict[str, Any]) -> list[Problem]:
    if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
        return [
            Problem(
                file,
                "input",
                'the input schema must be an object with "properties" (one entry per input field)',
                '{"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"], '
                '"additionalProperties": false}',
            )
        ]
    out = []
    if schema.get("additionalProperties") is not False:
        out.append(
            Problem(
                file,
                "input",
                'the input schema must say "additionalProperties": false, so a misspelt field name '
                "is reported at submit instead of being ignored",
                'Add "additionalProperties": false next to "properties".',
            )
        )
    for name in schema["properties"]:
        if not _IDENTIFIER.fullmatch(name):
            out.append(
                Problem(
                    file,
                    f"input.properties.{name}",
                    f"the input field name {name!r} cannot be used as a {{{{ placeholder }}}}",
                    "Use letters, digits and _ only, e.g. target_language.",
                )
            )
    return out


def schema_at(schema: Any, path: str, *, through_arrays: bool) -> dict[str, Any] | None:
    """The subschema a dotted path leads to (through ``items`` of lists when ``through_arrays``)."""
    node = schema
    for part in path.split("."):
        node = _descend(node, part, through_arrays)
        if node is None:
            return None
    return node if isinstance(node, dict) else None


def _descend(node: Any, part: str, through_arrays: bool) -> Any:
    if not isinstance(node, dict):
        return None
    if through_arrays and isinstance(node.get("items"), dict):
        return _descend(node["items"], part, through_arrays)
    properties = node.get("properties")
    if isinstance(properties, dict) and part in properties:
        return properties[part]
    for option in node.get("anyOf", []) if isinstance(node.get("anyOf"), list) else []:
        found = _descend(option, part, through_arrays)
        if found is not None:
            return found
    return None


def _field_names(schema: Any) -> list[str]:
    if isinstance(schema, dict) and isinstance(schema.get("items"), dict):
        schema = schema["items"]
    properties = schema.get("properties") if isinstance(schema, dict) else None
    return sorted(properties) if isinstance(properties, dict) else []


def _placeholder_problems(md: SkillMd, schema: dict[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    used: set[str] = set()
    for template in (md.system, md.user):
        if template is None:
            continue
        for offset in stray_braces(template.text):
            out.append(
                Problem(
                    md.file,
                    f"line {md.line_at(template.offset + offset)}",
                    "a {{ or }} that is not part of a placeholder",
                    "Write placeholders as {{ field_name }}; check for a missing brace.",
                )
            )
        for ph in find_placeholders(template.text):
            where = f"line {md.line_at(template.offset + ph.start)}"
            if not ph.valid:
                out.append(
                    Problem(
                        md.file,
                        where,
                        f"{{{{ {ph.name} }}}} is not a placeholder name",
                        "A placeholder names an input field, e.g. {{ text }} or {{ customer.tier }}.",
                    )
                )
                continue
            used.add(ph.name.split(".")[0])
            if schema_at(schema, ph.name, through_arrays=False) is None:
                parent, _, last = ph.name.rpartition(".")
                options = _field_names(schema_at(schema, parent, through_arrays=False) if parent else schema)
                out.append(
                    Problem(
                        md.file,
                        where,
                        f"the placeholder {{{{ {ph.name} }}}} is not an input field{did_you_mean(last, options)}",
                        "Input fields (schema.json, input): " + (", ".join(options) or "none") + ".",
                    )
                )
    if md.user is not None:
        for name in schema.get("properties", {}):
            if name not in used:
                out.append(
                    Problem(
                        md.file,
                        "body",
                        f"the input field {name!r} never reaches the model: no placeholder shows it",
                        f"Add {{{{ {name} }}}} to the instructions or under `## Input`, "
                        "or remove the field from schema.json.",
                    )
                )
    return out


def _eval_problems(
    evals: Evals, input_schema: dict[str, Any], output_schema: dict[str, Any], documents: Mapping[str, Any]
) -> list[Problem]:
    out: list[Problem] = []
    for i, case in evals.cases.items():
        label = f"case {case.id!r}"
        for path, message in schema_error_items(input_schema, case.input, "input", documents=documents):
            out.append(
                Problem(
                    evals.file,
                    evals.where(("cases", i, "input", *path), label),
                    f"the case's input does not fit schema.json: {message}",
                    "Correct the case's input, or the input schema if the case is right.",
                )
            )
        if case.expected is not None:
            for path, message in schema_error_items(output_schema, case.expected, "output", documents=documents):
                out.append(
                    Problem(
                        evals.file,
                        evals.where(("cases", i, "expected", *path), label),
                        f"the case's expected output does not fit schema.json: {message}",
                        "Correct the expected output, or the output schema if it is right.",
                    )
                )
        for j, check in enumerate(case.checks):
            message = _check_problem(check, output_schema)
            if message:
                where = evals.where(("cases", i, "checks", j), f"{label}, checks[{j}]")
                out.append(Problem(evals.file, where, message, ""))
    for i, example in evals.examples.items():
        for key, value, schema in (("input", example.input, input_schema), ("output", example.output, output_schema)):
            for path, message in schema_error_items(schema, value, key, documents=documents):
                out.append(
                    Problem(
                        evals.file,
                        evals.where(("examples", i, key, *path), f"examples[{i}].{key}"),
                        f"the example's {key} does not fit schema.json: {message}",
                        "Examples are shown to the model, so they must be valid.",
                    )
                )
    return out


def _check_problem(check: Check, output_schema: dict[str, Any]) -> str:
    if check.field is None:
        if check.kind in ("min_items", "max_items"):
            return f"a {check.kind} check needs `field:` naming a list in the output"
        return ""
    leaf = schema_at(output_schema, check.field, through_arrays=True)
    if leaf is None:
        parent, _, last = check.field.rpartition(".")
        options = _field_names(schema_at(output_schema, parent, through_arrays=True) if parent else output_schema)
        return (
            f"field {check.field!r} is not in the output schema{did_you_mean(last, options)}; "
            f"fields here: {', '.join(options) or 'none'}"
        )
    kinds = leaf.get("type")
    kind_list = [kinds] if isinstance(kinds, str) else list(kinds or [])
    if check.kind in ("min_items", "max_items") and "array" not in kind_list:
        return f"{check.kind} needs a list, but {check.field!r} is {kinds!r} in the output schema"
    if check.kind in ("equals", "one_of"):
        values = check.value if check.kind == "one_of" else [check.value]
        for value in values:
            errors = schema_errors(leaf, value, check.field)
            if errors:
                return f"this check can never pass: {errors[0]}"
    return ""
