"""One request's connection: sleeps that end when the client goes away or the server stops, and TCP abort."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Literal

from starlette.types import Receive, Scope

from .state import SimState

# The scope key under which the app keeps uvicorn's request cycle (it owns the transport to abort).
CYCLE_KEY = "toolbag.sim.cycle"

End = Literal["timeout", "disconnected", "stopped"]  # how a sleep ended


class Connection:
    """Interruptible sleeps (client gone / server stopping) and TCP abort for one request."""

    def __init__(self, state: SimState, scope: Scope, receive: Receive) -> None:
        self.state = state
        self.cycle: object | None = scope.get(CYCLE_KEY)
        self.receive = receive
        self.interrupt = asyncio.Event()
        self.disconnected = False
        self._watch: asyncio.Task[None] | None = None
        state.register(self.interrupt)

    async def _watch_disconnect(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                self.interrupt.set()
                return

    async def sleep(self, seconds: float) -> End:
        """Sleep up to ``seconds``; ``timeout`` when it ran out, else why it ended early."""
        if self.interrupt.is_set():
            return self.why()
        if seconds <= 0:
            return "timeout"
        if self._watch is None:
            self._watch = asyncio.ensure_future(self._watch_disconnect())
        try:
            await asyncio.wait_for(self.interrupt.wait(), seconds)
        except TimeoutError:
            return "timeout"
        return self.why()

    def why(self) -> End:
        """Why a sleep ended early."""
        return "disconnected" if self.disconnected else "stopped"

    async def abort(self, *, reset: bool = False) -> bool:
        """Close the TCP connection now: after flushing what was sent (FIN), or with ``reset`` at once (RST).

        False when not running under uvicorn (no transport to close).
        """
        transport = getattr(self.cycle, "transport", None)
        if transport is None:
            return False
        if reset:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            transport.abort()
        else:
            transport.close()
        # Let uvicorn see connection_lost before we return, so it doesn't answer 500 on our behalf.
        for attempt in range(300):
            if getattr(self.cycle, "disconnected", True):
                break
            await asyncio.sleep(0 if attempt < 100 else 0.005)
        return True

    def close(self) -> None:
        """Stop watching for a disconnect and stop being woken by a server stop."""
        self.state.unregister(self.interrupt)
        if self._watch is not None:
            self._watch.cancel()
