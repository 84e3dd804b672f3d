"""The HTTP front door: OpenAI- and Anthropic-compatible endpoints in front of the fleet.

It holds no state of its own: every request submits a job through :class:`~toolbag.client.Client` (Redis is the
truth), a streamed answer is relayed from the job's delta stream (:mod:`toolbag.attempt.deltas`), and keys are
looked up in Redis on every request. Any number of replicas can serve one fleet.

Failover on a stream: an attempt that fails before any text went out is rerouted by the supervisor and the
caller sees one clean stream; one that fails after text went out ends the stream with an in-band error event
the SDKs raise (and the job is cancelled), never a silent truncation or a replay.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from toolbag.api.keys import ApiKey, KeyStore
from toolbag.api.wire import ChatCompletionRequest, MessagesRequest, field_path
from toolbag.attempt.deltas import AttemptEnd, TextDelta
from toolbag.client import Client, Job
from toolbag.config import TIERS
from toolbag.console import console_app
from toolbag.errors import ToolbagError
from toolbag.jobs import JobResult, ResultTimeout, SubmitError

__all__ = ["JOB_ID_HEADER", "TIER_HEADER", "create_app"]

JOB_ID_HEADER = "x-toolbag-job-id"
TIER_HEADER = "x-toolbag-tier"
DIRECT_CAPABILITY = "chat"  # the capability of a job whose `model` names a configured model
MAX_BODY_BYTES_OVER_INPUT = 64 * 1024  # envelope allowance on top of fleet.max_input_bytes
DRAIN_FACTOR = 8  # an oversized body is read and dropped up to this many times the limit before the 413

Dialect = Literal["openai", "anthropic"]

log = logging.getLogger("toolbag.api")


class ApiError(ToolbagError):
    """A request the front door refuses: HTTP status, the SDK's error type, and a message."""

    def __init__(self, status: int, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param


_OPENAI_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
                 413: "invalid_request_error", 500: "server_error", 502: "server_error", 504: "timeout"}
_OPENAI_CODES = {401: "invalid_api_key", 404: "model_not_found"}
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                    413: "request_too_large", 500: "api_error", 502: "api_error", 504: "timeout_error"}


