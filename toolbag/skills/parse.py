"""Reading a skill folder into its parts, noting every problem of form (a missing file, bad YAML or JSON,
a malformed field) with the file and line. Deeper checks (schemas, placeholders, evals against the
schemas) live in :mod:`toolbag.skills.validation`; turning complete parts into a
:class:`~toolbag.skills.model.Skill` lives in :mod:`toolbag.skills.loader`.

The files of a skill folder:

``SKILL.md``
    Agent Skills frontmatter (``name``, ``description``, ``license``, ``metadata`` with the ``toolbag.*``
    fields, optionally ``allowed-tools``) and a Markdown body. The body before a ``## Input`` heading is
    the system text; the part after it is the user message. Both may hold ``{{ placeholders }}``.
``schema.json``
    ``{"input": <JSON Schema>, "output": <JSON Schema>}``.
``evals.yaml``
    ``cases:`` (at least three) and optionally ``examples:`` shown to the model.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skills_ref.errors import ParseError
from skills_ref.parser import parse_frontmatter

from toolbag.config import TIERS
from toolbag.skills.canonical import normalize_text
from toolbag.skills.errors import Problem, did_you_mean
from toolbag.skills.hashing import HASHED_FILES, content_hash_of_texts
from toolbag.skills.model import CHECK_KINDS, Check, EvalCase, Example, RouteHints
from toolbag.skills.yamlfile import JsonPath, YamlDocument, YamlSyntaxError, load_yaml

SKILL_FILE, SCHEMA_FILE, EVALS_FILE = HASHED_FILES
MIN_EVAL_CASES = 3
DEFAULT_MAX_OUTPUT_TOKENS = 1024
DEFAULT_TIER = "standard"

#: The toolbag fields a skill may set under ``metadata:`` (all values are strings in the format).
TOOLBAG_FIELDS: dict[str, str] = {
    "toolbag.version": 'the skill\'s version, semantic versioning, e.g. "1.2.0" (required)',
    "toolbag.capability": "the kind of work, a route in toolbag.yaml, e.g. summarize (required)",
    "toolbag.tier": "default tier: interactive, standard or batch (optional, default standard)",
    "toolbag.route-hints": 'advice to the router, e.g. "prefer=anthropic min-context=32000" (optional)',
    "toolbag.max-output-tokens": 'the most tokens the answer may use, e.g. "2048" (optional, default 1024)',
}
ROUTE_HINT_KEYS = ("prefer", "avoid", "min-context", "needs")
MODEL_FEATURES = ("json_schema", "tools", "batch")
CASE_KEYS = ("id", "description", "input", "expected", "checks")
EXAMPLE_KEYS = ("input", "output")

_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)
_CAPABILITY = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_INPUT_HEADING = re.compile(r"^##[ \t]+input[ \t]*$", re.IGNORECASE | re.MULTILINE)
_CASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_TOP_KEY = re.compile(r"^([^\s:#][^:]*):")
_NESTED_KEY = re.compile(r"^[ \t]+([^\s:#][^:]*):")

STRICT_YAML_FIX = (
    "The frontmatter is read as strict YAML: write one `key: value` per line, indent the entries under "
    "`metadata:` by two spaces, do not use { } or [ ] braces, and put values that contain `: ` in quotes."
)


def line_of(text: str, offset: int) -> int:
    """1-based line number of a character offset."""
    return text.count("\n", 0, offset) + 1


@dataclass
class ParsedSkill:
    """What could be read from a skill folder. A field is ``None`` when its file or value is unusable."""

    path: Path
    texts: dict[str, str | None]
    content_hash: str
    frontmatter_read: bool = False
    key_lines: dict[str, int] = field(default_factory=dict)
    top_keys: tuple[str, ...] = ()
    name: str | None = None
    description: str | None = None
    license: str | None = None
    allowed_tools: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    version: str | None = None
    capability: str | None = None
    tier: str = DEFAULT_TIER
    route_hints: RouteHints = field(default_factory=RouteHints)
    max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS
    body: str | None = None
    system_template: str | None = None
    system_offset: int = 0
    user_template: str | None = None
    user_offset: int = 0
    user_line: int = 1
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    cases: list[EvalCase] | None = None
    examples: list[Example] | None = None
    evals_doc: YamlDocument | None = None

    def file(self, name: str) -> str:
        """How a file of this skill is named in problems (the folder as given, plus the file name)."""
        return str(self.path / name)

    def md_location(self, key: str) -> str:
        """``line N, <key>`` for a frontmatter key (``metadata.toolbag.version`` style for nested ones)."""
        line = self.key_lines.get(key)
        return f"line {line}, {key}" if line else key

    def evals_location(self, path: JsonPath, label: str) -> str:
        """``line N, <label>`` for a place in ``evals.yaml``."""
        line = self.evals_doc.line(path) if self.evals_doc is not None else None
        return f"line {line}, {label}" if line else label


def parse_skill_dir(path: str | Path) -> tuple[ParsedSkill, list[Problem]]:
    """Read the three files of a skill folder. Never raises for a broken skill; lists problems instead."""
    folder = Path(path)
    texts: dict[str, str | None] = {}
    for name in HASHED_FILES:
        file = folder / name
        try:
            texts[name] = normalize_text(file.read_text(encoding="utf-8")) if file.is_file() else None
        except (OSError, UnicodeDecodeError):
            texts[name] = None
    parsed = ParsedSkill(path=folder, texts=texts, content_hash=content_hash_of_texts(texts))
    problems: list[Problem] = []
    if not folder.is_dir():
        problems.append(Problem(str(folder), "", "this folder does not exist", "Give the path of a skill folder."))
        return parsed, problems
    _read_skill_md(parsed, problems)
    _read_schema(parsed, problems)
    _read_evals(parsed, problems)
    return parsed, problems


# ---------------------------------------------------------------- SKILL.md


def _read_skill_md(p: ParsedSkill, problems: list[Problem]) -> None:
    text = p.texts[SKILL_FILE]
    file = p.file(SKILL_FILE)
    if text is None:
        if (p.path / "skill.md").is_file():
            problems.append(Problem(p.file("skill.md"), "", "the file is named skill.md", "Rename it to SKILL.md."))
        else:
            problems.append(
                Problem(
                    file,
                    "",
                    "the skill has no SKILL.md (or it is not UTF-8 text)",
                    "Copy an existing skill folder, e.g. skills/summarize, and edit its SKILL.md.",
                )
            )
        return
    try:
        front, _ = parse_frontmatter(text)
    except ParseError as err:
        problems.append(_frontmatter_problem(file, str(err)))
        return
    p.frontmatter_read = True
    p.top_keys = tuple(str(k) for k in front)
    _index_frontmatter_lines(p, text)
    _split_body(p, text, problems)

    for key in ("name", "description"):
        value = front.get(key)
        if isinstance(value, str):
            setattr(p, key, value.strip())
    description = p.description or ""
    if "<" in description or ">" in description:
        problems.append(
            Problem(
                file,
                p.md_location("description"),
                "the description contains < or >, which some skill clients reject",
                "Write it in words without angle brackets.",
            )
        )
    lic = front.get("license")
    if lic is not None:
        if isinstance(lic, str) and lic.strip():
            p.license = lic.strip()
        else:
            problems.append(
                Problem(file, p.md_location("license"), "license must be one line of text", "e.g. Apache-2.0")
            )
    tools = front.get("allowed-tools")
    if tools is not None:
        if isinstance(tools, str):
            p.allowed_tools = tuple(tools.split())
        else:
            problems.append(
                Problem(
                    file,
                    p.md_location("allowed-tools"),
                    "allowed-tools must be one line of tool names separated by spaces, not a list",
                    "e.g. `allowed-tools: web.search fs.read`",
                )
            )
    meta = front.get("metadata")
    if meta is None:
        problems.append(
            Problem(
                file,
                "frontmatter",
                "there is no metadata: section, so toolbag does not know the skill's version and capability",
                'Add\nmetadata:\n  toolbag.version: "1.0.0"\n  toolbag.capability: summarize',
            )
        )
        return
    if not isinstance(meta, dict):
        problems.append(
            Problem(
                file,
                p.md_location("metadata"),
                "metadata must be a list of `key: value` lines indented under `metadata:`",
                'e.g.\nmetadata:\n  toolbag.version: "1.0.0"',
            )
        )
        return
    p.metadata = {str(k): str(v) for k, v in meta.items()}
    _read_toolbag_fields(p, problems)


def _frontmatter_problem(file: str, reason: str) -> Problem:
    if "must start with" in reason:
        return Problem(
            file,
            "line 1",
            "the file must start with a line of three dashes (---) that opens the frontmatter",
            "Put --- on the first line, then name:, description: and metadata:, then another --- line.",
        )
    if "not properly closed" in reason:
        return Problem(
            file,
            "frontmatter",
            "the frontmatter is not closed",
            "Add a line with --- after the last frontmatter field, before the instructions.",
        )
    if "must be a YAML mapping" in reason:
        return Problem(file, "frontmatter", "the frontmatter must be `key: value` lines", STRICT_YAML_FIX)
    found = re.findall(r"line (\d+)", reason)
    # strictyaml numbers lines from the opening ---, so its line numbers are the file's.
    where = f"line {found[-1]}, frontmatter" if found else "frontmatter"
    message = "the frontmatter is not valid strict YAML: " + _strictyaml_reason(reason)
    return Problem(file, where, message, STRICT_YAML_FIX)


def _strictyaml_reason(raw: str) -> str:
    """strictyaml's reason for a parse error, in plain words."""
    text = raw.removeprefix("Invalid YAML in frontmatter:").strip()
    reasons = [
        line.strip()
        for line in text.splitlines()
        if line.strip()
        and not line.startswith(" ")
        and not line.strip().startswith('in "')
        and not line.strip().startswith("While ")
    ]
    reason = reasons[-1] if reasons else text.splitlines()[0] if text else "cannot be read"
    duplicate = re.search(r"Duplicate key '(.*)' found", reason)
    if duplicate:
        return f"the key {duplicate.group(1)!r} appears twice"
    if "flow mapping" in reason or "flow sequence" in reason or "JSONesque" in reason:
        return "braces { } and brackets [ ] are not allowed"
    if "mapping values are not allowed here" in reason:
        return "a value contains a colon followed by a space, or a line is indented where it should not be"
    return reason


