"""Reading SKILL.md: the frontmatter (strict YAML, parsed by the Agent Skills reference parser) with the line
of each key, its fields (checked by :mod:`toolbag.skills.header`), and the body.

The body before a ``## Input`` heading is the system text; the part after it is the user message. Both may
hold ``{{ placeholders }}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from skills_ref.errors import ParseError
from skills_ref.parser import parse_frontmatter

from toolbag.skills.errors import Problem
from toolbag.skills.hashing import SKILL_FILE
from toolbag.skills.header import (
    HeaderContext,
    SkillHeader,
    ToolbagFields,
    header_problems,
    toolbag_entries,
    toolbag_problems,
)
from toolbag.skills.limits import MAX_FRONTMATTER_CHARS
from toolbag.skills.plain_errors import failed, validated
from toolbag.skills.yamlfile import YamlLimitError, YamlSyntaxError, compose_yaml

_INPUT_HEADING = re.compile(r"^##[ \t]+input[ \t]*$", re.IGNORECASE | re.MULTILINE)
_TOP_KEY = re.compile(r"^([^\s:#][^:]*):")
_NESTED_KEY = re.compile(r"^[ \t]+([^\s:#][^:]*):")

STRICT_YAML_FIX = (
    "The frontmatter is read as strict YAML: write one `key: value` per line, indent the entries under "
    "`metadata:` by two spaces, do not use { } or [ ] braces, and put values that contain `: ` in quotes."
)


def line_of(text: str, offset: int) -> int:
    """1-based line number of a character offset."""
    return text.count("\n", 0, offset) + 1


@dataclass(frozen=True)
class Template:
    """A part of the body that may hold ``{{ placeholders }}``; ``offset`` is where it starts in SKILL.md."""

    text: str
    offset: int


@dataclass(frozen=True)
class SkillMd:
    """What was read from SKILL.md; a part is ``None`` when it has problems (or, for ``user``, is absent)."""

    file: str
    text: str
    key_lines: Mapping[str, int]
    header: SkillHeader | None
    toolbag: ToolbagFields | None
    body: str
    system: Template | None
    user: Template | None

    def where(self, key: str) -> str:
        """``line N, <key>`` for a frontmatter key (``metadata.toolbag.version`` for a nested one)."""
        return _place(self.key_lines, key)

    def line_at(self, offset: int) -> int:
        """The line of a character offset in SKILL.md."""
        return line_of(self.text, offset)


def read_skill_md(folder: Path, text: str | None, context: HeaderContext) -> tuple[SkillMd | None, list[Problem]]:
    """Read SKILL.md (``None`` when it is missing); ``None`` back when its frontmatter cannot be read."""
    file = str(folder / SKILL_FILE)
    if text is None:
        return None, [_missing_file_problem(folder, file)]
    too_much = _frontmatter_bound_problem(file, text)
    if too_much is not None:
        return None, [too_much]
    try:
        front, _ = parse_frontmatter(text)
    except ParseError as err:
        return None, [_frontmatter_problem(file, str(err))]
    key_lines = _frontmatter_key_lines(text)
    where = partial(_place, key_lines)
    body, system, user, problems = _split_body(file, text)
    header, errors = validated(SkillHeader, front, context)
    problems += header_problems(file, errors, where)
    toolbag = None
    if not failed(errors, ("metadata",)):
        metadata: Mapping[str, str] = front["metadata"]
        toolbag, errors = validated(ToolbagFields, toolbag_entries(metadata), context)
        problems += toolbag_problems(file, errors, metadata, [str(key) for key in front], where)
    md = SkillMd(file, text, key_lines, header, toolbag, body, system, user)
    return md, problems


def _missing_file_problem(folder: Path, file: str) -> Problem:
    if (folder / "skill.md").is_file():
        return Problem(str(folder / "skill.md"), "", "the file is named skill.md", "Rename it to SKILL.md.")
    return Problem(
        file,
        "",
        "the skill has no SKILL.md (or it is not UTF-8 text)",
        "Copy an existing skill folder, e.g. skills/summarize, and edit its SKILL.md.",
    )


# ---------------------------------------------------------------- the frontmatter


def _frontmatter_bound_problem(file: str, text: str) -> Problem | None:
    """A problem when the frontmatter is longer or deeper than any header needs (the strict YAML parser takes
    seconds over a long one and fails on a deep one); ``None`` leaves every other fault to that parser."""
    opening, *rest = text.split("---", 2)
    if opening or len(rest) < 2:
        return None
    frontmatter = rest[0]
    if len(frontmatter) > MAX_FRONTMATTER_CHARS:
        return Problem(
            file,
            "frontmatter",
            f"the frontmatter is {len(frontmatter)} characters long; it may be at most {MAX_FRONTMATTER_CHARS}",
            "Keep the description to one or two sentences and put everything else in the instructions "
            "below the closing --- line.",
        )
    try:
        compose_yaml(frontmatter)
    except YamlLimitError as err:
        where = f"line {err.line}, frontmatter" if err.line else "frontmatter"
        return Problem(file, where, str(err), err.fix)
    except YamlSyntaxError:
        pass
    return None


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


def _place(key_lines: Mapping[str, int], key: str) -> str:
    line = key_lines.get(key)
    return f"line {line}, {key}" if line else key


def _frontmatter_key_lines(text: str) -> dict[str, int]:
    """The line of each frontmatter key: ``name``, and ``metadata.toolbag.version`` for nested ones."""
    lines: dict[str, int] = {}
    parent: str | None = None
    for number, line in enumerate(text.split("\n")[1:], start=2):
        if line.strip() == "---":
            break
        top = _TOP_KEY.match(line)
        if top:
            parent = top.group(1).strip()
            lines.setdefault(parent, number)
            continue
        nested = _NESTED_KEY.match(line)
        if nested and parent is not None:
            lines.setdefault(f"{parent}.{nested.group(1).strip()}", number)
    return lines


# ---------------------------------------------------------------- the body


def _split_body(file: str, text: str) -> tuple[str, Template | None, Template | None, list[Problem]]:
    """``(body, system text, user message, problems)``; the frontmatter is known to be closed."""
    opening, frontmatter, raw = text.split("---", 2)
    start = len(opening) + len(frontmatter) + 6 + (len(raw) - len(raw.lstrip()))
    body = raw.strip()
    if not body:
        return body, None, None, [
            Problem(
                file,
                "after the frontmatter",
                "there are no instructions after the frontmatter",
                "Write the instructions for the model below the closing --- line.",
            )
        ]
    headings = list(_INPUT_HEADING.finditer(body))
    if len(headings) > 1:
        return body, None, None, [
            Problem(
                file,
                f"line {line_of(text, start + headings[1].start())}",
                "there is more than one `## Input` heading",
                "Keep one `## Input` heading; everything below it is the message that carries the input.",
            )
        ]
    if not headings:
        return body, Template(body, start), None, []
    heading = headings[0]
    where = f"line {line_of(text, start + heading.start())}"
    system = body[: heading.start()].strip()
    after = body[heading.end() :]
    user = after.strip()
    problems = []
    if not system:
        problems.append(
            Problem(
                file,
                where,
                "there are no instructions before the `## Input` heading",
                "Write what the model should do above `## Input`.",
            )
        )
    if not user:
        problems.append(
            Problem(
                file,
                where,
                "the `## Input` section is empty",
                "Under `## Input`, write how the input is shown to the model, e.g. {{ text }}.",
            )
        )
    user_offset = start + heading.end() + (len(after) - len(after.lstrip()))
    return (
        body,
        Template(system, start) if system else None,
        Template(user, user_offset) if user else None,
        problems,
    )
