"""The gateway's two YAML files, ``policy.yaml`` and ``tools.yaml``: where a process finds them, how they are
read, and how their problems are worded (one line naming the file, then one line per invalid field)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from toolbag.errors import ToolbagError

__all__ = ["StrictModel", "file_from_env", "invalid_message", "parse_yaml", "read_text"]


class StrictModel(BaseModel):
    """A section of a gateway file: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def file_from_env(env: str, name: str) -> Path | None:
    """``$env``, else ``./name`` when it exists, else the copy that ships with toolbag (:mod:`toolbag.starter`),
    else None."""
    from toolbag.starter import starter_path

    configured = os.environ.get(env)
    if configured:
        return Path(configured)
    local = Path(name)
    return local if local.exists() else starter_path(name)


def read_text(path: Path, what: str, error: type[ToolbagError], *, max_bytes: int | None = None) -> str:
    """The file's UTF-8 text; ``error`` names the file when it cannot be read, is not UTF-8 or is larger
    than ``max_bytes``."""
    try:
        with path.open("rb") as handle:
            data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
    except OSError as err:
        raise error(f"{path}: cannot read the {what} ({err.strerror})") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise error(f"{path}: the {what} is larger than {max_bytes} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{path}: the {what} is not UTF-8 text (byte {err.start})") from None


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: fast, and caps nesting at 1000 levels


class _AliasRefused(yaml.YAMLError):
    def __init__(self, node: yaml.Node) -> None:
        super().__init__(f"line {node.start_mark.line + 1}: the value anchored here (&name) is used again by an "
                         "alias (*name); aliases are not allowed, write the values out")


def _refuse_aliases(root: yaml.Node) -> None:
    """Raise at the first node reached twice: an alias (a small file must not expand into a huge value)."""
    seen: set[int] = set()
    todo = [root]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            raise _AliasRefused(node)
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            todo.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            todo.extend(part for pair in node.value for part in pair)


def parse_yaml(text: str, source: str, error: type[ToolbagError]) -> object:
    """The YAML document in ``text``, aliases refused; ``error`` names ``source`` when it is not valid YAML,
    nests too deeply or holds a value YAML cannot build (a 13th month, an integer of 5,000 digits)."""
    try:
        loader = _LOADER(text)
    except UnicodeEncodeError:
        raise error(f"{source}: not valid Unicode text") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_aliases(node)
        return loader.construct_document(node)
    except _AliasRefused as err:
        raise error(f"{source}: {err}") from None
    except yaml.YAMLError as err:
        raise error(f"{source}: not valid YAML: {err}") from None
    except RecursionError:
        raise error(f"{source}: not valid YAML: nested too deeply") from None
    except ValueError as err:
        raise error(f"{source}: not valid YAML: {err}") from None
    finally:
        loader.dispose()


def invalid_message(
    source: str, what: str, err: ValidationError,
    where: Callable[[str, tuple[int | str, ...]], str] | None = None,
) -> str:
    """``<source>: invalid <what>`` and a ``  - <field>: <problem>`` line for every problem; ``where`` may
    reword a field's dotted place (given with its path)."""
    lines = [f"{source}: invalid {what}"]
    for item in err.errors():
        place = ".".join(str(p) for p in item["loc"]) or "(top level)"
        lines.append(f"  - {where(place, item['loc']) if where else place}: {item['msg']}")
    return "\n".join(lines)
