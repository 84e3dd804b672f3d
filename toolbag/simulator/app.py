"""The simulator's ASGI app: vendor routes, fault dispatch, the request log and the admin endpoints.

One port serves every vendor (paths as the SDKs build them). For each request the app parses the body with
the vendor's wire module, picks a fault (header ``x-sim-fault`` → ``[[sim:…]]`` directive → plan rules),
decides the answer (:mod:`.generate`) and sends it in the vendor's native shape. Connection faults
(``reset``, ``cut``) abort the TCP connection under uvicorn so the SDKs see a real transport error; waits
(``hang``, ``stall``, latency) are asyncio sleeps that end early when the client goes away or the server stops.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from toolbag.telemetry import metrics

from .anthropic_wire import AnthropicWire
from .faults import (
    DEFAULT_HANG_S,
    DEFAULT_RATELIMIT,
    ERROR_FAULTS,
    REFUSAL_FAULTS,
    Fault,
    FaultPlan,
    FaultPlanError,
    Latency,
    RateLimitInfo,
    directive_fault,
    parse_fault,
)
from .gemini_wire import GeminiWire
from .generate import count_tokens, make_reply, new_id
from .openai_wire import ChatWire, ResponsesWire
from .request import RequestError, SimRequest
from .wire import AnswerMode, Headers, HttpError, StreamEvent, Wire, dumps

LOG_LIMIT = 20_000  # entries kept (oldest dropped first); about 1 KB each
FAULT_HEADER = "x-sim-fault"
LATENCY_HEADER = "x-sim-latency-ms"
_CYCLE_KEY = "toolbag.sim.cycle"

_JSON = (b"content-type", b"application/json")
_SSE = (b"content-type", b"text/event-stream; charset=utf-8")

End = Literal["complete", "timeout", "disconnected", "stopped"]


class SimState:
    """Mutable simulator state: the file plan, the runtime plan (admin API), the log, in-flight waits."""

    def __init__(self, plan: FaultPlan | None) -> None:
        self.base_plan = plan or FaultPlan()
        self.runtime_plan: FaultPlan | None = None
        self.log: deque[dict[str, Any]] = deque(maxlen=LOG_LIMIT)
        self.closing = False
        self._waits: set[asyncio.Event] = set()

    def plans(self) -> list[FaultPlan]:
        return [self.runtime_plan, self.base_plan] if self.runtime_plan is not None else [self.base_plan]

    def select(self, vendor: str, model: str, text: str) -> Fault | None:
        for plan in self.plans():
            fault = plan.select(vendor, model, text)
            if fault is not None:
                return fault
        return None

    def latency_for(self, model: str) -> Latency | None:
        for plan in self.plans():
            if plan.latency:
                found = plan.latency_for(model)
                if found is not None:
                    return found
        return None

    def ratelimit_for(self, model: str) -> RateLimitInfo:
        for plan in self.plans():
            if plan.ratelimit:
                found = plan.ratelimit_for(model)
                if found is not None:
                    return found
        return DEFAULT_RATELIMIT

    def context_window_for(self, model: str) -> int | None:
        for plan in self.plans():
            if plan.context_windows:
                found = plan.context_window_for(model)
                if found is not None:
                    return found
        return None

    def shutdown(self) -> None:
        """Wake every hung or stalled request so the server can stop promptly. Call in the server's loop."""
        self.closing = True
        for event in list(self._waits):
            event.set()

    def register(self, event: asyncio.Event) -> None:
        self._waits.add(event)
        if self.closing:
            event.set()

    def unregister(self, event: asyncio.Event) -> None:
        self._waits.discard(event)


class _Conn:
    """One request's connection: interruptible sleeps (client gone / server stopping) and TCP abort."""

    def __init__(self, state: SimState, scope: Scope, receive: Receive) -> None:
        self.state = state
        self.cycle = scope.get(_CYCLE_KEY)
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
        self.state.unregister(self.interrupt)
        if self._watch is not None:
            self._watch.cancel()


class _Bytes(Response):
    """A fully rendered answer (the fast path)."""

    def __init__(self, status: int, headers: Headers, body: bytes) -> None:
        self.status_code = status
        self.raw_headers = headers
        self.body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body})


