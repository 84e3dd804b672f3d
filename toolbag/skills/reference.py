"""The Agent Skills reference validator (``skills_ref``, the rules of the ``agentskills validate`` command) on
a skill's SKILL.md, its messages given the place and a fix in plain words."""

from __future__ import annotations

import re
from pathlib import Path

import skills_ref

from toolbag.skills.errors import Problem
from toolbag.skills.header import TOOLBAG_FIELDS
from toolbag.skills.skill_md import SkillMd

_SPEC_FIELDS = "name, description, license, compatibility, metadata and allowed-tools"


def reference_problems(folder: Path, md: SkillMd) -> list[Problem]:
    """What the reference validator finds wrong with the skill folder, as problems in SKILL.md."""
    return [problem for message in skills_ref.validate(folder) for problem in _translate(md, message)]


def _translate(md: SkillMd, message: str) -> list[Problem]:
    file = md.file
    dir_match = re.match(r"Directory name '(.*)' must match skill name '(.*)'", message)
    if dir_match:
        folder, name = dir_match.groups()
        return [
            Problem(
                file,
                md.where("name"),
                f"the name {name!r} is not the same as the folder name {folder!r}",
                f"Make them the same: rename the folder to {name!r}, or set `name: {folder}`.",
            )
        ]
    fields = re.match(r"Unexpected fields in frontmatter: (.*?)\. Only", message)
    if fields:
        return [_unexpected_field(md, key.strip()) for key in fields.group(1).split(",")]
    if message.startswith("Missing required field in frontmatter: "):
        key = message.rsplit(": ", 1)[1]
        example = "name: my-skill" if key == "name" else "description: What it does. Use when ..."
        return [Problem(file, "frontmatter", f"the frontmatter has no {key}", f"Add `{example}`.")]
    if "name" in message.lower() and ("Skill name" in message or "Field 'name'" in message):
        return [
            Problem(
                file,
                md.where("name"),
                message.replace("Skill name", "the name"),
                "Use lowercase letters, digits and single hyphens, like extract-invoice, "
                "and the same name as the folder.",
            )
        ]
    if "escription" in message:
        return [
            Problem(
                file,
                md.where("description"),
                message.replace("Field 'description'", "the description"),
                "Say in one or two sentences what the skill does and when to use it (at most 1024 characters).",
            )
        ]
    if "ompatibility" in message:
        return [Problem(file, md.where("compatibility"), message, "Keep it under 500 characters.")]
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


def _unexpected_field(md: SkillMd, key: str) -> Problem:
    toolbag_key = f"toolbag.{key}"
    if toolbag_key in TOOLBAG_FIELDS:
        fix = f'Move it under `metadata:` as `  {toolbag_key}: "..."` (values are text).'
    else:
        fix = "Move it under `metadata:` (indented by two spaces, value as text), or remove it."
    return Problem(
        md.file,
        md.where(key),
        f"{key!r} is not allowed at the top of the frontmatter; the Agent Skills format allows only {_SPEC_FIELDS}",
        fix,
    )
