"""The Lua scripts of every multi-key Redis transition, one file each, with its key map on top."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def source(name: str) -> str:
    """The text of ``toolbag/lua/<name>.lua``."""
    return resources.files(__name__).joinpath(f"{name}.lua").read_text(encoding="utf-8")
