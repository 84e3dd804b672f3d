"""``tools.yaml``: where the gateway's tools come from, how long the tool loop may run, where audit goes.

Which agent may call which tool is *not* here: that is ``policy.yaml`` (:mod:`toolbag.gateway.policy`).
This file is deployment configuration, read once when a process starts (like ``toolbag.yaml``); it is not
distributed through Redis, so nothing that can write Redis can make a worker start a program.

::

    local:                                   # Python tools, by module path or entry point
      - module: toolbag.gateway.builtin_tools
      - entry_point: acme-tools              # group "toolbag.tools"
    mcp:                                     # MCP servers; tool names become "<server>.<tool>"
      notes:
        transport: stdio
        command: python
        args: ["-m", "acme.notes_server"]
        env: {NOTES_DIR: /srv/notes}
        env_from: {NOTES_TOKEN: ACME_NOTES_TOKEN}    # copied from the worker's environment
      search:
        transport: http
        url: http://127.0.0.1:8931/mcp
        headers_from_env: {Authorization: SEARCH_AUTHORIZATION}
    loop: {max_steps: 8, tool_timeout_s: 30, max_result_chars: 20000}
    audit: {jsonl: /var/log/toolbag/audit.jsonl, fsync: true, stream_maxlen: 100000}

Without a file the built-in tools are registered and nothing else.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from toolbag.config import ConfigError
from toolbag.gateway.audit import AUDIT_FILE_ENV
from toolbag.gateway.files import StrictModel, file_from_env, invalid_message, parse_yaml, read_text

__all__ = [
    "TOOLS_ENV",
    "AuditSettings",
    "GatewaySettings",
    "LocalSource",
    "LoopSettings",
    "McpServer",
    "default_tools_path",
    "load_gateway_settings",
    "parse_gateway_settings",
]

TOOLS_ENV = "TOOLBAG_TOOLS"
BUILTIN_MODULE = "toolbag.gateway.builtin_tools"
_SERVER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")


class LocalSource(StrictModel):
    """Python tools: every :func:`toolbag.gateway.local.tool` in a module, or what an entry point gives."""

    module: str | None = None
    entry_point: str | None = None

    @model_validator(mode="after")
    def _one(self) -> LocalSource:
        if (self.module is None) == (self.entry_point is None):
            raise ValueError("give exactly one of module or entry_point")
        return self


class McpServer(StrictModel):
    """One MCP server, over stdio (a child process) or streamable HTTP."""

    transport: Literal["stdio", "http"]
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    env_from: dict[str, str] = Field(default_factory=dict, description="child variable -> worker variable")
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    headers_from_env: dict[str, str] = Field(default_factory=dict, description="header -> worker variable")
    connect_timeout_s: float = Field(default=20.0, gt=0)

    @model_validator(mode="after")
    def _transport_fields(self) -> McpServer:
        if self.transport == "stdio" and not self.command:
            raise ValueError("a stdio server needs `command`")
        if self.transport == "http":
            if not self.url or not re.match(r"^https?://[^/]+", self.url):
                raise ValueError("an http server needs `url` (http(s)://host[:port]/path)")
            if self.command:
                raise ValueError("`command` is for stdio servers")
        return self


class LoopSettings(StrictModel):
    """Bounds of one attempt's tool-use loop."""

    max_steps: int = Field(default=8, ge=1, le=100, description="model calls per attempt, at most")
    tool_timeout_s: float = Field(default=30.0, gt=0)
    max_result_chars: int = Field(default=20_000, ge=100)


class AuditSettings(StrictModel):
    jsonl: str | None = Field(default=None, description="also append records here (env TOOLBAG_AUDIT_JSONL)")
    fsync: bool = True
    stream_maxlen: int = Field(default=100_000, ge=1000, description="the fleet core trims to ~100k too")


class GatewaySettings(StrictModel):
    """The whole of ``tools.yaml``."""

    local: list[LocalSource] = Field(default_factory=lambda: [LocalSource(module=BUILTIN_MODULE)])
    mcp: dict[str, McpServer] = Field(default_factory=dict)
    loop: LoopSettings = Field(default_factory=LoopSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    source: str = Field(default="<defaults>", exclude=True)

    @field_validator("mcp")
    @classmethod
    def _names(cls, value: dict[str, McpServer]) -> dict[str, McpServer]:
        for name in value:
            if not _SERVER_NAME.match(name):
                raise ValueError(f"server name {name!r}: 1-32 letters, digits, _ or -, starting with a letter")
        return value

    def audit_file(self) -> str | None:
        """``$TOOLBAG_AUDIT_JSONL`` if set, else ``audit.jsonl``."""
        return os.environ.get(AUDIT_FILE_ENV) or self.audit.jsonl


def default_tools_path() -> Path | None:
    """``$TOOLBAG_TOOLS``, else ``./tools.yaml`` when it exists, else None (built-in tools only)."""
    return file_from_env(TOOLS_ENV, "tools.yaml")


def parse_gateway_settings(data: object, source: str = "<tools>") -> GatewaySettings:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    try:
        settings = GatewaySettings.model_validate({**data, "source": source})
    except ValidationError as err:
        raise ConfigError(invalid_message(source, "tools configuration", err)) from None
    return settings


def load_gateway_settings(path: str | Path | None = None) -> GatewaySettings:
    """Load ``tools.yaml`` (``path``, else :func:`default_tools_path`); defaults when there is none."""
    file = Path(path) if path is not None else default_tools_path()
    if file is None:
        return GatewaySettings()
    data = parse_yaml(read_text(file, "tools file", ConfigError), str(file), ConfigError)
    return parse_gateway_settings(data, str(file))
