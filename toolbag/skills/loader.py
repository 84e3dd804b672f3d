"""Loading skills: one folder (``load_skill``) or a library of folders (``SkillLibrary``), validated.

The library is lazy and cached: a skill is read on first use and read again only when one of its files
changes (size or modification time), so a long-running worker picks up an edited skill, and its new
content hash, without a restart. A broken skill is cached too: asking for it again reports its problems
without reading its files again.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from toolbag.skills.errors import Problem, SkillLoadError, SkillNotFound
from toolbag.skills.hashing import HASHED_FILES, SKILL_FILE
from toolbag.skills.model import Skill
from toolbag.skills.parse import ParsedSkill
from toolbag.skills.validation import inspect_skill_dir

SKILLS_DIR_ENV = "TOOLBAG_SKILLS_DIR"


def default_skills_dir() -> Path:
    """``$TOOLBAG_SKILLS_DIR``; else ``./skills`` when this folder has one; else the starter library that ships
    with the package (:mod:`toolbag.starter`), so a skill is found from any working directory."""
    from toolbag.starter import starter_path

    env = os.environ.get(SKILLS_DIR_ENV)
    if env:
        return Path(env)
    here = Path("skills")
    starter = starter_path("skills")
    if here.is_dir() or starter is None:
        return here
    return starter


default_skills_root = default_skills_dir


def load_skill(path: str | Path) -> Skill:
    """Load and validate the skill folder at ``path``; raise :class:`SkillLoadError` listing every problem."""
    loaded, _watched = _load(path)
    if isinstance(loaded, Skill):
        return loaded
    raise SkillLoadError(str(path), loaded)


def _load(path: str | Path) -> tuple[Skill | tuple[Problem, ...], tuple[str, ...]]:
    """The skill (or its problems) and the relative paths of the files its schemas refer to or tried to."""
    parsed, problems = inspect_skill_dir(path)
    watched = tuple(parsed.referenced.tried)
    return (tuple(problems) if problems else _build(parsed)), watched


def _build(p: ParsedSkill) -> Skill:
    md, evals, input_schema, output_schema = p.md, p.evals, p.schemas.input, p.schemas.output
    # inspect_skill_dir reported a problem for every part that is missing, so all are present here.
    assert md is not None and md.header is not None and md.toolbag is not None and md.system is not None
    assert evals is not None and input_schema is not None and output_schema is not None
    header, fields = md.header, md.toolbag
    assert header.name and header.description
    return Skill(
        name=header.name,
        description=header.description,
        version=fields.version,
        capability=fields.capability,
        default_tier=fields.tier,
        input_schema=input_schema,
        output_schema=output_schema,
        body=md.body,
        system_template=md.system.text,
        user_template=md.user.text if md.user is not None else None,
        allowed_tools=header.tools,
        route_hints=fields.route_hints.route_hints(),
        max_output_tokens=fields.max_output_tokens,
        examples=tuple(evals.examples.values()),
        evals=tuple(evals.cases.values()),
        content_hash=p.content_hash,
        license=header.license,
        metadata=dict(header.metadata),
        path=p.path,
        schema_documents=dict(p.referenced.documents),
    )


_Stamp = tuple[tuple[int, int] | None, ...]


def _stamp(folder: Path, watched: tuple[str, ...] = ()) -> _Stamp:
    """Modification time and size of the three files and of ``watched`` (the files the schemas refer to)."""
    stamps: list[tuple[int, int] | None] = []
    for name in (*HASHED_FILES, *watched):
        try:
            st = (folder / name).stat()
        except OSError:
            stamps.append(None)
            continue
        stamps.append((st.st_mtime_ns, st.st_size))
    return tuple(stamps)


class SkillLibrary:
    """The skills under one folder (each a ``<name>/SKILL.md``). Thread-safe; loads lazily, caches."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_skills_dir()
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[_Stamp, tuple[str, ...], Skill | tuple[Problem, ...]]] = {}

    def names(self) -> list[str]:
        """Sorted names of the folders under the root that hold a ``SKILL.md``."""
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.root.iterdir()
            if entry.is_dir() and not entry.name.startswith(".") and (entry / SKILL_FILE).is_file()
        )

    def path(self, name: str) -> Path:
        """The folder of skill ``name`` (raises :class:`SkillNotFound` when there is none)."""
        folder = self.root / name
        if "/" in name or "\\" in name or name in ("", ".", "..") or not (folder / SKILL_FILE).is_file():
            raise SkillNotFound(name, str(self.root), self.names())
        return folder

    def get(self, name: str) -> Skill:
        """The skill ``name``, validated; raises :class:`SkillNotFound` or :class:`SkillLoadError`."""
        folder = self.path(name)
        with self._lock:
            cached = self._cache.get(name)
        if cached is None or cached[0] != _stamp(folder, cached[1]):
            stamp = _stamp(folder)
            loaded, watched = _load(folder)
            cached = ((*stamp, *_stamp(folder, watched)[len(stamp) :]), watched, loaded)
            with self._lock:
                self._cache[name] = cached
        if isinstance(cached[2], Skill):
            return cached[2]
        raise SkillLoadError(str(folder), cached[2])

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def all(self) -> list[Skill]:
        """Every skill in the library (raises on the first broken one; use validation to list them all)."""
        return [self.get(name) for name in self.names()]

    def clear(self) -> None:
        """Forget every cached skill."""
        with self._lock:
            self._cache.clear()
