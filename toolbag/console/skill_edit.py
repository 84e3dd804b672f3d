"""Editing a skill from the browser: check the edited files exactly as ``toolbag skills validate`` does, and
save them as a reviewable change (the version bumped, the files written, the diff shown).

A check copies the skill folder to a scratch folder of the same name, writes the edited files there and runs
:func:`toolbag.skills.validate_skill_dir` on it, so the problems are the CLI's, word for word. A save writes
nothing unless that check passes; when the content changed and the version did not, the patch number of
``metadata.toolbag.version`` is raised (a change CI's ``toolbag check --locked`` would otherwise flag as
unbumped). The result carries a unified diff of each file and the line ``toolbag diff`` prints for the skill.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from toolbag.errors import ToolbagError
from toolbag.governance.drift import diff_locks
from toolbag.skills import Problem, SkillError, load_skill, validate_skill_dir

EDITABLE = ("SKILL.md", "schema.json", "evals.yaml")
MAX_FILE_CHARS = 200_000
_VERSION_LINE = re.compile(r'^(\s*toolbag\.version:\s*)(["\']?)(\d{1,9})\.(\d{1,9})\.(\d{1,9})\2\s*$', re.MULTILINE)


class SkillEditError(ToolbagError):
    """An edit that cannot be saved as asked; the message says why."""


@dataclass(frozen=True)
class Checked:
    problems: list[Problem]

    def by_file(self) -> dict[str, list[str]]:
        """``file name -> the CLI's lines`` (problems in other files under ``""``)."""
        out: dict[str, list[str]] = {}
        for p in self.problems:
            name = Path(p.file).name
            out.setdefault(name if name in EDITABLE else "", []).append(str(p))
        return out


@dataclass(frozen=True)
class Saved:
    version_before: str
    version_after: str
    changed: bool
    bumped: bool
    file_diffs: dict[str, str] = field(default_factory=dict)
    review: list[str] = field(default_factory=list)  # the `toolbag diff` lines for this skill


def read_files(folder: Path) -> dict[str, str]:
    out = {}
    for name in EDITABLE:
        path = folder / name
        out[name] = path.read_text(encoding="utf-8") if path.is_file() else ""
    return out


def _sized(texts: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for name in EDITABLE:
        text = texts.get(name, "").replace("\r\n", "\n")
        if len(text) > MAX_FILE_CHARS:
            raise SkillEditError(f"{name}: at most {MAX_FILE_CHARS} characters")
        out[name] = text
    return out


def _scratch_copy(folder: Path, texts: Mapping[str, str], scratch: Path) -> Path:
    copy = scratch / folder.name
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns(".*"))
    for name, text in texts.items():
        (copy / name).write_text(text, encoding="utf-8")
    return copy


def check(folder: Path, texts: Mapping[str, str], *, capabilities: Collection[str] | None = None,
          route_targets: Collection[str] | None = None) -> Checked:
    """The problems ``toolbag skills validate`` would list for the folder with ``texts`` in it."""
    sized = _sized(texts)
    with tempfile.TemporaryDirectory(prefix="toolbag-console-") as scratch:
        copy = _scratch_copy(folder, sized, Path(scratch))
        problems = validate_skill_dir(copy, capabilities=capabilities, route_targets=route_targets)
    return Checked([Problem(str(folder / Path(p.file).name) if Path(p.file).name in EDITABLE else p.file,
                            p.location, p.message, p.fix) for p in problems])


def bump_patch(md_text: str) -> tuple[str, str]:
    """``SKILL.md`` with the patch number of its version raised, and the new version."""
    found = _VERSION_LINE.search(md_text)
    if found is None:
        raise SkillEditError('SKILL.md: no metadata line `toolbag.version: "X.Y.Z"` to raise')
    head, quote, major, minor, patch = found.groups()
    version = f"{int(major)}.{int(minor)}.{int(patch) + 1}"
    return md_text[:found.start()] + f"{head}{quote or chr(34)}{version}{quote or chr(34)}" + md_text[found.end():], \
        version


def _write(folder: Path, texts: Mapping[str, str]) -> None:
    for name, text in texts.items():
        path = folder / name
        partial = path.with_name(path.name + ".partial")
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)


def save(folder: Path, texts: Mapping[str, str], *, capabilities: Collection[str] | None = None,
         route_targets: Collection[str] | None = None) -> tuple[Checked, Saved | None]:
    """Check, bump the version if the content changed without one, write, and describe the change.
    Nothing is written while the check finds a problem (then the second value is None)."""
    sized = _sized(texts)
    checked = check(folder, sized, capabilities=capabilities, route_targets=route_targets)
    if checked.problems:
        return checked, None
    try:
        before = load_skill(folder)
    except SkillError as err:
        raise SkillEditError(f"the saved skill does not load ({err}); fix it in the repository first") from None
    old_texts = read_files(folder)
    with tempfile.TemporaryDirectory(prefix="toolbag-console-") as scratch:
        after = load_skill(_scratch_copy(folder, sized, Path(scratch)))
        bumped = False
        if after.content_hash != before.content_hash and after.version == before.version:
            sized["SKILL.md"], _version = bump_patch(sized["SKILL.md"])
            bumped = True
            after = load_skill(_scratch_copy(folder, sized, Path(scratch) / "bumped"))
    if after.content_hash == before.content_hash:
        return checked, Saved(before.version, before.version, False, False)
    try:
        _write(folder, sized)
    except OSError as err:
        raise SkillEditError(f"cannot write {folder}: {err.strerror or err}; the skills folder of this server "
                             "is read-only (edit the skill in the repository instead)") from None
    diffs = {name: "".join(difflib.unified_diff(old_texts[name].splitlines(keepends=True),
                                                sized[name].splitlines(keepends=True),
                                                f"a/{folder.name}/{name}", f"b/{folder.name}/{name}"))
             for name in EDITABLE if old_texts[name] != sized[name]}

    def entry(version: str, content_hash: str) -> dict[str, object]:
        return {"format": 1, "skills": {folder.name: {"version": version, "capability": after.capability,
                                                      "content_hash": content_hash}}}

    review = [c.text for c in diff_locks(entry(before.version, before.content_hash),
                                         entry(after.version, after.content_hash))]
    return checked, Saved(before.version, after.version, True, bumped, diffs, review)