class _Run(Response):
    """An answer that needs the connection: delays, streams, connection faults."""

    def __init__(self, run: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.run = run

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.run(scope, receive, send)


def _headers(base: Headers, content_type: tuple[bytes, bytes], body: bytes | None,
             extra: dict[str, str] | None = None) -> Headers:
    headers = [*base, content_type]
    if body is not None:
        headers.append((b"content-length", str(len(body)).encode()))
    if extra:
        headers.extend((k.encode(), v.encode()) for k, v in extra.items())
    return headers


class _Call:
    """Everything about one vendor request while it is answered."""

    def __init__(self, state: SimState, wire: Wire, request: Request) -> None:
        self.state = state
        self.wire = wire
        self.request = request
        self.start = time.perf_counter()
        self.rid = new_id("req_")
        retry = request.headers.get("x-stainless-retry-count")
        self.entry: dict[str, Any] = {
            "time": time.time(),
            "vendor": wire.vendor,
            "path": request.scope["path"],
            "model": None,
            "stream": False,
            "fault": None,
            "fault_source": None,
            "status": None,
            "end": None,
            "duration_ms": None,
            "ttft_ms": None,
            "request_id": self.rid,
            "retry_count": int(retry) if retry and retry.isdigit() else None,
        }
        state.log.append(self.entry)

    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self.start) * 1000.0, 3)

    def finish(self, status: int | None, end: str) -> None:
        self.entry["status"] = status
        self.entry["end"] = end
        self.entry["duration_ms"] = self.elapsed_ms()
        fault = str(self.entry["fault"] or "ok").partition(":")[0]
        metrics.SIM_REQUESTS.labels(self.wire.vendor, fault, end if status is None else str(status)).inc()

    def error(self, err: HttpError, base: Headers | None = None) -> Response:
        body = dumps(err.body)
        self.finish(err.status, "complete")
        self.entry["ttft_ms"] = self.entry["duration_ms"]
        return _Bytes(err.status, _headers(base or self.wire.headers("", self.rid, DEFAULT_RATELIMIT), _JSON,
                                           body, err.headers), body)


class _Stream:
    """Plays a list of SSE events with pacing and the stream faults (stall, cut, malformed)."""

    def __init__(self, call: _Call, conn: _Conn, send: Send) -> None:
        self.call = call
        self.conn = conn
        self.send = send
        self.sent_first = False

    async def event(self, data: bytes) -> None:
        if not self.sent_first:
            self.sent_first = True
            self.call.entry["ttft_ms"] = self.call.elapsed_ms()
        await self.send({"type": "http.response.body", "body": data, "more_body": True})


