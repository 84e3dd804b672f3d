"""A place in JSON-like data (a path of keys and list indexes), and how a problem writes it."""

from __future__ import annotations

JsonPath = tuple[str | int, ...]


def path_text(root: str, path: JsonPath) -> str:
    """``root`` followed by ``.key`` or ``[index]`` for each step, e.g. ``output.items[2].amount``."""
    text = root
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def path_label(path: JsonPath) -> str:
    """A path without a root, e.g. ``cases[0].input`` (``top level`` for the empty path)."""
    return path_text("", path).removeprefix(".") or "top level"
