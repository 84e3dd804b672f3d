"""Canonical JSON: the one serialization used wherever bytes must be identical across runs and machines."""

from __future__ import annotations

import json
from typing import Any


def canonical_json(value: Any, *, pretty: bool = False) -> str:
    """Sorted keys, no ASCII escaping, fixed separators; ``pretty`` indents by two spaces."""
    if pretty:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, indent=2)
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def canonical_bytes(value: Any) -> bytes:
    """UTF-8 bytes of the compact canonical JSON of ``value``."""
    return canonical_json(value).encode("utf-8")


def normalize_text(text: str) -> str:
    """Line endings to LF and no byte-order mark, so a Windows checkout reads the same as a Linux one."""
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n")