def _index_frontmatter_lines(p: ParsedSkill, text: str) -> None:
    lines = text.split("\n")
    parent: str | None = None
    for number, line in enumerate(lines[1:], start=2):
        if line.strip() == "---":
            break
        top = _TOP_KEY.match(line)
        if top:
            parent = top.group(1).strip()
            p.key_lines.setdefault(parent, number)
            continue
        nested = _NESTED_KEY.match(line)
        if nested and parent is not None:
            p.key_lines.setdefault(f"{parent}.{nested.group(1).strip()}", number)


def _split_body(p: ParsedSkill, text: str, problems: list[Problem]) -> None:
    file = p.file(SKILL_FILE)
    parts = text.split("---", 2)
    raw = parts[2]
    start = len(parts[0]) + len(parts[1]) + 6 + (len(raw) - len(raw.lstrip()))
    body = raw.strip()
    p.body = body
    p.system_offset = start
    if not body:
        problems.append(
            Problem(
                file,
                "after the frontmatter",
                "there are no instructions after the frontmatter",
                "Write the instructions for the model below the closing --- line.",
            )
        )
        return
    headings = list(_INPUT_HEADING.finditer(body))
    if len(headings) > 1:
        second = start + headings[1].start()
        problems.append(
            Problem(
                file,
                f"line {line_of(text, second)}",
                "there is more than one `## Input` heading",
                "Keep one `## Input` heading; everything below it is the message that carries the input.",
            )
        )
        return
    if not headings:
        p.system_template = body
        return
    heading = headings[0]
    p.system_template = body[: heading.start()].strip()
    after = body[heading.end() :]
    user = after.strip()
    p.user_offset = start + heading.end() + (len(after) - len(after.lstrip()))
    p.user_line = line_of(text, start + heading.start())
    if not p.system_template:
        problems.append(
            Problem(
                file,
                f"line {p.user_line}",
                "there are no instructions before the `## Input` heading",
                "Write what the model should do above `## Input`.",
            )
        )
    if not user:
        problems.append(
            Problem(
                file,
                f"line {p.user_line}",
                "the `## Input` section is empty",
                "Under `## Input`, write how the input is shown to the model, e.g. {{ text }}.",
            )
        )
    p.user_template = user or None


