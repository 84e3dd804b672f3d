"""A skill's content hash: sha256 over its three files and the files its schemas refer to, independent of where
the folder lives."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from toolbag.skills.canonical import normalize_text

SKILL_FILE = "SKILL.md"
SCHEMA_FILE = "schema.json"
EVALS_FILE = "evals.yaml"
#: The files that make up a skill's identity, in hashing order.
HASHED_FILES: tuple[str, ...] = (SKILL_FILE, SCHEMA_FILE, EVALS_FILE)


def content_hash_of_texts(texts: dict[str, str | None], referenced: Mapping[str, str] | None = None) -> str:
    """Hex sha256 of ``name, length, normalized text`` for each of :data:`HASHED_FILES`, then for each file
    the schemas refer to (``referenced``: relative path -> text, in path order; none leaves the hash as it was).

    A missing file hashes differently from an empty one. Folder names and paths are not part of it.
    """
    digest = hashlib.sha256(b"toolbag-skill-v1\n")
    hashed: dict[str, str | None] = {name: texts.get(name) for name in HASHED_FILES}
    hashed.update((f"ref:{path}", text) for path, text in sorted((referenced or {}).items()))
    for name, text in hashed.items():
        if text is None:
            digest.update(f"{name}\n-\n".encode())
            continue
        data = normalize_text(text).encode("utf-8")
        digest.update(f"{name}\n{len(data)}\n".encode())
        digest.update(data)
        digest.update(b"\n")
    return digest.hexdigest()


def content_hash(skill_dir: str | Path) -> str:
    """The content hash of the skill folder ``skill_dir``, as the loader computes it."""
    from toolbag.skills.parse import parse_skill_dir  # parse builds on this module

    return parse_skill_dir(Path(skill_dir))[0].content_hash
