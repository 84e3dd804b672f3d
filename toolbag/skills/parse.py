"""Reading a skill folder: each of its three files by its own reader, noting every problem of form (a missing
file, bad YAML or JSON, a malformed field) with the file and the place.

``SKILL.md`` is read by :mod:`toolbag.skills.skill_md`, ``schema.json`` by :mod:`toolbag.skills.schema_file`
and ``evals.yaml`` by :mod:`toolbag.skills.evals_file`. Checks across files (data against the schemas,
placeholders against the input fields) live in :mod:`toolbag.skills.validation`; turning the parts into a
:class:`~toolbag.skills.model.Skill` lives in :mod:`toolbag.skills.loader`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from toolbag.skills.canonical import normalize_text
from toolbag.skills.errors import Problem
from toolbag.skills.evals_file import Evals, read_evals_yaml
from toolbag.skills.hashing import EVALS_FILE, HASHED_FILES, SCHEMA_FILE, SKILL_FILE, content_hash_of_texts
from toolbag.skills.header import HeaderContext
from toolbag.skills.limits import MAX_FILE_BYTES, control_character
from toolbag.skills.schema_file import Schemas, read_schema_json
from toolbag.skills.schema_refs import Referenced, read_referenced
from toolbag.skills.skill_md import SkillMd, line_of, read_skill_md

__all__ = ["EVALS_FILE", "SCHEMA_FILE", "SKILL_FILE", "ParsedSkill", "parse_skill_dir"]


@dataclass(frozen=True)
class ParsedSkill:
    """What could be read from a skill folder; a part is ``None`` when its file is missing or unreadable."""

    path: Path
    content_hash: str
    md: SkillMd | None
    schemas: Schemas
    evals: Evals | None
    referenced: Referenced = field(default_factory=Referenced)


def parse_skill_dir(
    path: str | Path,
    *,
    capabilities: Collection[str] | None = None,
    route_targets: Collection[str] | None = None,
) -> tuple[ParsedSkill, list[Problem]]:
    """Read the three files of a skill folder, and the files its schemas refer to. Never raises for a broken
    skill; lists problems instead.

    ``capabilities`` and ``route_targets`` (from toolbag.yaml), when given, are what the header may name.
    """
    folder = Path(path)
    texts: dict[str, str | None] = {}
    refused: dict[str, Problem] = {}
    for name in HASHED_FILES:
        texts[name], problem = _read_text(folder / name)
        if problem is not None:
            refused[name] = problem
    if not folder.is_dir():
        missing = Problem(str(folder), "", "this folder does not exist", "Give the path of a skill folder.")
        content_hash = content_hash_of_texts(texts)
        return ParsedSkill(folder, content_hash, None, Schemas(str(folder / SCHEMA_FILE), None, None), None), [missing]
    context = HeaderContext(folder.name, capabilities, route_targets)
    md, md_problems = (None, []) if SKILL_FILE in refused else read_skill_md(folder, texts[SKILL_FILE], context)
    schemas, schema_problems = (
        (Schemas(str(folder / SCHEMA_FILE), None, None), [])
        if SCHEMA_FILE in refused
        else read_schema_json(folder, texts[SCHEMA_FILE])
    )
    both = (("input", schemas.input), ("output", schemas.output))
    roots = {key: schema for key, schema in both if schema is not None}
    referenced = read_referenced(folder, schemas.file, roots)
    evals, evals_problems = (None, []) if EVALS_FILE in refused else read_evals_yaml(folder, texts[EVALS_FILE])
    content_hash = content_hash_of_texts(texts, referenced.texts)
    parsed = ParsedSkill(folder, content_hash, md, schemas, evals, referenced)
    problems = [*refused.values(), *md_problems, *schema_problems, *referenced.problems, *evals_problems]
    return parsed, problems


def _read_text(file: Path) -> tuple[str | None, Problem | None]:
    """The file's text (``None`` when it is missing or not UTF-8) and, when no reader may see it, why not."""
    try:
        if not file.is_file():
            return None, None
        with file.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            return None, Problem(
                str(file),
                "",
                f"the file is larger than {MAX_FILE_BYTES // 1024} KiB, the most a skill file may hold",
                "Keep eval inputs and examples short; a skill's files are read on every change and by every worker.",
            )
        text = normalize_text(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError):
        return None, None
    found = control_character(text)
    if found is None:
        return text, None
    offset, code = found
    return text, Problem(
        str(file),
        f"line {line_of(text, offset)}",
        f"the line holds the control character {code}, which editors do not show and the file may not contain",
        "Retype the line, or delete the character with an editor that shows control characters.",
    )
