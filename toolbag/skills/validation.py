"""``validate_skill_dir``: every problem with a skill folder, in plain words, with the file and place.

Two validators run: the Agent Skills reference validator (``skills_ref``, the same rules as the
``agentskills validate`` command) on ``SKILL.md``'s frontmatter, and toolbag's own checks: the toolbag
fields, both schemas (sound Draft 2020-12, output within the common strict subset), the placeholders in
the body, and the eval cases and examples against the schemas.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

import skills_ref

from toolbag.skills.contract import schema_error_items, schema_errors
from toolbag.skills.errors import Problem, did_you_mean
from toolbag.skills.model import Check
from toolbag.skills.parse import (
    EVALS_FILE,
    SCHEMA_FILE,
    SKILL_FILE,
    TOOLBAG_FIELDS,
    ParsedSkill,
    line_of,
    parse_skill_dir,
)
from toolbag.skills.portability import portability_problems
from toolbag.skills.schemas import keyword_problems, meta_problems
from toolbag.skills.template import find_placeholders, stray_braces

_ASCII_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SPEC_FIELDS = "name, description, license, compatibility, metadata and allowed-tools"


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
    """Parse and validate; returns the parts read and every problem (used by the loader)."""
    parsed, problems = parse_skill_dir(path)
    if parsed.frontmatter_read:
        problems[:0] = _reference_problems(parsed)
    problems.extend(_toolbag_problems(parsed))
    if capabilities is not None and parsed.capability and parsed.capability not in capabilities:
        known = sorted(capabilities)
        problems.append(
            Problem(
                parsed.file(SKILL_FILE),
                parsed.md_location("metadata.toolbag.capability"),
                f"capability {parsed.capability!r} has no route in toolbag.yaml"
                f"{did_you_mean(parsed.capability, known)}",
                "Use one of: " + ", ".join(known) + "; or add a route for it under routes: in toolbag.yaml.",
            )
        )
    if route_targets is not None:
        hints = parsed.route_hints
        for name in (*hints.prefer, *hints.avoid):
            if name not in route_targets:
                problems.append(
                    Problem(
                        parsed.file(SKILL_FILE),
                        parsed.md_location("metadata.toolbag.route-hints"),
                        f"route hint names {name!r}, which is neither a provider nor a model in toolbag.yaml"
                        f"{did_you_mean(name, sorted(route_targets))}",
                        "Name a provider (e.g. anthropic) or a model (e.g. claude-haiku) from toolbag.yaml.",
                    )
                )
    return parsed, _dedupe(problems)


def _dedupe(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


# ---------------------------------------------------------------- the reference validator


def _reference_problems(p: ParsedSkill) -> list[Problem]:
    file = p.file(SKILL_FILE)
    out: list[Problem] = []
    for message in skills_ref.validate(p.path):
        out.extend(_translate(p, file, message))
    return out


def _translate(p: ParsedSkill, file: str, message: str) -> list[Problem]:
    """The reference validator's message, with the place and a fix in plain words."""
    dir_match = re.match(r"Directory name '(.*)' must match skill name '(.*)'", message)
    if dir_match:
        folder, name = dir_match.groups()
        return [
            Problem(
                file,
                p.md_location("name"),
                f"the name {name!r} is not the same as the folder name {folder!r}",
                f"Make them the same: rename the folder to {name!r}, or set `name: {folder}`.",
            )
        ]
    fields = re.match(r"Unexpected fields in frontmatter: (.*?)\. Only", message)
    if fields:
        out = []
        for key in [k.strip() for k in fields.group(1).split(",")]:
            toolbag_key = f"toolbag.{key}"
            if toolbag_key in TOOLBAG_FIELDS:
                fix = f'Move it under `metadata:` as `  {toolbag_key}: "..."` (values are text).'
            else:
                fix = "Move it under `metadata:` (indented by two spaces, value as text), or remove it."
            out.append(
                Problem(
                    file,
                    p.md_location(key),
                    f"{key!r} is not allowed at the top of the frontmatter; the Agent Skills format "
                    f"allows only {_SPEC_FIELDS}",
                    fix,
                )
            )
        return out
    if message.startswith("Missing required field in frontmatter: "):
        key = message.rsplit(": ", 1)[1]
        example = "name: my-skill" if key == "name" else "description: What it does. Use when ..."
        return [Problem(file, "frontmatter", f"the frontmatter has no {key}", f"Add `{example}`.")]
    if "name" in message.lower() and ("Skill name" in message or "Field 'name'" in message):
        return [
            Problem(
                file,
                p.md_location("name"),
                message.replace("Skill name", "the name"),
                "Use lowercase letters, digits and single hyphens, like extract-invoice, "
                "and the same name as the folder.",
            )
        ]
    if "escription" in message:
        return [
            Problem(
                file,
                p.md_location("description"),
                message.replace("Field 'description'", "the description"),
                "Say in one or two sentences what the skill does and when to use it (at most 1024 characters).",
            )
        ]
    if "ompatibility" in message:
        return [Problem(file, p.md_location("compatibility"), message, "Keep it under 500 characters.")]
    if "must start with YAML frontmatter" in message:
        return [
            Problem(
                file,
                "line 1",
                "the file must start with a line of three dashes (---)",
                "Put --- on the very first line; save the file as UTF-8 without a byte-order mark.",
            )
        ]
    return [Problem(file, "frontmatter", message, "")]


