"""Answers that need the connection: bodies sent after a delay, paced SSE streams, and the connection faults.

Each is a Starlette response that plays itself once the route returns it. A wait that ends early (client gone,
server stopping) closes the connection when the server is stopping and logs why the request ended.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .call import Call
from .connection import Connection, End
from .faults import Fault
from .state import SimState
from .wire import Headers, StreamEvent


@dataclass(frozen=True)
class Timing:
    """When an answer's parts go out."""

    hang_s: float = 0.0  # before anything is sent
    first_delay_s: float = 0.0  # then before the first stream event (a whole body waits hang_s + this)
    tokens_per_s: float | None = None  # pacing of the stream's content events after the first


async def _ended_early(conn: Connection, call: Call, end: End, status: int | None) -> None:
    if end == "stopped":
        await conn.abort()
    call.finish(status, end)


class ResetAnswer(Response):
    """The ``reset`` fault: the connection is aborted with a TCP RST before anything is sent."""

    def __init__(self, state: SimState, call: Call) -> None:
        self.state = state
        self.call = call

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        conn = Connection(self.state, scope, receive)
        try:
            if not await conn.abort(reset=True):
                raise RuntimeError("simulator: 'reset' needs uvicorn (no transport to abort)")
            self.call.finish(None, "reset")
        finally:
            conn.close()


class DelayedAnswer(Response):
    """A complete body sent after ``delay_s``; with ``cut``, only its first half before the connection closes."""

    def __init__(self, state: SimState, call: Call, headers: Headers, payload: bytes, delay_s: float,
                 cut: bool) -> None:
        self.state = state
        self.call = call
        self.headers_out = headers
        self.payload = payload
        self.delay_s = delay_s
        self.cut = cut

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = self.call
        conn = Connection(self.state, scope, receive)
        try:
            end = await conn.sleep(self.delay_s)
            if end != "timeout":
                await _ended_early(conn, call, end, None)
                return
            call.first_byte()
            await send({"type": "http.response.start", "status": 200, "headers": self.headers_out})
            if self.cut:
                half = self.payload[: len(self.payload) // 2]
                await send({"type": "http.response.body", "body": half, "more_body": True})
                await conn.abort()
                call.finish(200, "cut")
                return
            await send({"type": "http.response.body", "body": self.payload})
            call.finish(200, "complete")
        finally:
            conn.close()


class StreamAnswer(Response):
    """SSE events played with pacing and the stream faults: ``stall``, ``cut`` and ``malformed``.

    ``stall`` holds after the first content event, ``cut`` closes the connection after the middle one (never
    after the last event), ``malformed`` adds an event that is not JSON after the first content event.
    """

    def __init__(self, state: SimState, call: Call, headers: Headers, events: list[StreamEvent], fault: Fault,
                 timing: Timing) -> None:
        self.state = state
        self.call = call
        self.headers_out = headers
        self.events = events
        self.fault = fault
        self.timing = timing
        self._sent_first = False

    def _stop_after(self, content_at: list[int]) -> int | None:
        """Index of the last event before a stall or cut."""
        if self.fault.name == "stall":
            return content_at[0]
        if self.fault.name == "cut":
            stop_after = content_at[max(0, (len(content_at) - 1) // 2)]
            return max(0, len(self.events) - 2) if stop_after >= len(self.events) - 1 else stop_after
        return None

    def _delay_s(self, index: int, event: StreamEvent) -> float:
        if index == 0:
            return self.timing.first_delay_s
        tokens_per_s = self.timing.tokens_per_s
        return event.tokens / tokens_per_s if tokens_per_s and event.content else 0.0

    async def _event(self, send: Send, data: bytes) -> None:
        if not self._sent_first:
            self._sent_first = True
            self.call.first_byte()
        await send({"type": "http.response.body", "body": data, "more_body": True})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = self.call
        conn = Connection(self.state, scope, receive)
        try:
            if self.timing.hang_s > 0:
                end = await conn.sleep(self.timing.hang_s)
                if end != "timeout":
                    await _ended_early(conn, call, end, None)
                    return
            await send({"type": "http.response.start", "status": 200, "headers": self.headers_out})
            content_at = [i for i, e in enumerate(self.events) if e.content] or [0]
            stop_after = self._stop_after(content_at)
            malformed_after = content_at[0] if self.fault.name == "malformed" else None
            end = "timeout"
            for i, event in enumerate(self.events):
                delay_s = self._delay_s(i, event)
                if delay_s > 0:
                    end = await conn.sleep(delay_s)
                    if end != "timeout":
                        break
                elif conn.interrupt.is_set():
                    end = conn.why()
                    break
                await self._event(send, event.data)
                if i == malformed_after:
                    await self._event(send, call.wire.malformed_event())
                if i == stop_after:
                    if self.fault.name == "cut":
                        await conn.abort()
                        call.finish(200, "cut")
                        return
                    end = await conn.sleep(self.fault.hold_s)
                    if end != "timeout":
                        break
            if end != "timeout":
                await _ended_early(conn, call, end, 200)
                return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            call.finish(200, "complete")
        finally:
            conn.close()