def _read_toolbag_fields(p: ParsedSkill, problems: list[Problem]) -> None:
    file = p.file(SKILL_FILE)
    meta = p.metadata
    known = list(TOOLBAG_FIELDS)
    for key in sorted(meta):
        if key.startswith("toolbag.") and key not in TOOLBAG_FIELDS:
            problems.append(
                Problem(
                    file,
                    p.md_location(f"metadata.{key}"),
                    f"{key!r} is not a toolbag field{did_you_mean(key, known)}",
                    "The toolbag fields are: " + ", ".join(known) + ".",
                )
            )

    def missing(field_name: str, example: str) -> None:
        bare = field_name.removeprefix("toolbag.")
        if bare in meta:
            hint = f"Rename `{bare}` to `{field_name}` under metadata:"
        elif bare in p.top_keys:
            hint = f"Move `{bare}:` under metadata: and call it `{field_name}` (value in quotes)."
        else:
            hint = f"Add `  {field_name}: {example}` under metadata: ({TOOLBAG_FIELDS[field_name]})"
        problems.append(Problem(file, p.md_location("metadata"), f"metadata has no {field_name}", hint))

    version = meta.get("toolbag.version")
    if version is None:
        missing("toolbag.version", '"1.0.0"')
    elif not _SEMVER.fullmatch(version.strip()):
        problems.append(
            Problem(
                file,
                p.md_location("metadata.toolbag.version"),
                f"toolbag.version {version!r} is not a semantic version",
                'Use three numbers separated by dots, e.g. "1.0.0"; raise the last one for a small fix.',
            )
        )
    else:
        p.version = version.strip()

    capability = meta.get("toolbag.capability")
    if capability is None:
        missing("toolbag.capability", "summarize")
    elif not capability.strip():
        problems.append(
            Problem(
                file,
                p.md_location("metadata.toolbag.capability"),
                "toolbag.capability is empty",
                "Name the kind of work, a route in toolbag.yaml, e.g. summarize, extract or classify.",
            )
        )
    elif not _CAPABILITY.fullmatch(capability.strip()):
        problems.append(
            Problem(
                file,
                p.md_location("metadata.toolbag.capability"),
                f"toolbag.capability {capability!r} is not a capability name",
                "Use lowercase letters, digits and single hyphens, e.g. code-review.",
            )
        )
    else:
        p.capability = capability.strip()

    tier = meta.get("toolbag.tier")
    if tier is not None:
        if tier.strip() in TIERS:
            p.tier = tier.strip()
        else:
            problems.append(
                Problem(
                    file,
                    p.md_location("metadata.toolbag.tier"),
                    f"toolbag.tier {tier!r} is not a tier{did_you_mean(tier.strip(), TIERS)}",
                    "Use one of: " + ", ".join(TIERS) + ".",
                )
            )

    tokens = meta.get("toolbag.max-output-tokens")
    if tokens is not None:
        value = tokens.strip()
        if value.isdigit() and 1 <= int(value) <= 1_000_000:
            p.max_output_tokens = int(value)
        else:
            problems.append(
                Problem(
                    file,
                    p.md_location("metadata.toolbag.max-output-tokens"),
                    f"toolbag.max-output-tokens {tokens!r} is not a whole number between 1 and 1000000",
                    'e.g. toolbag.max-output-tokens: "2048"',
                )
            )

    hints = meta.get("toolbag.route-hints")
    if hints is not None:
        p.route_hints = _parse_route_hints(hints, file, p.md_location("metadata.toolbag.route-hints"), problems)


