"""Gateway tool names (``clock.now``, ``notes.read``) as vendor function names.

Anthropic and OpenAI accept only ``[A-Za-z0-9_-]{1,64}`` (Gemini also allows dots, but one scheme for all is
simpler): every other character becomes ``_``, names longer than 64 are shortened with a hash suffix, and a
clash within one offer gets ``_2``, ``_3`` ... in sorted order, so the mapping is deterministic.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

__all__ = ["sanitize", "wire_names"]

_BAD = re.compile(r"[^A-Za-z0-9_-]")
_MAX = 64


def sanitize(name: str) -> str:
    """``name`` with every character a vendor rejects replaced, at most 64 characters."""
    clean = _BAD.sub("_", name) or "tool"
    if len(clean) > _MAX:
        clean = clean[: _MAX - 9] + "_" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return clean


def wire_names(names: Iterable[str]) -> dict[str, str]:
    """``{gateway name: wire name}``, unique wire names."""
    taken: set[str] = set()
    out: dict[str, str] = {}
    for name in sorted(set(names)):
        base = sanitize(name)
        wire, n = base, 1
        while wire in taken:
            n += 1
            suffix = f"_{n}"
            wire = base[: _MAX - len(suffix)] + suffix
        taken.add(wire)
        out[name] = wire
    return out
