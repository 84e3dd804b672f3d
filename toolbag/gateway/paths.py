"""Paths as a ``prefix:`` argument constraint reads them: POSIX, resolved lexically before any comparison.

``normal_path`` collapses repeated ``/``, drops ``.`` segments and resolves ``..`` against the segment before
it (``..`` at ``/`` stays at ``/``, as the kernel does). A trailing ``/`` is kept, and a path that ends in
``.`` or ``..`` names a directory, so it gets one. Nothing touches the file system.

A value with a backslash, a ``%``, a NUL or an unpaired surrogate is not read as a path at all (``None``):
a tool might treat ``\\`` as a separator or decode ``%2e%2e`` into ``..`` after the check.
"""

from __future__ import annotations

__all__ = ["normal_path"]

_NOT_IN_A_PATH = ("\\", "%", "\x00")


def normal_path(value: str) -> str | None:
    """``value`` resolved lexically, or None when it is not read as a path."""
    if any(char in value for char in _NOT_IN_A_PATH) or not _is_unicode(value):
        return None
    absolute = value.startswith("/")
    segments: list[str] = []
    for segment in value.split("/"):
        if segment in ("", "."):
            continue
        if segment != "..":
            segments.append(segment)
        elif segments and segments[-1] != "..":
            segments.pop()
        elif not absolute:
            segments.append("..")
    path = ("/" if absolute else "") + "/".join(segments)
    names_a_directory = value.endswith(("/", "/.", "/..")) or value in (".", "..")
    if names_a_directory and segments:
        path += "/"
    return path


def _is_unicode(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