def _parse_route_hints(text: str, file: str, where: str, problems: list[Problem]) -> RouteHints:
    fix = (
        'Write space-separated key=value pairs, e.g. "prefer=anthropic,openai avoid=local min-context=32000 '
        'needs=tools"; keys: ' + ", ".join(ROUTE_HINT_KEYS) + "."
    )
    prefer: tuple[str, ...] = ()
    avoid: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    min_context: int | None = None
    for token in text.split():
        key, sep, value = token.partition("=")
        if not sep or not value:
            problems.append(Problem(file, where, f"route hint {token!r} is not key=value", fix))
            continue
        items = tuple(v for v in value.split(",") if v)
        if key == "prefer":
            prefer = items
        elif key == "avoid":
            avoid = items
        elif key == "needs":
            unknown = [v for v in items if v not in MODEL_FEATURES]
            if unknown:
                problems.append(
                    Problem(
                        file,
                        where,
                        f"route hint needs={value}: {', '.join(unknown)} is not a model feature",
                        "Features are: " + ", ".join(MODEL_FEATURES) + ".",
                    )
                )
            needs = items
        elif key == "min-context":
            if value.isdigit() and int(value) > 0:
                min_context = int(value)
            else:
                problems.append(
                    Problem(file, where, f"route hint min-context={value} is not a positive whole number", fix)
                )
        else:
            problems.append(
                Problem(
                    file,
                    where,
                    f"{key!r} is not a route hint{did_you_mean(key, ROUTE_HINT_KEYS)}",
                    fix,
                )
            )
    return RouteHints(prefer=prefer, avoid=avoid, min_context_tokens=min_context, needs=needs)


