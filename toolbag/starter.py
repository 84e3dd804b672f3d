"""The starter library that ships with toolbag: skills, the default tool policy and tool registry.

A wheel carries them inside the package (``toolbag/starter/``, copied there by the build); a source checkout
has them at its root. Local files always win: each lookup (skills, ``policy.yaml``, ``tools.yaml``) tries its
environment variable, then the working directory, and only then :func:`starter_path`.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGED = Path(__file__).resolve().parent / "starter"
_CHECKOUT = Path(__file__).resolve().parent.parent


def starter_path(name: str) -> Path | None:
    """``name`` (``skills``, ``policy.yaml``, ``tools.yaml``) from the installed package, else from the source
    checkout this package runs from; None when neither has it."""
    packaged = _PACKAGED / name
    if packaged.exists():
        return packaged
    checkout = _CHECKOUT / name
    if (_CHECKOUT / "pyproject.toml").is_file() and checkout.exists():
        return checkout
    return None
