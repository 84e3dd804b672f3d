"""The simulator's ASGI app: vendor routes, fault choice and the ``/_sim/*`` control routes.

One port serves every vendor (paths as the SDKs build them). For each request the app parses the body with
the vendor's wire module, picks a fault (header ``x-sim-fault`` → ``[[sim:…]]`` directive → plan rules),
decides the answer (:mod:`.generate`) and sends it in the vendor's native shape, at once or through
:mod:`.playback` when it needs delays, a stream or a connection fault.
"""

from __future__ import annotations

import json
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .anthropic_wire import AnthropicWire
from .batch_routes import BatchRoutes
from .call import Call
from .connection import CYCLE_KEY
from .faults import (
    ERROR_FAULTS,
    FAULT_HEADER,
    OK,
    Fault,
    FaultPlan,
    FaultPlanError,
    parse_fault,
)
from .gemini_wire import GeminiWire
from .generate import Reply, count_tokens, make_reply
from .openai_wire import ChatWire, ResponsesWire
from .playback import DelayedAnswer, ResetAnswer, StreamAnswer, Timing
from .raw_response import JSON_CONTENT, SSE_CONTENT, RawResponse, raw_headers
from .request import RequestError, SimRequest
from .state import SimState
from .wire import HttpError, Wire, answer_mode, dumps

LATENCY_HEADER = "x-sim-latency-ms"
GEMINI_VERSIONS = ("v1", "v1beta")
GEMINI_ACTIONS = ("generateContent", "streamGenerateContent")