# ---------------------------------------------------------------- schema.json


def _read_schema(p: ParsedSkill, problems: list[Problem]) -> None:
    text = p.texts[SCHEMA_FILE]
    file = p.file(SCHEMA_FILE)
    if text is None:
        problems.append(
            Problem(
                file,
                "",
                "the skill has no schema.json (or it is not UTF-8 text)",
                'Add schema.json with {"input": {...JSON Schema...}, "output": {...JSON Schema...}}.',
            )
        )
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        problems.append(
            Problem(
                file,
                f"line {err.lineno}, column {err.colno}",
                f"not valid JSON: {err.msg}",
                "Common causes: a comma after the last entry, a missing comma between entries, "
                "single quotes instead of double quotes, or a comment.",
            )
        )
        return
    if not isinstance(data, dict):
        problems.append(
            Problem(file, "top level", "schema.json must be an object", '{"input": {...}, "output": {...}}')
        )
        return
    for key in sorted(data):
        if key not in ("input", "output"):
            problems.append(
                Problem(
                    file,
                    f"top level, {key!r}",
                    f"{key!r} is not expected here{did_you_mean(key, ['input', 'output'])}",
                    "schema.json holds exactly two entries: input and output.",
                )
            )
    for key in ("input", "output"):
        schema = data.get(key)
        if schema is None:
            problems.append(
                Problem(
                    file,
                    "top level",
                    f"there is no {key!r} schema",
                    f'Add "{key}": {{"type": "object", "properties": {{...}}, "required": [...]}}.',
                )
            )
        elif not isinstance(schema, dict):
            problems.append(Problem(file, key, f"the {key} schema must be a JSON object", '{"type": "object", ...}'))
        else:
            setattr(p, f"{key}_schema", schema)


# ---------------------------------------------------------------- evals.yaml


def _read_evals(p: ParsedSkill, problems: list[Problem]) -> None:
    text = p.texts[EVALS_FILE]
    file = p.file(EVALS_FILE)
    if text is None:
        problems.append(
            Problem(
                file,
                "",
                f"the skill has no evals.yaml; toolbag needs at least {MIN_EVAL_CASES} eval cases per skill",
                "Copy evals.yaml from another skill and write cases for this one.",
            )
        )
        return
    try:
        doc = load_yaml(text)
    except YamlSyntaxError as err:
        where = f"line {err.line}" if err.line else ""
        problems.append(
            Problem(
                file,
                where,
                f"not valid YAML: {err}",
                "Check the indentation (spaces, not tabs) and that each list item starts with `- `.",
            )
        )
        return
    p.evals_doc = doc
    for dup_path, line in doc.duplicates:
        problems.append(
            Problem(
                file,
                f"line {line}, {_label(dup_path)}",
                f"{dup_path[-1]!r} appears twice in the same place; YAML keeps only the last one",
                "Remove or rename one of them.",
            )
        )
    data = doc.data
    if not isinstance(data, dict):
        problems.append(
            Problem(file, "top level", "evals.yaml must start with `cases:`", "cases:\n  - id: first-case ...")
        )
        return
    for key in sorted(map(str, data)):
        if key not in ("cases", "examples"):
            problems.append(
                Problem(
                    file,
                    p.evals_location((key,), key),
                    f"{key!r} is not expected here{did_you_mean(key, ['cases', 'examples'])}",
                    "evals.yaml holds `cases:` and, optionally, `examples:`.",
                )
            )
    p.cases = _read_cases(p, data.get("cases"), problems)
    p.examples = _read_examples(p, data.get("examples"), problems)


