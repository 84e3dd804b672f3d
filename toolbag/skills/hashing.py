"""A skill's content hash: sha256 over its three files, independent of where the folder lives."""

from __future__ import annotations

import hashlib
from pathlib import Path

from toolbag.skills.canonical import normalize_text

SKILL_FILE = "SKILL.md"
SCHEMA_FILE = "schema.json"
EVALS_FILE = "evals.yaml"
#: The files that make up a skill's identity, in hashing order.
HASHED_FILES: tuple[str, ...] = (SKILL_FILE, SCHEMA_FILE, EVALS_FILE)


def content_hash_of_texts(texts: dict[str, str | None]) -> str:
    """Hex sha256 of ``name, length, normalized text`` for each of :data:`HASHED_FILES`.

    A missing file hashes differently from an empty one. Folder names and paths are not part of it.
    """
    digest = hashlib.sha256(b"toolbag-skill-v1\n")
    for name in HASHED_FILES:
        text = texts.get(name)
        if text is None:
            digest.update(f"{name}\n-\n".encode())
            continue
        data = normalize_text(text).encode("utf-8")
        digest.update(f"{name}\n{len(data)}\n".encode())
        digest.update(data)
        digest.update(b"\n")
    return digest.hexdigest()


def content_hash(skill_dir: str | Path) -> str:
    """The content hash of the skill folder ``skill_dir`` (files read as UTF-8)."""
    folder = Path(skill_dir)
    texts: dict[str, str | None] = {}
    for name in HASHED_FILES:
        file = folder / name
        texts[name] = file.read_text(encoding="utf-8") if file.is_file() else None
    return content_hash_of_texts(texts)
