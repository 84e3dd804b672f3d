"""Every tool the gateway can reach, under one name each: local Python tools by their own names, MCP tools as
``<server>.<tool>``. Lists them (the catalog) and runs one call with a timeout, from a thread (:meth:`call`) or
on an event loop (:meth:`acall`: MCP sessions and async tools awaited there, sync tools on a small executor).
Permission is not checked here: only :class:`toolbag.gateway.gateway.Gateway` calls a tool, after the policy."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from toolbag.config import ConfigError
from toolbag.gateway.aio import EventLoopThread
from toolbag.gateway.local import LocalTool, ToolArgumentError, load_entry_point, load_module
from toolbag.gateway.settings import GatewaySettings

__all__ = ["ToolInfo", "ToolOutput", "ToolRegistry"]

log = logging.getLogger("toolbag.gateway")
CATALOG_TTL_S = 60.0
FAILED_SERVER_RETRY_S = 10.0
LIST_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ToolInfo:
    """A tool in the catalog. ``source`` is ``local:<module or entry point>`` or ``mcp:<server>``."""

    name: str
    description: str
    parameters: dict[str, Any]
    source: str


@dataclass(frozen=True)
class ToolOutput:
    """The result of one call: ``outcome`` is ``ok``, ``error`` (the tool failed or rejected its arguments),
    ``timeout`` or ``not_found``."""

    text: str
    outcome: str

    @property
    def is_error(self) -> bool:
        return self.outcome != "ok"


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)


def _timed_out(name: str, timeout_s: float) -> ToolOutput:
    return ToolOutput(f"{name} timed out after {timeout_s:g} s", "timeout")


def _failed(name: str, err: Exception) -> ToolOutput:
    """A tool's failure is the model's information, not the worker's crash."""
    return ToolOutput(f"{name} failed: {type(err).__name__}: {err}", "error")


