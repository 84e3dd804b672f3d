"""MCP servers as tool sources, through the ``mcp`` SDK 2.x ``Client`` (stdio child process or streamable HTTP).

The SDK is async. Each server has one long-lived session, opened by an owner task on the gateway's event loop
(:class:`~toolbag.gateway.aio.EventLoopThread`): in an async worker that is the worker's attempt loop itself, so
a tool loop awaits ``tools/list`` and ``tools/call`` right there (:meth:`McpConnection.acall`), no thread in
between; in a threads worker or the CLI it is a loop in a daemon thread, and callers block on the sync API
(:meth:`McpConnection.call`) with a timeout. A session that breaks (the child exited, the HTTP server went
away) is dropped and reopened on the next use.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

from toolbag.gateway.aio import EventLoopThread
from toolbag.gateway.settings import McpServer

__all__ = ["McpConnection", "McpToolOutput", "RemoteTool"]

log = logging.getLogger("toolbag.gateway")


@dataclass(frozen=True)
class RemoteTool:
    """A tool as an MCP server lists it."""

    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class McpToolOutput:
    """What a ``tools/call`` returned: its text (text blocks joined, or the structured content as JSON)."""

    text: str
    is_error: bool


def _text_of(result: Any) -> str:
    parts: list[str] = []
    for block in result.content or []:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind == "resource" and hasattr(getattr(block, "resource", None), "text"):
            parts.append(block.resource.text)
        else:
            parts.append(f"[{kind or 'content'} omitted]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False, default=str))
    return "\n".join(parts)


class McpConnection:
    """One configured MCP server. Thread-safe; the session opens lazily on first use, on ``loop``."""

    def __init__(self, name: str, server: McpServer, loop: EventLoopThread) -> None:
        self.name = name
        self.server = server
        self.loop = loop
        self._client: Client | None = None
        self._closing: asyncio.Event | None = None
        self._owner: asyncio.Task[None] | None = None
        self._connect_lock: asyncio.Lock | None = None

    # ------------------------------------------------------------------ connection (runs in the loop)

    def _target(self) -> Any:
        s = self.server
        if s.transport == "stdio":
            # merged by the SDK over its safe default environment (PATH, HOME, ...); nothing else leaks
            env = dict(s.env)
            env.update({child: os.environ.get(parent, "") for child, parent in s.env_from.items()})
            assert s.command is not None
            return StdioServerParameters(command=s.command, args=list(s.args), env=env, cwd=s.cwd)
        assert s.url is not None
        headers = dict(s.headers)
        headers.update({h: os.environ.get(var, "") for h, var in s.headers_from_env.items()})
        if not headers:
            return s.url
        http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0))
        return streamable_http_client(s.url, http_client=http)

    async def _own(self, ready: asyncio.Future[Client]) -> None:
        closing = asyncio.Event()
        self._closing = closing
        try:
            async with Client(self._target(), mode="auto") as client:
                self._client = client
                ready.set_result(client)
                await closing.wait()
        except BaseException as err:  # noqa: BLE001 - reported to whoever waits for the session
            if not ready.done():
                ready.set_exception(err if isinstance(err, Exception) else RuntimeError(repr(err)))
            elif not isinstance(err, asyncio.CancelledError):
                log.warning("MCP server %s: session ended: %s", self.name, err)
        finally:
            self._client = None
            if self._closing is closing:
                self._closing = None

    async def _session(self) -> Client:
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            if self._client is not None and self._owner is not None and not self._owner.done():
                return self._client
            ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
            self._owner = asyncio.create_task(self._own(ready), name=f"mcp-{self.name}")
            try:
                return await asyncio.wait_for(asyncio.shield(ready), self.server.connect_timeout_s)
            except (TimeoutError, Exception):
                await self._drop()
                raise

    async def _drop(self) -> None:
        owner, closing = self._owner, self._closing
        self._owner = None
        self._client = None
        if closing is not None:
            closing.set()
        if owner is not None and not owner.done():
            try:
                await asyncio.wait_for(owner, 5.0)
            except (TimeoutError, Exception):
                owner.cancel()

    async def _list(self) -> list[RemoteTool]:
        client = await self._session()
        tools: list[RemoteTool] = []
        cursor: str | None = None
        for _ in range(100):
            page = await client.list_tools(cursor=cursor, cache_mode="refresh")
            tools.extend(RemoteTool(t.name, t.description or "", dict(t.input_schema)) for t in page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        return tools

    async def _call(self, tool: str, arguments: dict[str, Any], timeout_s: float) -> McpToolOutput:
        client = await self._session()
        try:
            result = await client.call_tool(tool, arguments, read_timeout_seconds=timeout_s)
        except MCPError as err:
            if err.code == REQUEST_TIMEOUT:
                raise TimeoutError(f"no answer within {timeout_s:g} s") from err
            if err.code == CONNECTION_CLOSED:
                await self._drop()
            raise
        except Exception:
            await self._drop()  # a broken transport: reopen next time
            raise
        return McpToolOutput(_text_of(result), bool(result.is_error))

    # ----------------------------------------------------------------- async API (on any event loop)

    async def alist_tools(self, timeout_s: float) -> list[RemoteTool]:
        """:meth:`list_tools`, awaited (on the session's loop when the caller runs there)."""
        return await self.loop.arun(self._list(), timeout_s)

    async def acall(self, tool: str, arguments: dict[str, Any], timeout_s: float) -> McpToolOutput:
        """:meth:`call`, awaited (on the session's loop when the caller runs there)."""
        return await self.loop.arun(self._call(tool, arguments, timeout_s), timeout_s + 1.0)

    async def aclose(self) -> None:
        if self._owner is not None:
            await self.loop.arun(self._drop(), 10.0)

    # ----------------------------------------------------------------------- sync API (other threads)

    def list_tools(self, timeout_s: float) -> list[RemoteTool]:
        """The server's tools (connecting first if needed)."""
        return self.loop.run(self._list(), timeout_s)

    def call(self, tool: str, arguments: dict[str, Any], timeout_s: float) -> McpToolOutput:
        """Call ``tool``; raises ``TimeoutError``, ``MCPError`` (protocol error) or a transport error."""
        return self.loop.run(self._call(tool, arguments, timeout_s), timeout_s + 1.0)

    def close(self) -> None:
        if self._owner is None:
            return  # never opened, or closed on its loop already (aclose)
        try:
            self.loop.run(self._drop(), 10.0)
        except (TimeoutError, RuntimeError):
            pass
