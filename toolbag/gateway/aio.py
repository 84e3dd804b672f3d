"""The event loop the gateway's async parts (MCP sessions, async tools) live on: a loop of its own in a daemon
thread (a threads worker, the CLI), or a worker's attempt loop lent to it (``EventLoopThread(loop=...)``).
Threads reach it with :meth:`EventLoopThread.run`; coroutines await it with :meth:`EventLoopThread.arun`."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

__all__ = ["EventLoopThread"]

T = TypeVar("T")


class EventLoopThread:
    """An asyncio loop that runs in another thread than its callers: its own daemon thread, or (``loop``
    given) a loop somebody else runs, which :meth:`stop` leaves alone."""

    def __init__(self, name: str = "toolbag-gateway-loop", *, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.owned = loop is None
        self.loop = loop if loop is not None else asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        if self.owned:
            self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
            self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _on_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
        """The coroutine's result, from another thread; on timeout it is cancelled and :class:`TimeoutError`
        raised. RuntimeError on the loop's own thread (it would wait for itself) or when a lent loop is not
        running (nothing would ever answer)."""
        if self._on_loop() or (not self.owned and not self.loop.is_running()):
            coro.close()
            raise RuntimeError("the gateway's event loop cannot be waited on from here (use arun on the loop)")
        future = self.submit(coro)
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout:
            future.cancel()
            raise TimeoutError(f"no answer within {timeout_s:g} s") from None

    async def arun(self, coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
        """The coroutine's result, awaited from a coroutine: directly when the caller runs on this loop (a
        worker's attempt loop), else handed over; on timeout it is cancelled and :class:`TimeoutError` raised."""
        try:
            if self._on_loop():
                return await asyncio.wait_for(coro, timeout_s)
            return await asyncio.wait_for(asyncio.wrap_future(self.submit(coro)), timeout_s)
        except TimeoutError:
            raise TimeoutError(f"no answer within {timeout_s:g} s") from None

    def stop(self) -> None:
        if not self.owned or self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        assert self._thread is not None
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()
