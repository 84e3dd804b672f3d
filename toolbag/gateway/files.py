"""The gateway's two YAML files, ``policy.yaml`` and ``tools.yaml``: where a process finds them, how they are
read, and how their problems are worded (one line naming the file, then one line per invalid field)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from toolbag.errors import ToolbagError

__all__ = ["StrictModel", "file_from_env", "invalid_message", "parse_yaml", "read_text"]


class StrictModel(BaseModel):
    """A section of a gateway file: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def file_from_env(env: str, name: str) -> Path | None:
    """``$env``, else ``./name`` when it exists, else None."""
    configured = os.environ.get(env)
    if configured:
        return Path(configured)
    local = Path(name)
    return local if local.exists() else None


def read_text(path: Path, what: str, error: type[ToolbagError]) -> str:
    """The file's text; ``error`` names the file when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as err:
        raise error(f"{path}: cannot read the {what} ({err.strerror})") from None


def parse_yaml(text: str, source: str, error: type[ToolbagError]) -> object:
    """The YAML document in ``text``; ``error`` names ``source`` when it is not valid YAML."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise error(f"{source}: not valid YAML: {err}") from None


def invalid_message(source: str, what: str, err: ValidationError) -> str:
    """``<source>: invalid <what>`` and a ``  - <field>: <problem>`` line for every problem."""
    lines = [f"{source}: invalid {what}"]
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        lines.append(f"  - {where}: {item['msg']}")
    return "\n".join(lines)