class SimulatorApp:
    """The simulator's routes over one :class:`SimState`; :meth:`starlette_app` serves them."""

    def __init__(self, plan: FaultPlan | None = None) -> None:
        self.state = SimState(plan)
        self.anthropic = AnthropicWire()
        self.chat = ChatWire()
        self.responses = ResponsesWire()
        self.gemini = GeminiWire()
        self.batch_api = BatchRoutes(self.state)

    def starlette_app(self) -> Starlette:
        """The routes as an ASGI app (serve it with uvicorn; ``reset``/``cut`` need uvicorn's h11 protocol)."""
        app = _CycleRecordingStarlette(routes=[
            Route("/v1/messages", self.anthropic_messages, methods=["POST"]),
            Route("/v1/chat/completions", self.openai_chat_completions, methods=["POST"]),
            Route("/v1/responses", self.openai_responses, methods=["POST"]),
            Route("/{version}/models/{target:path}", self.gemini_models, methods=["POST"]),
            Route("/_sim/health", self.health, methods=["GET"]),
            Route("/_sim/log", self.get_log, methods=["GET"]),
            Route("/_sim/log", self.clear_log, methods=["DELETE"]),
            Route("/_sim/faults", self.get_faults, methods=["GET"]),
            Route("/_sim/faults", self.set_faults, methods=["POST"]),
            Route("/_sim/faults", self.clear_faults, methods=["DELETE"]),
            Route("/_sim/calls", self.get_calls, methods=["GET"]),
            Route("/_sim/calls", self.reset_calls, methods=["DELETE"]),
            Route("/_sim/batches", self.get_batches, methods=["GET"]),
            *self.batch_api.routes(),  # after /_sim/*: "/{version}/batches" would match "/_sim/batches"
        ])
        app.state.sim = self.state
        return app

    # ------------------------------------------------------------------ vendor routes

    async def anthropic_messages(self, request: Request) -> Response:
        """``POST /v1/messages``."""
        return await self._answer(request, self.anthropic)

    async def openai_chat_completions(self, request: Request) -> Response:
        """``POST /v1/chat/completions``."""
        return await self._answer(request, self.chat)

    async def openai_responses(self, request: Request) -> Response:
        """``POST /v1/responses``."""
        return await self._answer(request, self.responses)

    async def gemini_models(self, request: Request) -> Response:
        """``POST /{v1,v1beta}/models/{model}:generateContent``, ``:streamGenerateContent[?alt=sse]`` and
        ``:batchGenerateContent`` (:mod:`.batch_routes`)."""
        version = request.path_params["version"]
        target = request.path_params["target"]
        model, _, action = target.rpartition(":")
        if version in GEMINI_VERSIONS and action == "batchGenerateContent":
            return await self.batch_api.gemini.create(request, model)
        if version not in GEMINI_VERSIONS or action not in GEMINI_ACTIONS:
            call = Call(self.state, self.gemini, request)
            return call.error(HttpError(404, {"error": {"code": 404, "status": "NOT_FOUND",
                                                        "message": f"Method not found: {version}/models/{target}"}}))
        return await self._answer(request, self.gemini, model=model, stream=action == "streamGenerateContent",
                                  sse_framing=request.query_params.get("alt") == "sse")

    # ------------------------------------------------------------------ control routes

    async def health(self, request: Request) -> Response:
        """``GET /_sim/health``: ok, and the simulator's process id (a launcher checks that the simulator answering
        on a port is the one it started)."""
        return JSONResponse({"status": "ok", "pid": os.getpid()})

    async def get_log(self, request: Request) -> Response:
        """``GET /_sim/log[?last=N]``: the request log, oldest first."""
        entries = list(self.state.log)
        last = request.query_params.get("last")
        if last is not None and last.isdigit():
            entries = entries[-int(last):] if int(last) else []
        payload = dumps(entries)
        return RawResponse(200, raw_headers([], JSON_CONTENT, payload), payload)

    async def clear_log(self, request: Request) -> Response:
        """``DELETE /_sim/log``."""
        self.state.log.clear()
        return JSONResponse({"cleared": True})

    async def get_calls(self, request: Request) -> Response:
        """``GET /_sim/calls``: vendor requests open now (arrived, answer not fully sent) and the peak."""
        return JSONResponse({"open": self.state.open_calls, "peak": self.state.peak_open_calls})

    async def reset_calls(self, request: Request) -> Response:
        """``DELETE /_sim/calls``: start the peak again from the calls open now."""
        self.state.peak_open_calls = self.state.open_calls
        return JSONResponse({"open": self.state.open_calls, "peak": self.state.peak_open_calls})

    async def get_faults(self, request: Request) -> Response:
        """``GET /_sim/faults``: the file plan and the runtime plan."""
        runtime = self.state.runtime_plan.to_dict() if self.state.runtime_plan is not None else None
        return JSONResponse({"base": self.state.base_plan.to_dict(), "runtime": runtime})

    async def set_faults(self, request: Request) -> Response:
        """``POST /_sim/faults``: replace the runtime plan (same shape as the faults file)."""
        try:
            data = json.loads(await request.body() or b"{}")
            self.state.runtime_plan = FaultPlan.from_dict(data)
        except ValueError as exc:  # FaultPlanError and JSONDecodeError are both ValueErrors
            return JSONResponse({"error": f"invalid fault plan: {exc}"}, status_code=400)
        return JSONResponse({"runtime": self.state.runtime_plan.to_dict()})

    async def clear_faults(self, request: Request) -> Response:
        """``DELETE /_sim/faults``: drop the runtime plan."""
        self.state.runtime_plan = None
        return JSONResponse({"runtime": None})

    async def get_batches(self, request: Request) -> Response:
        """``GET /_sim/batches``: every vendor batch held, oldest first."""
        payload = dumps(self.batch_api.store.summary())
        return RawResponse(200, raw_headers([], JSON_CONTENT, payload), payload)

    # ------------------------------------------------------------------ answering a vendor request

    async def _answer(self, request: Request, wire: Wire, *, model: str | None = None, stream: bool | None = None,
                      sse_framing: bool = True) -> Response:
        call = Call(self.state, wire, request)
        if not wire.authorized(request.headers, request.query_params):
            return call.error(wire.unauthenticated(call.rid))
        try:
            body = json.loads(await request.body())
        except ValueError:
            return call.error(wire.invalid("The request body is not valid JSON.", call.rid))
        try:
            req = wire.parse(body, model=model, stream=stream)
            call.entry["model"] = req.model
            call.entry["stream"] = req.stream
            chosen = self._pick_fault(call, request, req)
        except RequestError as exc:
            return call.error(wire.invalid(str(exc), call.rid))
        call.entry["fault"] = None if chosen is None else str(chosen)
        fault = chosen or OK
        base = wire.headers(req.model, call.rid, self.state.ratelimit_for(req.model))
        if fault.name in ERROR_FAULTS or (fault.name == "midstream_error" and not req.stream):
            return call.error(wire.error(fault, req, call.rid), base)

        mode = answer_mode(fault.name, req.stream)
        reply = self.state.prompt_cache.apply(req, make_reply(req))
        try:
            timing = self._timing(request, req, reply, fault)
        except RequestError as exc:
            return call.error(wire.invalid(str(exc), call.rid), base)

        if fault.name == "reset":
            return ResetAnswer(self.state, call)

        if not req.stream or (isinstance(wire, GeminiWire) and not sse_framing):
            if isinstance(wire, GeminiWire) and req.stream:
                payload = wire.json_array(req, reply, mode)
            elif fault.name == "malformed":
                payload = dumps(wire.body(req, reply, mode, call.rid))[:-7]
            else:
                payload = dumps(wire.body(req, reply, mode, call.rid))
            headers = raw_headers(base, JSON_CONTENT, payload)
            if timing.hang_s == 0 and timing.first_delay_s == 0 and fault.name != "cut":
                call.finish_at_once(200)
                return RawResponse(200, headers, payload)
            return DelayedAnswer(self.state, call, headers, payload, timing.hang_s + timing.first_delay_s,
                                 cut=fault.name == "cut")

        events = wire.stream(req, reply, mode, call.rid)
        sse_headers = raw_headers(base, SSE_CONTENT, None, {"cache-control": "no-cache"})
        return StreamAnswer(self.state, call, sse_headers, events, fault, timing)

    def _pick_fault(self, call: Call, request: Request, req: SimRequest) -> Fault | None:
        """The header's fault, else the prompt's directive, else the plans' (logging which); then the context
        window. None for a normal answer; :class:`RequestError` for a fault that cannot be parsed."""
        spec = request.headers.get(FAULT_HEADER)
        fault: Fault | None
        if spec:
            try:
                fault = parse_fault(spec)
            except FaultPlanError as exc:
                raise RequestError(f"simulator: {FAULT_HEADER} header: {exc}") from None
            call.entry["fault_source"] = "header"
        else:
            try:
                fault, source = self.state.fault_for(req)
            except FaultPlanError as exc:
                raise RequestError(f"simulator: {exc}") from None
            call.entry["fault_source"] = source
            return fault
        if fault.name == "ok":
            window = self.state.context_window_for(req.model)
            if window is not None and count_tokens(req.text) > window:
                call.entry["fault_source"] = "context_window"
                return Fault("context_length", str(window))
            return None
        return fault

    def _timing(self, request: Request, req: SimRequest, reply: Reply, fault: Fault) -> Timing:
        """A fixed total delay from the latency header, else the plans' latency model; plus the fault's delays."""
        fixed = request.headers.get(LATENCY_HEADER)
        first_delay_s = 0.0
        tokens_per_s: float | None = None
        if fixed is not None:
            try:
                first_delay_s = max(0.0, float(fixed) / 1000.0)
            except ValueError:
                raise RequestError(f"simulator: {LATENCY_HEADER} must be a number") from None
        else:
            latency = self.state.latency_for(req.model)
            if latency is not None:
                if req.stream:
                    first_delay_s, tokens_per_s = latency.ttft_ms / 1000.0, latency.tokens_per_s
                else:
                    first_delay_s = latency.total_s(reply.output_tokens)
        if fault.name == "slow_first_token":
            first_delay_s += fault.milliseconds / 1000.0
        holds = fault.name == "hang" or (fault.name == "stall" and not req.stream)
        return Timing(hang_s=fault.hold_s if holds else 0.0, first_delay_s=first_delay_s, tokens_per_s=tokens_per_s)


class _CycleRecordingStarlette(Starlette):
    """Starlette that remembers uvicorn's request cycle (for ``reset``/``cut``) before middleware wraps ``send``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        scope[CYCLE_KEY] = getattr(send, "__self__", None)
        if str(scope.get("path", "")).startswith("/_sim/"):
            await super().__call__(scope, receive, send)
            return
        sim: SimState = self.state.sim
        sim.call_opened()
        try:
            await super().__call__(scope, receive, send)
        finally:
            sim.call_closed()


def create_app(plan: FaultPlan | None = None) -> Starlette:
    """The simulator as an ASGI app (serve it with uvicorn; ``reset``/``cut`` need uvicorn's h11 protocol)."""
    return SimulatorApp(plan).starlette_app()


def app_state(app: Starlette) -> SimState:
    """The :class:`SimState` of an app made by :func:`create_app`."""
    state: SimState = app.state.sim
    return state
