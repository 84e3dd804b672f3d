"""Local Python tools: a function decorated with :func:`tool` becomes a gateway tool.

::

    from toolbag.gateway.local import tool

    @tool("weather.today")
    def today(city: str, units: str = "metric") -> str:
        \"\"\"Today's weather for a city.\"\"\"
        ...

The JSON Schema of the arguments comes from the signature (pydantic), the description from the docstring.
Arguments are validated before the function runs; a validation error goes back to the model as a tool
error. Register tools in ``tools.yaml`` by module (every ``@tool`` in it) or by entry point (group
``toolbag.tools``; the entry point may name a module, one tool, or a list of tools).
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from toolbag.errors import ToolbagError

__all__ = ["ENTRY_POINT_GROUP", "LocalTool", "ToolArgumentError", "load_entry_point", "load_module", "tool"]

ENTRY_POINT_GROUP = "toolbag.tools"
TOOL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$")


class ToolArgumentError(ToolbagError, ValueError):
    """The arguments do not fit the tool's schema (the message is meant for the model)."""


class LocalTool:
    """A Python function exposed as a tool. Calling the object calls the function."""

    def __init__(self, name: str, fn: Callable[..., Any], description: str = "") -> None:
        if not TOOL_NAME.match(name) or len(name) > 128:
            raise ValueError(f"tool name {name!r}: letters, digits, _ and -, in dot-separated parts")
        self.name = name
        self.fn = fn
        doc = inspect.getdoc(fn) or ""
        self.description = description or doc.split("\n\n", 1)[0].replace("\n", " ").strip() or name
        self._model = self._arguments_model(fn)
        schema = self._model.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            if isinstance(prop, dict):
                prop.pop("title", None)
        schema.setdefault("properties", {})
        self.parameters: dict[str, Any] = schema

    def _arguments_model(self, fn: Callable[..., Any]) -> type[BaseModel]:
        fields: dict[str, Any] = {}
        hints = inspect.get_annotations(fn, eval_str=True)
        for param in inspect.signature(fn).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ValueError(f"tool {self.name!r}: *args and **kwargs cannot be described to a model")
            annotation = hints.get(param.name, Any)
            default = ... if param.default is param.empty else param.default
            fields[param.name] = (annotation, default)
        model: type[BaseModel] = create_model(
            f"{self.name.replace('.', '_')}_arguments",
            __config__=ConfigDict(extra="forbid"),
            **fields,
        )
        return model

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The arguments, coerced to the signature's types, or :class:`ToolArgumentError`."""
        try:
            parsed = self._model.model_validate(arguments)
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in err.errors()
            )
            raise ToolArgumentError(f"invalid arguments for {self.name}: {problems}") from None
        return {name: getattr(parsed, name) for name in type(parsed).model_fields}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"LocalTool({self.name!r})"


def tool(name: str, *, description: str = "") -> Callable[[Callable[..., Any]], LocalTool]:
    """Decorator: make ``fn`` the tool ``name``."""

    def wrap(fn: Callable[..., Any]) -> LocalTool:
        return LocalTool(name, fn, description)

    return wrap


def _collect(obj: Any, where: str) -> list[LocalTool]:
    if isinstance(obj, LocalTool):
        return [obj]
    if isinstance(obj, ModuleType):
        return [value for value in vars(obj).values() if isinstance(value, LocalTool)]
    if callable(obj) and not isinstance(obj, type):
        return _collect(obj(), where)
    if isinstance(obj, Iterable) and not isinstance(obj, str | bytes):
        found: list[LocalTool] = []
        for item in obj:
            if not isinstance(item, LocalTool):
                raise ValueError(f"{where}: {item!r} is not a tool (decorate it with toolbag.gateway.local.tool)")
            found.append(item)
        return found
    raise ValueError(f"{where}: expected a module, a tool, a list of tools or a function returning them")


def load_module(path: str) -> list[LocalTool]:
    """Every tool defined in the module at dotted ``path``."""
    module = importlib.import_module(path)
    return _collect(module, f"module {path}")


def load_entry_point(name: str) -> list[LocalTool]:
    """The tools the ``toolbag.tools`` entry point ``name`` provides."""
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        raise ValueError(f"no entry point {name!r} in group {ENTRY_POINT_GROUP!r} (is the package installed?)")
    return _collect(found[0].load(), f"entry point {name}")