def create_app(plan: FaultPlan | None = None) -> Starlette:
    """The simulator as an ASGI app (serve it with uvicorn; ``reset``/``cut`` need uvicorn's h11 protocol)."""
    state = SimState(plan)
    anthropic, chat, responses, gemini = AnthropicWire(), ChatWire(), ResponsesWire(), GeminiWire()

    def pick_fault(call: _Call, req: SimRequest) -> Fault | None:
        spec = call.request.headers.get(FAULT_HEADER)
        fault: Fault | None
        if spec:
            try:
                fault = parse_fault(spec)
            except FaultPlanError as exc:
                raise RequestError(f"simulator: {FAULT_HEADER} header: {exc}") from None
            call.entry["fault_source"] = "header"
        else:
            try:
                fault = directive_fault(req.text, req.model)
            except FaultPlanError as exc:
                raise RequestError(f"simulator: {exc}") from None
            if fault is not None:
                call.entry["fault_source"] = "directive"
            else:
                fault = state.select(call.wire.vendor, req.model, req.text)
                if fault is not None:
                    call.entry["fault_source"] = "plan"
        if fault is None or fault.name == "ok":
            window = state.context_window_for(req.model)
            if window is not None and count_tokens(req.text) > window:
                call.entry["fault_source"] = "context_window"
                return Fault("context_length")
            return None
        return fault

    async def answer(request: Request, wire: Wire, *, model: str | None = None, stream: bool | None = None,
                     sse_framing: bool = True) -> Response:
        call = _Call(state, wire, request)
        if not wire.authorized(request.headers, request.query_params):
            return call.error(wire.unauthenticated(call.rid))
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            return call.error(wire.invalid("The request body is not valid JSON.", call.rid))
        try:
            req = wire.parse(body, model=model, stream=stream)
            call.entry["model"] = req.model
            call.entry["stream"] = req.stream
            fault = pick_fault(call, req)
        except RequestError as exc:
            return call.error(wire.invalid(str(exc), call.rid))
        call.entry["fault"] = None if fault is None else str(fault)
        base = wire.headers(req.model, call.rid, state.ratelimit_for(req.model))
        name = fault.name if fault is not None else "ok"
        if fault is not None and (name in ERROR_FAULTS or (name == "midstream_error" and not req.stream)):
            return call.error(wire.error(fault, req, call.rid), base)

        mode: AnswerMode = "normal"
        if name in REFUSAL_FAULTS:
            mode = name  # type: ignore[assignment]
        elif name == "midstream_refusal":
            mode = "midstream_refusal" if req.stream else "refusal"
        elif name == "midstream_error":
            mode = "midstream_error"
        reply = make_reply(req)

        # Timing: a fixed total delay from the header, else the plan's latency model; plus fault delays.
        fixed = request.headers.get(LATENCY_HEADER)
        latency = state.latency_for(req.model)
        first_delay_s = 0.0
        tokens_per_s: float | None = None
        if fixed is not None:
            try:
                first_delay_s = max(0.0, float(fixed) / 1000.0)
            except ValueError:
                return call.error(wire.invalid(f"simulator: {LATENCY_HEADER} must be a number", call.rid), base)
        elif latency is not None:
            if req.stream:
                first_delay_s, tokens_per_s = latency.ttft_ms / 1000.0, latency.tokens_per_s
            else:
                first_delay_s = latency.total_s(reply.output_tokens)
        if name == "slow_first_token" and fault is not None:
            first_delay_s += fault.milliseconds / 1000.0
        hang_s = 0.0
        if name == "hang" or (name == "stall" and not req.stream):
            hang_s = fault.seconds if fault is not None and fault.seconds is not None else DEFAULT_HANG_S

        if name == "reset":
            return _Run(lambda scope, receive, send: reset(call, scope, receive, send))

        if not req.stream or (isinstance(wire, GeminiWire) and not sse_framing):
            if isinstance(wire, GeminiWire) and req.stream:
                payload = wire.json_array(req, reply, mode)
            elif name == "malformed":
                payload = dumps(wire.body(req, reply, mode, call.rid))[:-7]
            else:
                payload = dumps(wire.body(req, reply, mode, call.rid))
            headers = _headers(base, _JSON, payload)
            if hang_s == 0 and first_delay_s == 0 and name != "cut":
                call.finish(200, "complete")
                call.entry["ttft_ms"] = call.entry["duration_ms"]
                return _Bytes(200, headers, payload)
            cut = name == "cut"
            return _Run(lambda scope, receive, send: delayed(call, scope, receive, send, headers, payload,
                                                             hang_s + first_delay_s, cut))

        events = wire.stream(req, reply, mode, call.rid)
        sse_headers = _headers(base, _SSE, None, {"cache-control": "no-cache"})
        return _Run(lambda scope, receive, send: play(call, scope, receive, send, sse_headers, events, fault,
                                                      hang_s, first_delay_s, tokens_per_s))

    async def reset(call: _Call, scope: Scope, receive: Receive, send: Send) -> None:
        conn = _Conn(state, scope, receive)
        try:
            if not await conn.abort(reset=True):
                raise RuntimeError("simulator: 'reset' needs uvicorn (no transport to abort)")
            call.finish(None, "reset")
        finally:
            conn.close()

    async def delayed(call: _Call, scope: Scope, receive: Receive, send: Send, headers: Headers, payload: bytes,
                      delay_s: float, cut: bool) -> None:
        conn = _Conn(state, scope, receive)
        try:
            end = await conn.sleep(delay_s)
            if end != "timeout":
                if end == "stopped":
                    await conn.abort()
                call.finish(None, end)
                return
            call.entry["ttft_ms"] = call.elapsed_ms()
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            if cut:
                await send({"type": "http.response.body", "body": payload[: len(payload) // 2], "more_body": True})
                await conn.abort()
                call.finish(200, "cut")
                return
            await send({"type": "http.response.body", "body": payload})
            call.finish(200, "complete")
        finally:
            conn.close()

    async def play(call: _Call, scope: Scope, receive: Receive, send: Send, headers: Headers,
                   events: list[StreamEvent], fault: Fault | None, hang_s: float, first_delay_s: float,
                   tokens_per_s: float | None) -> None:
        conn = _Conn(state, scope, receive)
        name = fault.name if fault is not None else "ok"
        out = _Stream(call, conn, send)
        try:
            if hang_s > 0:
                end = await conn.sleep(hang_s)
                if end != "timeout":
                    if end == "stopped":
                        await conn.abort()
                    call.finish(None, end)
                    return
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            content_at = [i for i, e in enumerate(events) if e.content] or [0]
            stop_after: int | None = None  # index of the last event before a stall / cut
            if name == "stall":
                stop_after = content_at[0]
            elif name == "cut":
                stop_after = content_at[max(0, (len(content_at) - 1) // 2)]
                if stop_after >= len(events) - 1:
                    stop_after = max(0, len(events) - 2)
            malformed_after = content_at[0] if name == "malformed" else None
            end = "timeout"
            for i, event in enumerate(events):
                if i == 0:
                    delay = first_delay_s
                else:
                    delay = event.tokens / tokens_per_s if tokens_per_s and event.content else 0.0
                if delay > 0:
                    end = await conn.sleep(delay)
                    if end != "timeout":
                        break
                elif conn.interrupt.is_set():
                    end = conn.why()
                    break
                await out.event(event.data)
                if i == malformed_after:
                    await out.event(call.wire.malformed_event())
                if i == stop_after:
                    if name == "cut":
                        await conn.abort()
                        call.finish(200, "cut")
                        return
                    end = await conn.sleep(fault.seconds if fault is not None and fault.seconds is not None
                                           else DEFAULT_HANG_S)
                    if end != "timeout":
                        break
            if end not in ("timeout",):
                if end == "stopped":
                    await conn.abort()
                call.finish(200, end)
                return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            call.finish(200, "complete")
        finally:
            conn.close()

    # ------------------------------------------------------------------ routes

    async def messages(request: Request) -> Response:
        return await answer(request, anthropic)

    async def chat_completions(request: Request) -> Response:
        return await answer(request, chat)

    async def responses_api(request: Request) -> Response:
        return await answer(request, responses)

    async def gemini_models(request: Request) -> Response:
        version = request.path_params["version"]
        target = request.path_params["target"]
        model, _, action = target.rpartition(":")
        if version not in ("v1", "v1beta") or action not in ("generateContent", "streamGenerateContent"):
            call = _Call(state, gemini, request)
            err = HttpError(404, {"error": {"code": 404, "status": "NOT_FOUND",
                                            "message": f"Method not found: {version}/models/{target}"}})
            return call.error(err)
        stream = action == "streamGenerateContent"
        return await answer(request, gemini, model=model, stream=stream,
                            sse_framing=request.query_params.get("alt") == "sse")

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def get_log(request: Request) -> Response:
        entries = list(state.log)
        last = request.query_params.get("last")
        if last is not None and last.isdigit():
            entries = entries[-int(last):] if int(last) else []
        payload = dumps(entries)
        return _Bytes(200, _headers([], _JSON, payload), payload)

    async def clear_log(request: Request) -> Response:
        state.log.clear()
        return JSONResponse({"cleared": True})

    async def get_faults(request: Request) -> Response:
        runtime = state.runtime_plan.to_dict() if state.runtime_plan is not None else None
        return JSONResponse({"base": state.base_plan.to_dict(), "runtime": runtime})

    async def set_faults(request: Request) -> Response:
        try:
            data = json.loads(await request.body() or b"{}")
            state.runtime_plan = FaultPlan.from_dict(data)
        except ValueError as exc:  # FaultPlanError and JSONDecodeError are both ValueErrors
            return JSONResponse({"error": f"invalid fault plan: {exc}"}, status_code=400)
        return JSONResponse({"runtime": state.runtime_plan.to_dict()})

    async def clear_faults(request: Request) -> Response:
        state.runtime_plan = None
        return JSONResponse({"runtime": None})

    routes = [
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/responses", responses_api, methods=["POST"]),
        Route("/{version}/models/{target:path}", gemini_models, methods=["POST"]),
        Route("/_sim/health", health, methods=["GET"]),
        Route("/_sim/log", get_log, methods=["GET"]),
        Route("/_sim/log", clear_log, methods=["DELETE"]),
        Route("/_sim/faults", get_faults, methods=["GET"]),
        Route("/_sim/faults", set_faults, methods=["POST"]),
        Route("/_sim/faults", clear_faults, methods=["DELETE"]),
    ]
    app = _SimulatorApp(routes=routes)
    app.state.sim = state
    return app


class _SimulatorApp(Starlette):
    """Starlette that remembers uvicorn's request cycle (for ``reset``/``cut``) before middleware wraps ``send``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[_CYCLE_KEY] = getattr(send, "__self__", None)
        await super().__call__(scope, receive, send)


def app_state(app: Starlette) -> SimState:
    """The :class:`SimState` of an app made by :func:`create_app`."""
    state: SimState = app.state.sim
    return state
