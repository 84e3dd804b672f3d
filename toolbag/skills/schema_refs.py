"""Reading the files a skill's schemas refer to: ``{"$ref": "common.json#/$defs/address"}`` reads ``common.json``
from the skill's own folder, once, when the skill is read.

The reading is a :class:`referencing.Registry`'s ``retrieve`` limited to the folder: a relative path to a JSON
file inside it, bounded like the skill's own files. A URL of any scheme, an absolute path, a ``..`` step and a
symlink that leads out of the folder are refused with the reason, so nothing is fetched and what a skill accepts
depends on its folder alone. The files read count in the skill's content hash
(:func:`toolbag.skills.hashing.content_hash_of_texts`); validating a value later uses them from memory
(:func:`toolbag.skills.schema_engine.schema_validator`) and reads nothing.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urldefrag, urlsplit

from referencing import Registry, Resource
from referencing.exceptions import Unresolvable, Unretrievable
from referencing.jsonschema import DRAFT202012

from toolbag.skills.canonical import normalize_text
from toolbag.skills.errors import Problem, SkillError
from toolbag.skills.jsonpath import path_text
from toolbag.skills.limits import MAX_FILE_BYTES, MAX_NESTING, control_character, json_nesting
from toolbag.skills.schemas import subschemas

#: The most files one skill's schemas may refer to (each at most ``MAX_FILE_BYTES``).
MAX_REFERENCED_FILES = 16
_REF_KEYWORDS = ("$ref", "$dynamicRef")
_FIX = (
    'Refer to a JSON file inside the skill folder by its relative path, e.g. "common.json#/$defs/<name>" '
    'or "defs/address.json", or copy the definition under "$defs" and refer to it as "#/$defs/<name>".'
)


class RefRefused(SkillError):
    """A reference that may not be read, with the reason in plain words (reported as a :class:`Problem`)."""


@dataclass
class Referenced:
    """The files the schemas refer to: their texts (hashed) and contents by relative path, and the problems."""

    texts: dict[str, str] = field(default_factory=dict)
    documents: dict[str, Any] = field(default_factory=dict)
    tried: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def label(uri: str) -> str:
    """How a problem names a referenced file: its path inside the folder (``./defs/a.json`` is ``defs/a.json``)."""
    return str(PurePosixPath(uri))


def refusal(ref: str, base: str = "") -> str | None:
    """Why the file part of ``ref``, written in the file ``base`` (``""``: schema.json), may not be read
    (``None`` when it is a relative path that stays inside the folder)."""
    target = urldefrag(ref).url
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return f"{ref!r} is a URL; toolbag never fetches a schema, so what a skill accepts depends on its folder alone"
    if target.startswith("/") or "\\" in target or (len(target) > 1 and target[1] == ":"):
        return f"{ref!r} is an absolute path; a reference names a file inside the skill folder by a relative path"
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(base), parts.path))
    if joined == ".." or joined.startswith("../"):
        return f"{ref!r} steps out of the skill folder with '..'; a referenced file must be inside the folder"
    return None


class FolderFiles:
    """A ``retrieve`` for :class:`referencing.Registry` that reads JSON files inside one folder only, bounded."""

    def __init__(self, folder: Path, found: Referenced) -> None:
        self.root = folder.resolve()
        self.found = found

    def __call__(self, uri: str) -> Resource[Any]:
        reason = refusal(uri)
        if reason is not None:
            raise RefRefused(reason)
        if uri in self.found.documents:
            return DRAFT202012.create_resource(self.found.documents[uri])
        if uri not in self.found.tried:
            self.found.tried.append(uri)
        if len(self.found.documents) >= MAX_REFERENCED_FILES:
            raise RefRefused(f"the schemas refer to more than {MAX_REFERENCED_FILES} files, the most a skill may")
        text = self._read(uri)
        depth = json_nesting(text)
        if depth > MAX_NESTING:
            raise RefRefused(f"{uri} nests objects and lists {depth} levels deep; the most is {MAX_NESTING}")
        try:
            contents = json.loads(text)
        except json.JSONDecodeError as err:
            raise RefRefused(f"{uri} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
        if not isinstance(contents, (dict, bool)):
            raise RefRefused(f"{uri} must hold a JSON Schema (an object)")
        self.found.texts[uri] = text
        self.found.documents[uri] = contents
        return DRAFT202012.create_resource(contents)

    def _read(self, uri: str) -> str:
        file = (self.root / uri).resolve()
        if not file.is_relative_to(self.root):
            raise RefRefused(f"{uri} leads out of the skill folder through a symlink; a referenced file must be in it")
        if not file.is_file():
            raise RefRefused(f"{uri} does not exist in the skill folder")
        with file.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise RefRefused(f"{uri} is larger than {MAX_FILE_BYTES // 1024} KiB, the most a skill file may hold")
        try:
            text = normalize_text(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise RefRefused(f"{uri} is not UTF-8 text") from None
        found = control_character(text)
        if found is not None:
            raise RefRefused(f"{uri} holds the control character {found[1]}, which a skill file may not contain")
        return text


def read_referenced(folder: Path, file: str, roots: Mapping[str, Any]) -> Referenced:
    """Read every file the schemas in ``roots`` (``{"input": ..., "output": ...}``) refer to, and the files those
    refer to, through a registry whose ``retrieve`` is :class:`FolderFiles`. ``file`` is schema.json's path."""
    found = Referenced()
    registry: Registry[Any] = Registry(retrieve=FolderFiles(folder, found))  # type: ignore[call-arg]  # attrs stubs
    pending: list[tuple[str, str, Any, str]] = [(file, root, schema, "") for root, schema in roots.items()]
    walked: set[str] = set()
    while pending:
        where_file, root, schema, base = pending.pop(0)
        resolver = registry.resolver(base_uri=base)
        has_id = any("$id" in node for _path, node in subschemas(schema))
        for path, node in subschemas(schema):
            for keyword in _REF_KEYWORDS:
                ref = node.get(keyword)
                if not isinstance(ref, str) or ref.startswith("#"):
                    continue
                where = path_text(root, path + (keyword,))
                reason = refusal(ref, base)
                if reason is None and has_id:
                    reason = f'{ref!r} is a file reference in a schema that sets "$id", which changes where it points'
                if reason is None:
                    reason = _lookup(resolver, ref)
                if reason is not None:
                    found.problems.append(Problem(where_file, where, reason, _FIX))
        for uri, contents in list(found.documents.items()):
            if uri not in walked:
                walked.add(uri)
                pending.append((str(folder / uri), label(uri), contents, uri))
    return found


def _lookup(resolver: Any, ref: str) -> str | None:
    try:
        resolver.lookup(ref)
    except Unresolvable as err:
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, (RefRefused, Unretrievable)):
            cause = cause.__cause__
        if isinstance(cause, Unretrievable):  # what the registry made of what retrieve raised
            cause = cause.__cause__ or cause
        if isinstance(cause, RefRefused):
            return str(cause)
        if cause is not None:
            return f"{ref!r} cannot be read: {type(cause).__name__}"
        return f"{ref!r} points at nothing in {urldefrag(ref).url}"
    return None
