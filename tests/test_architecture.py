"""The house's rules, checked on the source: dependencies point one way, and every library error has one root."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import toolbag
from toolbag.errors import ToolbagError

REPO = Path(__file__).resolve().parent.parent
# The composition root: the CLI starts worker and supervisor processes, so it may reach the Celery side.
COMPOSITION_ROOT = {"toolbag/cli/app.py"}
CELERY_SIDE = {"workers", "celery", "kombu"}  # the top-level packages the library must never import


def _forbidden(path: Path) -> set[str]:
    return {m for m in _imported_modules(path) if m.split(".")[0] in CELERY_SIDE}


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _library_files() -> list[Path]:
    return sorted(p for p in (REPO / "toolbag").rglob("*.py") if p.relative_to(REPO).as_posix() not in COMPOSITION_ROOT)


@pytest.mark.parametrize("path", _library_files(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_the_library_never_imports_the_celery_side(path: Path) -> None:
    forbidden = _forbidden(path)
    assert not forbidden, f"{path.relative_to(REPO)} imports {sorted(forbidden)}: only the CLI composes processes"


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from workers.runtime import current\n    import celery.signals\n"
                   "    from kombu import Connection\n")
    assert _forbidden(bad) == {"workers.runtime", "celery.signals", "kombu"}


def test_the_facade_exports_what_it_lists() -> None:
    assert sorted(toolbag.__all__) == sorted(toolbag._EXPORTS)
    for name in toolbag.__all__:
        assert getattr(toolbag, name) is not None, name
    with pytest.raises(AttributeError):
        _ = toolbag.NoSuchThing  # type: ignore[attr-defined]


def test_every_library_error_sits_under_toolbag_error() -> None:
    strays = []
    for info in pkgutil.walk_packages(toolbag.__path__, "toolbag."):
        if info.name.startswith(("toolbag.simulator", "toolbag.cli")):
            continue  # the simulator is a stand-in vendor; the CLI turns errors into exit codes
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != info.name or not issubclass(cls, Exception):
                continue
            if not issubclass(cls, ToolbagError) and not cls.__name__.startswith("_") and cls.__name__ != "HandBack":
                strays.append(f"{info.name}.{cls.__name__}")
    assert not strays, f"errors outside ToolbagError: {strays}"