# ---------------------------------------------------------------- toolbag's checks


def _toolbag_problems(p: ParsedSkill) -> list[Problem]:
    out: list[Problem] = []
    md = p.file(SKILL_FILE)
    if p.name and not _ASCII_NAME.fullmatch(p.name) and p.name == p.path.name and p.name == p.name.lower():
        out.append(
            Problem(
                md,
                p.md_location("name"),
                f"the name {p.name!r} uses characters other than a-z, 0-9 and -",
                "toolbag uses the name as the answer's schema name, which vendors limit to ASCII.",
            )
        )
    schema_ok = True
    for key, schema in (("input", p.input_schema), ("output", p.output_schema)):
        if schema is None:
            schema_ok = False
            continue
        for where, message, fix in meta_problems(schema, key):
            out.append(Problem(p.file(SCHEMA_FILE), where, message, fix))
            schema_ok = False
        for where, message, fix in keyword_problems(schema, key):
            out.append(Problem(p.file(SCHEMA_FILE), where, message, fix))
    if p.input_schema is not None:
        before = len(out)
        out.extend(_input_shape_problems(p, p.input_schema))
        schema_ok = schema_ok and len(out) == before
    if p.output_schema is not None:
        for where, message, fix in portability_problems(p.output_schema, "output"):
            out.append(Problem(p.file(SCHEMA_FILE), where, message, fix))
    if not schema_ok or p.input_schema is None or p.output_schema is None:
        return out  # data cannot be checked against a broken schema
    out.extend(_placeholder_problems(p, p.input_schema))
    out.extend(_eval_problems(p, p.input_schema, p.output_schema))
    return out


def _input_shape_problems(p: ParsedSkill, schema: dict[str, Any]) -> list[Problem]:
    file = p.file(SCHEMA_FILE)
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


def _placeholder_problems(p: ParsedSkill, schema: dict[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    file = p.file(SKILL_FILE)
    text = p.texts[SKILL_FILE] or ""
    used: set[str] = set()
    for template, base in ((p.system_template, p.system_offset), (p.user_template, p.user_offset)):
        if not template:
            continue
        for offset in stray_braces(template):
            out.append(
                Problem(
                    file,
                    f"line {line_of(text, base + offset)}",
                    "a {{ or }} that is not part of a placeholder",
                    "Write placeholders as {{ field_name }}; check for a missing brace.",
                )
            )
        for ph in find_placeholders(template):
            where = f"line {line_of(text, base + ph.start)}"
            if not ph.valid:
                out.append(
                    Problem(
                        file,
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
                        file,
                        where,
                        f"the placeholder {{{{ {ph.name} }}}} is not an input field{did_you_mean(last, options)}",
                        "Input fields (schema.json, input): " + (", ".join(options) or "none") + ".",
                    )
                )
    if p.user_template is not None:
        for name in schema.get("properties", {}):
            if name not in used:
                out.append(
                    Problem(
                        file,
                        "body",
                        f"the input field {name!r} never reaches the model: no placeholder shows it",
                        f"Add {{{{ {name} }}}} to the instructions or under `## Input`, "
                        "or remove the field from schema.json.",
                    )
                )
    return out


def _eval_problems(p: ParsedSkill, input_schema: dict[str, Any], output_schema: dict[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    file = p.file(EVALS_FILE)
    for i, case in enumerate(p.cases or []):
        label = f"case {case.id!r}"
        for path, message in schema_error_items(input_schema, case.input, "input"):
            out.append(
                Problem(
                    file,
                    p.evals_location(("cases", i, "input", *path), label),
                    f"the case's input does not fit schema.json: {message}",
                    "Correct the case's input, or the input schema if the case is right.",
                )
            )
        if case.expected is not None:
            for path, message in schema_error_items(output_schema, case.expected, "output"):
                out.append(
                    Problem(
                        file,
                        p.evals_location(("cases", i, "expected", *path), label),
                        f"the case's expected output does not fit schema.json: {message}",
                        "Correct the expected output, or the output schema if it is right.",
                    )
                )
        for j, check in enumerate(case.checks):
            where = p.evals_location(("cases", i, "checks", j), f"{label}, checks[{j}]")
            message = _check_problem(check, output_schema)
            if message:
                out.append(Problem(file, where, message, ""))
    for i, example in enumerate(p.examples or []):
        for key, schema, root in (("input", input_schema, "input"), ("output", output_schema, "output")):
            value = example.input if key == "input" else example.output
            for path, message in schema_error_items(schema, value, root):
                out.append(
                    Problem(
                        file,
                        p.evals_location(("examples", i, key, *path), f"examples[{i}].{key}"),
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