def error_body(dialect: Dialect, status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """The error body each SDK parses for ``status``."""
    if dialect == "anthropic":
        return {"type": "error", "error": {"type": _ANTHROPIC_TYPES.get(status, "api_error"), "message": message}}
    return {"error": {"message": message, "type": _OPENAI_TYPES.get(status, "server_error"), "param": param,
                      "code": _OPENAI_CODES.get(status)}}


def _error_response(dialect: Dialect, err: ApiError, job_id: str | None = None) -> JSONResponse:
    headers = {"x-should-retry": "false"}
    if job_id is not None:
        headers[JOB_ID_HEADER] = job_id
    return JSONResponse(error_body(dialect, err.status, err.message, err.param), err.status, headers=headers)


@dataclass(frozen=True)
class Text:
    text: str
    model: str


@dataclass(frozen=True)
class Done:
    result: JobResult


@dataclass(frozen=True)
class Failed:
    message: str


Relayed = Text | Done | Failed


def relay(client: Client, job: Job, timeout_s: float, *, streamed: bool = True) -> Iterator[Relayed]:
    """The job's answer for an HTTP stream: text as it arrives, then ``Done`` or ``Failed``.

    A failed attempt that had sent no text is passed over (the supervisor reroutes it); one that had sent text
    ends the relay with ``Failed`` and cancels the job: the caller already holds part of an answer that will
    not be continued. A wait past ``timeout_s`` or a broken Redis also ends it with ``Failed``, never silently.
    ``streamed``: the job's tier streams (else the answer comes whole, at the end)."""
    try:
        yield from _relay(client, job, timeout_s, streamed)
    except TimeoutError:
        yield Failed(f"no answer within {timeout_s:g} s; job {job.id} keeps running")
    except Exception as err:
        log.exception("relay failed", extra={"job_id": job.id})
        yield Failed(f"the front door lost the job's stream ({type(err).__name__}); job {job.id}")


def _relay(client: Client, job: Job, timeout_s: float, streamed: bool) -> Iterator[Relayed]:
    sent = False
    for event in job.stream(timeout_s=timeout_s) if streamed else ():
        if isinstance(event, TextDelta):
            sent = sent or bool(event.text)
            yield Text(event.text, event.model)
        elif isinstance(event, AttemptEnd) and not event.ok and sent:
            client.cancel(job.id)
            yield Failed(f"the answer was cut: the attempt on {event.model} ended {event.outcome} after "
                         f"part of it was sent ({event.reason[:200]})")
            return
    result = client.result(job.id, timeout_s)
    if not result.ok:
        yield Failed(f"job {result.status.value}: {result.error or 'no model answered'}")
        return
    if not sent:  # a non-streaming tier: the whole answer at once
        yield Text(output_text(result), result.model or "")
    yield Done(result)


def output_text(result: JobResult) -> str:
    return result.output if isinstance(result.output, str) else json.dumps(result.output)


def _sse(data: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class FrontDoor:
    """The endpoints, over one :class:`Client` (its config, store and skills)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.config = client.config
        self.keys = KeyStore(client.store.redis, client.store.keys)
        self.max_body_bytes = self.config.fleet.max_input_bytes + MAX_BODY_BYTES_OVER_INPUT

    # -- shared ---------------------------------------------------------------------------------------

    def model_names(self) -> dict[str, str]:
        """Every name a caller may put in ``model``, and what it names (first kind wins on a clash)."""
        names: dict[str, str] = {}
        for name in self.config.routes:
            names.setdefault(name, "capability")
        for name in self._skill_names():
            names.setdefault(name, "skill")
        for name in self.config.models:
            names.setdefault(name, "model")
        return names

    def _skill_names(self) -> list[str]:
        try:
            from toolbag.skills import SkillLibrary, default_skills_dir
        except ImportError:
            return []
        try:
            return SkillLibrary(default_skills_dir()).names()
        except (OSError, ValueError):
            return []

    def authenticate(self, request: Request) -> ApiKey:
        header = request.headers.get("authorization", "")
        secret = header[7:].strip() if header[:7].lower() == "bearer " else request.headers.get("x-api-key", "")
        if not secret:
            raise ApiError(401, "no API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`")
        key = self.keys.lookup(secret)
        if key is None:
            raise ApiError(401, "invalid API key (unknown or revoked)")
        return key

    async def body(self, request: Request, model: type[BaseModel]) -> Any:
        raw = await self._read_bounded(request)
        try:
            data = json.loads(raw)
        except ValueError as err:
            raise ApiError(400, f"the body is not valid JSON: {err}") from None
        try:
            return model.model_validate(data)
        except ValidationError as err:
            first = err.errors()[0]
            path = field_path(tuple(first["loc"]))
            raise ApiError(400, f"{path or 'body'}: {first['msg']}", param=path or None) from None

    async def _read_bounded(self, request: Request) -> bytes:
        """The body, or 413 past ``max_body_bytes``. An oversized body is read on (and dropped) up to
        :data:`DRAIN_FACTOR` times the limit, so the client finishes sending and reads the 413."""
        declared = request.headers.get("content-length", "")
        oversized = declared.isdigit() and int(declared) > self.max_body_bytes
        parts: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            oversized = oversized or size > self.max_body_bytes
            if size > self.max_body_bytes * DRAIN_FACTOR:
                break
            if not oversized:
                parts.append(chunk)
        if oversized:
            raise ApiError(413, f"request body exceeds {self.max_body_bytes} bytes")
        return b"".join(parts)

    def submit(self, key: ApiKey, request: Request, model: str, job_input: dict[str, Any]) -> Job:
        tier = request.headers.get(TIER_HEADER) or key.tier or None
        if tier is not None and tier not in TIERS:
            raise ApiError(400, f"{TIER_HEADER}: unknown tier {tier!r}; one of {', '.join(TIERS)}", param=TIER_HEADER)
        kind = self.model_names().get(model)
        if kind is None:
            raise ApiError(404, f"model {model!r} not found: it names no capability, skill or configured model "
                                "(GET /v1/models lists them)", param="model")
        arguments: dict[str, Any] = {"input": job_input, "tier": tier, "caller": key.caller}
        if kind == "capability":
            arguments["capability"] = model
        elif kind == "skill":
            arguments["skill"] = model
        else:
            arguments.update(capability=DIRECT_CAPABILITY, candidates=(model,))
        try:
            return self.client.submit(**arguments)
        except SubmitError as err:
            raise ApiError(400, str(err), param=err.field) from None

    def tier_of(self, job: Job) -> tuple[float, bool]:
        """How long to wait for ``job`` (its tier's longest deadline) and whether its tier streams."""
        tier = self.config.tiers[self.client.store.get(job.id).tier]
        return float(tier.max_deadline_s), tier.stream

    # -- endpoints ------------------------------------------------------------------------------------

    async def models(self, request: Request) -> Response:
        try:
            await run_in_threadpool(self.authenticate, request)
        except ApiError as err:
            return _error_response("openai", err)
        data = [{"id": name, "object": "model", "created": 0, "owned_by": f"toolbag-{kind}"}
                for name, kind in self.model_names().items()]
        return JSONResponse({"object": "list", "data": data})

    async def chat_completions(self, request: Request) -> Response:
        return await self._serve(request, "openai", ChatCompletionRequest)

    async def messages(self, request: Request) -> Response:
        return await self._serve(request, "anthropic", MessagesRequest)

    async def _serve(self, request: Request, dialect: Dialect, body_model: type[BaseModel]) -> Response:
        try:
            key = await run_in_threadpool(self.authenticate, request)
            body = await self.body(request, body_model)
            job = await run_in_threadpool(self.submit, key, request, body.model, body.job_input())
            timeout_s, streamed = await run_in_threadpool(self.tier_of, job)
        except ApiError as err:
            return _error_response(dialect, err)
        headers = {JOB_ID_HEADER: job.id}
        if body.stream:
            events = iterate_in_threadpool(relay(self.client, job, timeout_s, streamed=streamed))
            chunks = (_openai_chunks(job.id, events, body) if dialect == "openai"
                      else _anthropic_events(job.id, events))
            return StreamingResponse(chunks, media_type="text/event-stream",
                                     headers={**headers, "cache-control": "no-cache"})
        try:
            result = await run_in_threadpool(self.client.result, job.id, timeout_s)
        except ResultTimeout:
            late = ApiError(504, f"no answer within {timeout_s:g} s; job {job.id} keeps running")
            return _error_response(dialect, late, job.id)
        if not result.ok:
            failed = ApiError(502, f"job {result.status.value}: {result.error or 'no model answered'}")
            return _error_response(dialect, failed, job.id)
        answer = _openai_completion(job.id, result) if dialect == "openai" else _anthropic_message(job.id, result)
        return JSONResponse(answer, headers=headers)


# -- OpenAI chat completions ------------------------------------------------------------------------------


def _usage_openai(result: JobResult) -> dict[str, int]:
    prompt, completion = result.usage.get("input_tokens", 0), result.usage.get("output_tokens", 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _openai_completion(job_id: str, result: JobResult) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{job_id}", "object": "chat.completion", "created": int(time.time()),
        "model": result.model or "",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": output_text(result)},
                     "finish_reason": "stop", "logprobs": None}],
        "usage": _usage_openai(result),
    }


async def _openai_chunks(job_id: str, events: AsyncIterator[Relayed], body: Any) -> AsyncIterator[bytes]:
    created = int(time.time())
    model = ""
    include_usage = body.stream_options is not None and body.stream_options.include_usage

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse({"id": f"chatcmpl-{job_id}", "object": "chat.completion.chunk", "created": created,
                     "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    started = False
    async for event in events:
        if isinstance(event, Text):
            model = event.model or model
            if not started:
                yield chunk({"role": "assistant", "content": ""})
                started = True
            if event.text:
                yield chunk({"content": event.text})
        elif isinstance(event, Done):
            model = event.result.model or model
            yield chunk({}, "stop")
            if include_usage:
                yield _sse({"id": f"chatcmpl-{job_id}", "object": "chat.completion.chunk", "created": created,
                            "model": model, "choices": [], "usage": _usage_openai(event.result)})
            yield b"data: [DONE]\n\n"
        else:
            yield _sse({"error": {"message": event.message, "type": "server_error", "param": None,
                                  "code": "stream_interrupted"}})
            return


# -- Anthropic messages ---------------------------------------------------------------------------------


def _anthropic_message(job_id: str, result: JobResult) -> dict[str, Any]:
    return {
        "id": f"msg_{job_id}", "type": "message", "role": "assistant", "model": result.model or "",
        "content": [{"type": "text", "text": output_text(result)}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": result.usage.get("input_tokens", 0),
                  "output_tokens": result.usage.get("output_tokens", 0)},
    }


async def _anthropic_events(job_id: str, events: AsyncIterator[Relayed]) -> AsyncIterator[bytes]:
    started = False

    def start(model: str) -> list[bytes]:
        message: dict[str, Any] = {
            "id": f"msg_{job_id}", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [_sse({"type": "message_start", "message": message}, "message_start"),
                _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                     "content_block_start")]

    async for event in events:
        if isinstance(event, Text):
            if not started:
                for frame in start(event.model):
                    yield frame
                started = True
            if event.text:
                yield _sse({"type": "content_block_delta", "index": 0,
                            "delta": {"type": "text_delta", "text": event.text}}, "content_block_delta")
        elif isinstance(event, Done):
            result = event.result
            if not started:
                for frame in start(result.model or ""):
                    yield frame
            yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
            usage = {"input_tokens": result.usage.get("input_tokens", 0),
                     "output_tokens": result.usage.get("output_tokens", 0)}
            yield _sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                        "usage": usage}, "message_delta")
            yield _sse({"type": "message_stop"}, "message_stop")
        else:
            yield _sse({"type": "error", "error": {"type": "api_error", "message": event.message}}, "error")
            return


def create_app(client: Client | None = None) -> Starlette:
    """The ASGI app over ``client`` (default: ``Client()`` from the environment)."""
    door = FrontDoor(client or Client())

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def crashed(request: Request, exc: Exception) -> Response:
        log.exception("request failed", exc_info=exc)
        dialect: Dialect = "anthropic" if request.url.path == "/v1/messages" else "openai"
        return _error_response(dialect, ApiError(500, f"internal error ({type(exc).__name__})"))

    return Starlette(routes=[
        Route("/v1/chat/completions", door.chat_completions, methods=["POST"]),
        Route("/v1/messages", door.messages, methods=["POST"]),
        Route("/v1/models", door.models, methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
        Mount("/console", app=console_app(door.client)),
    ], exception_handlers={Exception: crashed})