def _label(path: JsonPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "top level"


def _non_json(value: Any, path: JsonPath) -> JsonPath | None:
    """The path of the first value that JSON cannot hold (a non-text key, a special YAML type)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return path + (str(key),)
            found = _non_json(item, path + (key,))
            if found is not None:
                return found
        return None
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _non_json(item, path + (i,))
            if found is not None:
                return found
        return None
    if value is None or isinstance(value, (str, bool, int, float)):
        return None
    return path


def _read_cases(p: ParsedSkill, raw: Any, problems: list[Problem]) -> list[EvalCase] | None:
    file = p.file(EVALS_FILE)
    if raw is None:
        problems.append(
            Problem(file, "top level", "there is no `cases:` list", "cases:\n  - id: first-case\n    input: ...")
        )
        return None
    if not isinstance(raw, list):
        problems.append(
            Problem(
                file,
                p.evals_location(("cases",), "cases"),
                "`cases:` must be a list; start each case with `- id: ...`",
                "cases:\n  - id: first-case\n    input: ...",
            )
        )
        return None
    cases: list[EvalCase] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        base: JsonPath = ("cases", i)
        if not isinstance(item, dict):
            problems.append(
                Problem(file, p.evals_location(base, f"cases[{i}]"), "a case must be `key: value` lines", "")
            )
            continue
        case_id = item.get("id")
        label = f"case {case_id!r}" if isinstance(case_id, str) else f"cases[{i}]"
        before = len(problems)
        for key in sorted(map(str, item)):
            if key not in CASE_KEYS:
                problems.append(
                    Problem(
                        file,
                        p.evals_location(base + (key,), f"{label}.{key}"),
                        f"{key!r} is not a case field{did_you_mean(key, CASE_KEYS)}",
                        "A case has: " + ", ".join(CASE_KEYS) + ".",
                    )
                )
        if not isinstance(case_id, str) or not _CASE_ID.fullmatch(case_id):
            problems.append(
                Problem(
                    file,
                    p.evals_location(base, label),
                    "each case needs an `id:` of letters, digits, - or _",
                    "e.g. `- id: short-email`",
                )
            )
        elif case_id in seen:
            problems.append(
                Problem(
                    file,
                    p.evals_location(base + ("id",), label),
                    f"two cases have the id {case_id!r}",
                    "Give each case its own id.",
                )
            )
        else:
            seen.add(case_id)
        for key in ("input", "expected"):
            value = item.get(key)
            if value is None and key == "expected":
                continue
            if not isinstance(value, dict):
                problems.append(
                    Problem(
                        file,
                        p.evals_location(base + (key,), f"{label}.{key}"),
                        f"the case's {key} must be a set of `field: value` lines"
                        + (" (it is missing)" if value is None else ""),
                        f"{key}:\n  text: ...",
                    )
                )
                continue
            bad = _non_json(value, (key,))
            if bad is not None:
                problems.append(
                    Problem(
                        file,
                        p.evals_location(base + bad, f"{label}.{_label(bad)}"),
                        "this value cannot be JSON (keys must be text)",
                        'Quote the key, e.g. "1": ...',
                    )
                )
        checks = _read_checks(p, item.get("checks"), base, label, problems)
        if len(problems) > before or checks is None:
            continue  # reported; the other cases are still checked against the schemas
        cases.append(
            EvalCase(
                id=str(case_id),
                input=item["input"],
                checks=tuple(checks),
                expected=item.get("expected"),
                description=str(item.get("description") or ""),
            )
        )
    if len(raw) < MIN_EVAL_CASES:
        problems.append(
            Problem(
                file,
                p.evals_location(("cases",), "cases"),
                f"there are {len(raw)} case(s); toolbag needs at least {MIN_EVAL_CASES} per skill",
                "Add cases with different kinds of input: an ordinary one, an edge case and a hard one.",
            )
        )
    return cases


def _read_checks(p: ParsedSkill, raw: Any, base: JsonPath, label: str, problems: list[Problem]) -> list[Check] | None:
    file = p.file(EVALS_FILE)
    where_checks = p.evals_location(base + ("checks",), f"{label}.checks")
    if not isinstance(raw, list) or not raw:
        problems.append(
            Problem(
                file,
                where_checks,
                "each case needs a `checks:` list with at least one check",
                "checks:\n  - schema_valid: true",
            )
        )
        return None
    kinds = list(CHECK_KINDS)
    checks: list[Check] = []
    ok = True
    for j, item in enumerate(raw):
        path = base + ("checks", j)
        where = p.evals_location(path, f"{label}.checks[{j}]")
        if not isinstance(item, dict):
            problems.append(
                Problem(
                    file, where, "a check must be `kind: value` lines", "e.g. `- field: summary\n    max_words: 80`"
                )
            )
            ok = False
            continue
        found = [k for k in item if k in CHECK_KINDS]
        unknown = [str(k) for k in item if k not in CHECK_KINDS and k not in ("field", "semantic")]
        for key in unknown:
            problems.append(
                Problem(
                    file,
                    where,
                    f"{key!r} is not a kind of check{did_you_mean(key, kinds + ['field', 'semantic'])}",
                    "Kinds of check: " + ", ".join(kinds) + " (plus `field:` and `semantic:`).",
                )
            )
        if len(found) != 1:
            if not unknown:
                problems.append(
                    Problem(
                        file,
                        where,
                        "a check needs exactly one kind"
                        + (f", this one has {len(found)}: {', '.join(found)}" if found else ""),
                        "Split it into separate `- ...` checks. Kinds: " + ", ".join(kinds) + ".",
                    )
                )
            ok = False
            continue
        kind = found[0]
        value = item[kind]
        message = _check_value_problem(kind, value)
        field_path = item.get("field")
        if field_path is not None and (not isinstance(field_path, str) or not field_path.strip()):
            message = message or "`field:` must be a dotted path into the output, e.g. summary or items.amount"
        semantic = item.get("semantic", CHECK_KINDS[kind])
        if not isinstance(semantic, bool):
            message = message or "`semantic:` must be true or false"
        if message:
            problems.append(Problem(file, where, message, ""))
            ok = False
            continue
        checks.append(Check(kind=kind, value=value, field=field_path, semantic=bool(semantic)))
    return checks if ok else None


def _check_value_problem(kind: str, value: Any) -> str:
    if kind in ("schema_valid", "not_null"):
        return "" if value is True else f"`{kind}:` takes the value true"
    if kind in ("min_items", "max_items", "max_words", "max_chars"):
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        return "" if ok else f"`{kind}:` takes a whole number (0 or more), got {value!r}"
    if kind in ("contains", "not_contains"):
        return "" if isinstance(value, str) and value else f"`{kind}:` takes a piece of text, got {value!r}"
    if kind == "matches":
        if not isinstance(value, str):
            return f"`matches:` takes a regular expression as text, got {value!r}"
        try:
            re.compile(value)
        except re.error as err:
            return f"`matches:` {value!r} is not a valid regular expression: {err}"
        return ""
    if kind == "one_of":
        return "" if isinstance(value, list) and value else "`one_of:` takes a list of allowed values"
    return ""


def _read_examples(p: ParsedSkill, raw: Any, problems: list[Problem]) -> list[Example] | None:
    if raw is None:
        return []
    file = p.file(EVALS_FILE)
    if not isinstance(raw, list):
        problems.append(
            Problem(
                file,
                p.evals_location(("examples",), "examples"),
                "`examples:` must be a list of `- input: ... output: ...` items",
                "",
            )
        )
        return None
    examples: list[Example] = []
    for i, item in enumerate(raw):
        base: JsonPath = ("examples", i)
        label = f"examples[{i}]"
        if not isinstance(item, dict):
            problems.append(Problem(file, p.evals_location(base, label), "an example needs input: and output:", ""))
            continue
        ok = True
        for key in sorted(map(str, item)):
            if key not in EXAMPLE_KEYS:
                problems.append(
                    Problem(
                        file,
                        p.evals_location(base + (key,), f"{label}.{key}"),
                        f"{key!r} is not an example field{did_you_mean(key, EXAMPLE_KEYS)}",
                        "An example has input: and output:.",
                    )
                )
                ok = False
        for key in EXAMPLE_KEYS:
            value = item.get(key)
            if not isinstance(value, dict) or _non_json(value, ()) is not None:
                problems.append(
                    Problem(
                        file,
                        p.evals_location(base + (key,), f"{label}.{key}"),
                        f"the example's {key} must be a set of `field: value` lines",
                        "",
                    )
                )
                ok = False
        if ok:
            examples.append(Example(input=item["input"], output=item["output"]))
    return examples
