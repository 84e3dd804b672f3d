"""The Lua scripts of every multi-key Redis transition, one file each, with its key map on top.

A rule two scripts share lives in one fragment: a file that only defines functions (``rl_log``, ``rl_admit``,
``rl_reconcile``, ``health_learn``). A script names the fragments it calls on its first line,
``-- uses: rl_log rl_admit``; :func:`script` prepends them (and the fragments they use, each once, before
its users), so the text Redis runs is one chunk and the rule has one copy.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

USES = "-- uses:"


@cache
def source(name: str) -> str:
    """The text of ``toolbag/lua/<name>.lua``."""
    return resources.files(__name__).joinpath(f"{name}.lua").read_text(encoding="utf-8")


def uses(name: str) -> list[str]:
    """The fragments ``<name>.lua`` names on its first line (``-- uses: a b``)."""
    first = source(name).split("\n", 1)[0]
    return first[len(USES):].split() if first.startswith(USES) else []


@cache
def script(name: str) -> str:
    """The text Redis runs for ``<name>.lua``: the fragments it uses, in order, then the script itself."""
    order: list[str] = []

    def visit(fragment: str, path: tuple[str, ...]) -> None:
        if fragment in path:
            raise ValueError(f"lua fragments use each other in a cycle: {' -> '.join((*path, fragment))}")
        if fragment in order:
            return
        for used in uses(fragment):
            visit(used, (*path, fragment))
        order.append(fragment)

    visit(name, ())
    return "\n".join(source(part) for part in order)