class ToolRegistry:
    """Local tools (loaded now: a bad module is a :class:`ConfigError` at start) and MCP servers (connected
    lazily, listed into the catalog every ``CATALOG_TTL_S``). Thread-safe. MCP sessions live on a loop of their
    own unless :meth:`bind` lends the registry one (a worker's attempt loop) before first use."""

    def __init__(self, settings: GatewaySettings, *, local_workers: int = 32) -> None:
        self.settings = settings
        self._local: dict[str, tuple[LocalTool, str]] = {}
        for src in settings.local:
            where = f"local:{src.module or src.entry_point}"
            try:
                tools = load_module(src.module) if src.module else load_entry_point(src.entry_point or "")
            except (ImportError, ValueError) as err:
                raise ConfigError(f"{settings.source}: {where}: {err}") from None
            for t in tools:
                if t.name in self._local:
                    raise ConfigError(f"{settings.source}: tool {t.name!r} is defined twice "
                                      f"({self._local[t.name][1]} and {where})")
                self._local[t.name] = (t, where)
        self._loop: EventLoopThread | None = None
        self._servers: dict[str, Any] = {}  # name -> McpConnection (the mcp SDK is imported only when used)
        self._remote: dict[str, tuple[str, str, ToolInfo]] = {}  # gateway name -> (server, remote name, info)
        self._listed_at: dict[str, float] = {}
        self._listed_ok: set[str] = set()  # servers listed successfully at least once
        self._listing: dict[str, Future[None]] = {}  # listings in progress: done when stored
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=local_workers, thread_name_prefix="toolbag-tool")

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Open MCP sessions (and run async tools called from threads) on ``loop``, which another thread runs:
        a worker's attempt loop. Only before first use (a session cannot move between loops)."""
        with self._lock:
            if self._loop is not None:
                if self._loop.loop is loop:
                    return
                raise RuntimeError("the tool registry was used before it was bound to an event loop")
            self._loop = EventLoopThread(loop=loop)
            self._connections()  # the mcp SDK's import is slow: on this thread now, never on the loop later

    def _runner(self) -> EventLoopThread:
        if self._loop is None:
            self._loop = EventLoopThread()
        return self._loop

    # ------------------------------------------------------------------------------------ catalog

    def _connections(self) -> dict[str, Any]:
        if self.settings.mcp and not self._servers:
            from toolbag.gateway.mcp_client import McpConnection

            loop = self._runner()
            self._servers = {n: McpConnection(n, s, loop) for n, s in self.settings.mcp.items()}
        return self._servers

    def _claim_due(self, force: bool) -> tuple[list[str], list[Future[None]]]:
        """Under the lock: the servers this thread should list now (marked as in progress), and the first
        listings already in progress elsewhere, which are worth waiting for."""
        servers = self._connections()
        now = time.monotonic()
        due: list[str] = []
        waits: list[Future[None]] = []
        for name in servers:
            running = self._listing.get(name)
            if running is not None:
                if name not in self._listed_ok:
                    waits.append(running)
                continue
            if force or now - self._listed_at.get(name, -1e9) >= CATALOG_TTL_S:
                self._listing[name] = Future()
                due.append(name)
        return due, waits

    def _list_all(self, due: list[str]) -> Coroutine[Any, Any, list[Any]]:
        """Listing ``due`` at once on the sessions' loop: each server's tools, or the error it gave."""
        servers = self._servers

        async def list_all() -> list[Any]:
            async def one(name: str) -> Any:
                return await asyncio.wait_for(servers[name]._list(), LIST_TIMEOUT_S)

            return await asyncio.gather(*(one(n) for n in due), return_exceptions=True)

        return list_all()

    def _store(self, due: list[str], results: list[Any]) -> None:
        now = time.monotonic()
        for name, result in zip(due, results, strict=True):
            if isinstance(result, BaseException):
                cause = _innermost(result)
                log.warning("MCP server %s: cannot list tools: %s: %s", name, type(cause).__name__, cause)
                self._listed_at[name] = now - CATALOG_TTL_S + FAILED_SERVER_RETRY_S
                if name in self._listed_ok:
                    continue  # keep serving the last good listing; calls will tell if the server is gone
            else:
                self._listed_at[name] = now
                self._listed_ok.add(name)
            for key in [k for k, v in self._remote.items() if v[0] == name]:
                del self._remote[key]
            for remote in result if not isinstance(result, BaseException) else []:
                full = f"{name}.{remote.name}"
                if full in self._local:
                    log.error("MCP tool %s hidden: a local tool has the same name", full)
                    continue
                self._remote[full] = (name, remote.name,
                                      ToolInfo(full, remote.description, remote.input_schema, f"mcp:{name}"))

    def catalog(self, *, refresh: bool = False) -> dict[str, ToolInfo]:
        """Every reachable tool by gateway name (MCP servers that cannot be reached are left out).

        Listing happens outside the lock: while one caller refreshes a server, others use its last listing
        (and wait only for a server's very first listing)."""
        with self._lock:
            due, waits = self._claim_due(refresh)
        if due:
            results: list[Any] = [RuntimeError("listing did not finish")] * len(due)
            try:
                results = self._runner().run(self._list_all(due), LIST_TIMEOUT_S + 5)
            except TimeoutError as err:
                results = [err] * len(due)
            finally:
                self._listed(due, results)
        for waiting in waits:
            try:
                waiting.result(LIST_TIMEOUT_S + 5)
            except FutureTimeout:
                pass
        return self._tools()

    async def acatalog(self, *, refresh: bool = False) -> dict[str, ToolInfo]:
        """:meth:`catalog` on an event loop: the listing awaited, never blocking the loop."""
        with self._lock:
            due, waits = self._claim_due(refresh)
        if due:
            results: list[Any] = [RuntimeError("listing did not finish")] * len(due)
            try:
                results = await self._runner().arun(self._list_all(due), LIST_TIMEOUT_S + 5)
            except TimeoutError as err:
                results = [err] * len(due)
            finally:
                self._listed(due, results)
        if waits:  # asyncio.wait never cancels what it waits for: a listing goes on for its other waiters
            await asyncio.wait([asyncio.wrap_future(w) for w in waits], timeout=LIST_TIMEOUT_S + 5)
        return self._tools()

    def _listed(self, due: list[str], results: list[Any]) -> None:
        with self._lock:
            self._store(due, results)
            for name in due:
                self._listing.pop(name).set_result(None)

    def _tools(self) -> dict[str, ToolInfo]:
        with self._lock:
            tools = {
                name: ToolInfo(name, t.description, t.parameters, where) for name, (t, where) in self._local.items()
            }
            tools.update({name: info for name, (_, _, info) in self._remote.items()})
        return dict(sorted(tools.items()))

    # --------------------------------------------------------------------------------------- call

    def _call_local(self, tool: LocalTool, arguments: dict[str, Any], timeout_s: float) -> ToolOutput:
        try:
            values = tool.validate(arguments)
        except ToolArgumentError as err:
            return ToolOutput(str(err), "error")
        try:
            if inspect.iscoroutinefunction(tool.fn):
                return ToolOutput(_as_text(self._runner().run(tool.fn(**values), timeout_s)), "ok")
            future = self._executor.submit(tool.fn, **values)
            try:
                return ToolOutput(_as_text(future.result(timeout=timeout_s)), "ok")
            except FutureTimeout:
                future.cancel()
                raise TimeoutError from None
        except TimeoutError:
            return _timed_out(tool.name, timeout_s)
        except Exception as err:
            return _failed(tool.name, err)

    async def _acall_local(self, tool: LocalTool, arguments: dict[str, Any], timeout_s: float) -> ToolOutput:
        try:
            values = tool.validate(arguments)
        except ToolArgumentError as err:
            return ToolOutput(str(err), "error")
        try:
            if inspect.iscoroutinefunction(tool.fn):  # on the caller's loop
                value = await asyncio.wait_for(tool.fn(**values), timeout_s)
            else:  # a sync tool may block: on the executor (a call that overruns keeps its thread until it returns)
                value = await asyncio.wait_for(asyncio.wrap_future(self._executor.submit(tool.fn, **values)),
                                               timeout_s)
            return ToolOutput(_as_text(value), "ok")
        except TimeoutError:
            return _timed_out(tool.name, timeout_s)
        except Exception as err:
            return _failed(tool.name, err)

    def _remote_tool(self, name: str) -> tuple[str, str, ToolInfo] | None:
        with self._lock:
            return self._remote.get(name)

    def call(self, name: str, arguments: dict[str, Any], timeout_s: float) -> ToolOutput:
        """Run tool ``name``. Never raises for a tool's own problems: they come back as the output."""
        local = self._local.get(name)
        if local is not None:
            return self._call_local(local[0], arguments, timeout_s)
        remote = self._remote_tool(name)
        if remote is None:
            return ToolOutput(f"no tool named {name!r}", "not_found")
        server, remote_name, _ = remote
        try:
            out = self._servers[server].call(remote_name, arguments, timeout_s)
        except TimeoutError:
            return _timed_out(name, timeout_s)
        except Exception as err:
            return _failed(name, err)
        return ToolOutput(out.text, "error" if out.is_error else "ok")

    async def acall(self, name: str, arguments: dict[str, Any], timeout_s: float) -> ToolOutput:
        """:meth:`call` on an event loop: an MCP call awaited on its session (on this loop when bound to it)."""
        local = self._local.get(name)
        if local is not None:
            return await self._acall_local(local[0], arguments, timeout_s)
        remote = self._remote_tool(name)
        if remote is None:
            return ToolOutput(f"no tool named {name!r}", "not_found")
        server, remote_name, _ = remote
        try:
            out = await self._servers[server].acall(remote_name, arguments, timeout_s)
        except TimeoutError:
            return _timed_out(name, timeout_s)
        except Exception as err:
            return _failed(name, err)
        return ToolOutput(out.text, "error" if out.is_error else "ok")

    async def aclose(self) -> None:
        """Close the MCP sessions from their loop (a worker's attempt loop, before it stops)."""
        for conn in self._servers.values():
            try:
                await conn.aclose()
            except Exception:
                log.warning("MCP server %s: closing the session failed", conn.name, exc_info=True)

    def close(self) -> None:
        for conn in self._servers.values():
            conn.close()
        if self._loop is not None:
            self._loop.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)


def _innermost(error: BaseException) -> BaseException:
    """The first leaf of an exception group (anyio wraps a transport's error in one), else the error itself."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error
