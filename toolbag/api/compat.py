"""The OpenAI- and Anthropic-compatible endpoints: ``/v1/chat/completions``, ``/v1/responses``, ``/v1/messages``,
``/v1/models``.

What the caller names as ``model`` is a capability, a skill or a configured model; the tier comes from the
header ``x-toolbag-tier`` or the key's default; the job id comes back in ``x-toolbag-job-id`` on every answer.
A stream relays the job's delta stream (:mod:`toolbag.api.stream`); it always ends with usage and the model
that actually answered, or with an in-band error event the SDKs raise.

A caller that disconnects mid-stream leaves its job running: the job finishes and is recorded (its result
stays readable at ``GET /jobs/{id}``), and the relay's Redis reads stop with the connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from toolbag.api.door import TIER_HEADER, Door, Submitted
from toolbag.api.errors import JOB_ID_HEADER, ApiError, Dialect, error_response
from toolbag.api.stream import Done, Failed, Relayed, Text, ToolPiece, output_text, relay
from toolbag.api.wire import ChatCompletionRequest, MessagesRequest, ResponsesRequest, WireError
from toolbag.attempt.request import CALLER_TOOLS_FIELD, continuable, continuation
from toolbag.client import JobRequest
from toolbag.jobs import JobResult
from toolbag.telemetry import metrics

__all__ = ["DIRECT_CAPABILITY", "Compat"]

DIRECT_CAPABILITY = "chat"  # the capability of a job whose `model` names a configured model
NAMES_TTL_S = 5.0
STALL_GRACE_S = 5.0  # on top of the tier's first-token budget: the worker's own stall check fires first

log = logging.getLogger("toolbag.api")


def _sse(data: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class Compat:
    """The vendor-compatible endpoints over one :class:`Door`."""

    def __init__(self, door: Door) -> None:
        self.door = door
        self._names: tuple[float, dict[str, str]] = (0.0, {})

    def routes(self) -> list[Route]:
        return [
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/v1/messages", self.messages, methods=["POST"]),
            Route("/v1/responses", self.responses, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
        ]

    def model_names(self) -> dict[str, str]:
        """Every name a caller may put in ``model``, and what it names (first kind wins on a clash); read again
        after :data:`NAMES_TTL_S` (a skill added to the library is served within that)."""
        read_at, names = self._names
        if time.monotonic() - read_at < NAMES_TTL_S:
            return names
        names = self._read_names()
        self._names = (time.monotonic(), names)
        return names

    def _read_names(self) -> dict[str, str]:
        config = self.door.config
        names: dict[str, str] = {}
        for name in config.routes:
            names.setdefault(name, "capability")
        for name in self._skill_names():
            names.setdefault(name, "skill")
        for name in config.models:
            names.setdefault(name, "model")
        return names

    def _skill_names(self) -> list[str]:
        from toolbag.skills import SkillLibrary, default_skills_dir

        try:
            return SkillLibrary(default_skills_dir()).names()
        except (OSError, ValueError):
            return []

    async def models(self, request: Request) -> Response:
        try:
            await self.door.authenticate(request)
        except ApiError as err:
            return error_response("openai", err)
        data = [{"id": name, "object": "model", "created": 0, "owned_by": f"toolbag-{kind}"}
                for name, kind in self.model_names().items()]
        return JSONResponse({"object": "list", "data": data})

    async def chat_completions(self, request: Request) -> Response:
        return await self._serve(request, "openai", "chat_completions")

    async def messages(self, request: Request) -> Response:
        return await self._serve(request, "anthropic", "messages")

    async def responses(self, request: Request) -> Response:
        return await self._serve(request, "openai", "responses", ResponsesRequest)

    def _job_request(self, model: str, job_input: dict[str, Any], tier: str | None) -> JobRequest:
        kind = self.model_names().get(model)
        if kind is None:
            raise ApiError(404, f"model {model!r} not found: it names no capability, skill or configured model "
                                "(GET /v1/models lists them)", param="model")
        if kind == "capability":
            return JobRequest(capability=model, input=job_input, tier=tier)
        if kind == "skill":
            if CALLER_TOOLS_FIELD in job_input:
                raise ApiError(400, f"tools: {model!r} is a skill, which renders its own request and runs its own "
                                    "tools; offer tools with a capability or a configured model", param="tools")
            return JobRequest(skill=model, input=job_input, tier=tier)
        return JobRequest(capability=DIRECT_CAPABILITY, input=job_input, tier=tier, candidates=(model,))

    async def _serve(self, request: Request, dialect: Dialect, endpoint: str,
                     body_model: type[BaseModel] | None = None) -> Response:
        started = time.monotonic()
        body_model = body_model or (ChatCompletionRequest if dialect == "openai" else MessagesRequest)
        try:
            key = await self.door.authenticate(request)
            body = await self.door.body(request, body_model)
            try:
                job_input = body.job_input()
            except WireError as err:
                raise ApiError(400, str(err), param=err.field) from None
            job_request = self._job_request(body.model, job_input, request.headers.get(TIER_HEADER))
            sub = await run_in_threadpool(self.door.submit, key, job_request, tier_field=TIER_HEADER,
                                          tools_field="tools")
        except ApiError as err:
            metrics.API_REQUESTS.labels(endpoint, "unknown", "unknown", str(err.status)).inc()
            return error_response(dialect, err)
        headers = {JOB_ID_HEADER: sub.job.id}
        timeout_s = float(sub.tier_config.max_deadline_s)
        if body.stream:
            metrics.API_REQUESTS.labels(endpoint, sub.capability, sub.tier, "200").inc()
            continues = sub.policy.stream_failover == "continue" and continuable(job_input, job_request.skill)
            events = self._relay(sub, started, timeout_s, continues)
            chunks = (_responses_events(sub.job.id, events) if endpoint == "responses"
                      else _openai_chunks(sub.job.id, events, body) if dialect == "openai"
                      else _anthropic_events(sub.job.id, events))
            return StreamingResponse(chunks, media_type="text/event-stream",
                                     headers={**headers, "cache-control": "no-cache"})
        response = await self._whole(sub, dialect, timeout_s, endpoint)
        metrics.API_REQUESTS.labels(endpoint, sub.capability, sub.tier, str(response.status_code)).inc()
        return response

    async def _whole(self, sub: Submitted, dialect: Dialect, timeout_s: float, endpoint: str) -> Response:
        try:
            result = await self.door.feed(sub.job.id).result(timeout_s)
        except TimeoutError:
            late = ApiError(504, f"no answer within {timeout_s:g} s; job {sub.job.id} keeps running")
            return error_response(dialect, late, sub.job.id)
        if not result.ok:
            failed = ApiError(502, f"job {result.status.value}: {result.error or 'no model answered'}")
            return error_response(dialect, failed, sub.job.id)
        tokens = Done(result, await self._carried_chars(sub.job.id, result)).usage()
        answer = (_response_object(sub.job.id, result, "completed", tokens=tokens) if endpoint == "responses"
                  else _openai_completion(sub.job.id, result, tokens) if dialect == "openai"
                  else _anthropic_message(sub.job.id, result, tokens))
        return JSONResponse(answer, headers={JOB_ID_HEADER: sub.job.id})

    async def _carried_chars(self, job_id: str, result: JobResult) -> int:
        """How much of a whole answer came from cut attempts the answering one continued (0 for an answer of one
        attempt, without reading the record)."""
        if sum(1 for h in result.attempts if h.get("type") == "attempt") < 2 or not result.model:
            return 0
        record = await run_in_threadpool(self.door.client.store.get, job_id)
        return len(continuation(self.door.config, result.model, record.prefill))

    async def _relay(self, sub: Submitted, started: float, timeout_s: float,
                     continues: bool) -> AsyncIterator[Relayed]:
        """The relay with its metrics: open streams, time to first token, and how the stream ended."""
        labels = (sub.capability, sub.tier)
        outcome = "disconnected"
        first = True
        metrics.API_OPEN_STREAMS.inc()
        stall_s = sub.tier_config.first_token_timeout_s + STALL_GRACE_S
        try:
            async for event in relay(self.door.feed(sub.job.id), timeout_s, streamed=sub.tier_config.stream,
                                     stall_s=stall_s, continues=continues):
                if isinstance(event, Text) and first and event.text:
                    first = False
                    metrics.API_TIME_TO_FIRST_TOKEN.labels(*labels).observe(time.monotonic() - started)
                elif isinstance(event, Done):
                    outcome = "complete"
                elif isinstance(event, Failed):
                    outcome = event.outcome
                yield event
        except (asyncio.CancelledError, GeneratorExit):
            outcome = "disconnected"
            raise
        finally:
            metrics.API_OPEN_STREAMS.dec()
            metrics.API_STREAMS.labels(*labels, outcome).inc()


# -- OpenAI chat completions ------------------------------------------------------------------------------


def _usage_openai(usage: dict[str, int]) -> dict[str, int]:
    prompt, completion = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _openai_calls(result: JobResult) -> list[dict[str, Any]]:
    """The model's calls of the caller's tools, as chat-completion ``tool_calls`` (arguments as JSON text)."""
    return [{"id": str(c.get("id", "")), "type": "function",
             "function": {"name": str(c.get("name", "")), "arguments": json.dumps(c.get("arguments") or {})}}
            for c in result.tool_calls]


def _openai_completion(job_id: str, result: JobResult, tokens: dict[str, int]) -> dict[str, Any]:
    text = output_text(result)
    message: dict[str, Any] = {"role": "assistant", "content": text}
    calls = _openai_calls(result)
    if calls:
        message.update(content=text or None, tool_calls=calls)
    return {
        "id": f"chatcmpl-{job_id}", "object": "chat.completion", "created": int(time.time()),
        "model": result.model or "",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop",
                     "logprobs": None}],
        "usage": _usage_openai(tokens),
    }


async def _openai_chunks(job_id: str, events: AsyncIterator[Relayed], body: Any) -> AsyncIterator[bytes]:
    """Chat-completion chunks. The finish chunk always carries usage and the model that answered;
    ``stream_options.include_usage`` adds the usage-only chunk the SDK documents."""
    created = int(time.time())
    model = ""
    include_usage = body.stream_options is not None and body.stream_options.include_usage

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        return _sse({"id": f"chatcmpl-{job_id}", "object": "chat.completion.chunk", "created": created,
                     "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})

    started = False
    streamed_calls: set[int] = set()  # the calls whose pieces went out as the model generated them
    async for event in events:
        if isinstance(event, Text):
            model = event.model or model
            head = b"" if started else chunk({"role": "assistant", "content": ""})
            started = True
            yield head + (chunk({"content": event.text}) if event.text else b"")  # one write for the first text
        elif isinstance(event, ToolPiece):
            model = event.model or model
            head = b"" if started else chunk({"role": "assistant", "content": None})
            started = True
            if event.index not in streamed_calls:  # the id and name first, as the vendor streams them
                streamed_calls.add(event.index)
                head += chunk({"tool_calls": [{"index": event.index, "id": event.call_id, "type": "function",
                                               "function": {"name": event.name, "arguments": ""}}]})
            pieces = chunk({"tool_calls": [{"index": event.index, "function": {"arguments": event.arguments}}]})
            yield head + (pieces if event.arguments else b"")
        elif isinstance(event, Done):
            model = event.result.model or model
            usage = _usage_openai(event.usage())
            calls = _openai_calls(event.result)
            for index, call in enumerate(calls):  # a tier that does not stream: each call whole, name first
                if index in streamed_calls:
                    continue
                named = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
                yield chunk({"tool_calls": [{"index": index, **named}]})
                arguments = {"arguments": call["function"]["arguments"]}
                yield chunk({"tool_calls": [{"index": index, "function": arguments}]})
            yield chunk({}, "tool_calls" if calls else "stop", usage=usage)
            if include_usage:
                yield _sse({"id": f"chatcmpl-{job_id}", "object": "chat.completion.chunk", "created": created,
                            "model": model, "choices": [], "usage": usage})
            yield b"data: [DONE]\n\n"
        else:
            yield _sse({"error": {"message": event.message, "type": "server_error", "param": None,
                                  "code": f"stream_{event.outcome}"}})
            return


# -- OpenAI responses ---------------------------------------------------------------------------------


def _response_object(job_id: str, result: JobResult | None, status: str, model: str = "",
                     text: str | None = None, tokens: dict[str, int] | None = None) -> dict[str, Any]:
    """A Responses API ``response``: in progress (no output, no usage), or completed with the answer."""
    output: list[dict[str, Any]] = []
    usage = None
    if result is not None:
        model = result.model or model
        text = output_text(result) if text is None else text
        output = [_response_message(job_id, text, "completed")]
        counted = result.usage if tokens is None else tokens
        prompt, completion = counted.get("input_tokens", 0), counted.get("output_tokens", 0)
        usage = {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": completion,
                 "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": prompt + completion}
    return {"id": f"resp_{job_id}", "object": "response", "created_at": int(time.time()), "status": status,
            "model": model, "output": output, "parallel_tool_calls": False, "tool_choice": "none", "tools": [],
            "error": None, "incomplete_details": None, "usage": usage}


def _response_message(job_id: str, text: str, status: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []
    return {"type": "message", "id": f"msg_{job_id}", "status": status, "role": "assistant", "content": content}


async def _responses_events(job_id: str, events: AsyncIterator[Relayed]) -> AsyncIterator[bytes]:
    """The Responses event sequence; a cut stream ends with an ``error`` event the SDK raises (it carries an
    ``error`` object), then ``response.failed``, never ``response.completed``."""
    sequence = 0
    model = ""
    parts: list[str] = []
    where = {"item_id": f"msg_{job_id}", "output_index": 0, "content_index": 0}

    def event(kind: str, **payload: Any) -> bytes:
        nonlocal sequence
        sequence += 1
        return _sse({"type": kind, "sequence_number": sequence - 1, **payload}, kind)

    def opening() -> bytes:
        created = _response_object(job_id, None, "in_progress", model)
        return b"".join((
            event("response.created", response=created), event("response.in_progress", response=created),
            event("response.output_item.added", output_index=0, item=_response_message(job_id, "", "in_progress")),
            event("response.content_part.added", **where, part={"type": "output_text", "text": "", "annotations": []}),
        ))

    started = False
    async for relayed in events:
        if isinstance(relayed, Text):
            model = relayed.model or model
            head = b"" if started else opening()
            started = True
            parts.append(relayed.text)
            delta = event("response.output_text.delta", **where, delta=relayed.text) if relayed.text else b""
            yield head + delta
        elif isinstance(relayed, ToolPiece):
            continue  # /v1/responses offers no tools
        elif isinstance(relayed, Done):
            model = relayed.result.model or model
            head = b"" if started else opening()
            text = "".join(parts)
            done = _response_object(job_id, relayed.result, "completed", model, text, relayed.usage())
            part = {"type": "output_text", "text": text, "annotations": []}
            yield head + b"".join((
                event("response.output_text.done", **where, text=text),
                event("response.content_part.done", **where, part=part),
                event("response.output_item.done", output_index=0, item=done["output"][0]),
                event("response.completed", response=done),
            ))
        else:
            failed = _response_object(job_id, None, "failed", model)
            failed["error"] = {"code": f"stream_{relayed.outcome}", "message": relayed.message}
            yield event("error", code=f"stream_{relayed.outcome}", message=relayed.message, param=None,
                        error={"message": relayed.message, "type": "server_error", "code": f"stream_{relayed.outcome}"})
            yield event("response.failed", response=failed)
            return


# -- Anthropic messages ---------------------------------------------------------------------------------


def _anthropic_usage(usage: dict[str, int]) -> dict[str, int]:
    return {"input_tokens": usage.get("input_tokens", 0), "output_tokens": usage.get("output_tokens", 0)}


def _tool_use_blocks(result: JobResult) -> list[dict[str, Any]]:
    return [{"type": "tool_use", "id": str(c.get("id", "")), "name": str(c.get("name", "")),
             "input": c.get("arguments") or {}} for c in result.tool_calls]


def _anthropic_message(job_id: str, result: JobResult, tokens: dict[str, int]) -> dict[str, Any]:
    text, calls = output_text(result), _tool_use_blocks(result)
    content = ([{"type": "text", "text": text}] if text or not calls else []) + calls
    return {
        "id": f"msg_{job_id}", "type": "message", "role": "assistant", "model": result.model or "",
        "content": content, "stop_reason": "tool_use" if calls else "end_turn", "stop_sequence": None,
        "usage": _anthropic_usage(tokens),
    }


async def _anthropic_events(job_id: str, events: AsyncIterator[Relayed]) -> AsyncIterator[bytes]:
    """The Messages event sequence. ``message_start`` names the model of the first text; ``message_delta``
    carries the final usage. Text goes in a ``text`` block; the model's calls of the caller's tools in
    ``tool_use`` blocks whose input comes in ``input_json_delta`` pieces as the model generates it (from a tier
    that does not stream: each whole, at the end)."""
    started = False
    block_open: tuple[int, str] | None = None  # the content block being written: its index and type
    blocks = 0  # content blocks started so far
    calls_streamed: dict[int, int] = {}  # call index -> its content block

    def start(model: str) -> bytes:
        message: dict[str, Any] = {
            "id": f"msg_{job_id}", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return _sse({"type": "message_start", "message": message}, "message_start")

    def block(content_block: dict[str, Any]) -> bytes:
        """Close the open block and start the next one."""
        nonlocal block_open, blocks
        frames = close()
        block_open, blocks = (blocks, content_block["type"]), blocks + 1
        return frames + _sse({"type": "content_block_start", "index": block_open[0],
                              "content_block": content_block}, "content_block_start")

    def close() -> bytes:
        nonlocal block_open
        if block_open is None:
            return b""
        index, block_open = block_open[0], None
        return _sse({"type": "content_block_stop", "index": index}, "content_block_stop")

    def delta(index: int, body: dict[str, Any]) -> bytes:
        return _sse({"type": "content_block_delta", "index": index, "delta": body}, "content_block_delta")

    async for event in events:
        if isinstance(event, Text):
            head = b"" if started else start(event.model)
            started = True
            if event.text and (block_open is None or block_open[1] != "text"):
                head += block({"type": "text", "text": ""})
            text = delta(block_open[0], {"type": "text_delta", "text": event.text}) if block_open else b""
            yield head + (text if event.text else b"")  # one write for the first text
        elif isinstance(event, ToolPiece):
            head = b"" if started else start(event.model)
            started = True
            if event.index not in calls_streamed:
                head += block({"type": "tool_use", "id": event.call_id, "name": event.name, "input": {}})
                calls_streamed[event.index] = blocks - 1
            index = calls_streamed[event.index]
            pieces = delta(index, {"type": "input_json_delta", "partial_json": event.arguments})
            yield head + (pieces if event.arguments else b"")
        elif isinstance(event, Done):
            result = event.result
            calls = _tool_use_blocks(result)
            frames = [] if started else [start(result.model or "")]
            if blocks == 0 and not calls:
                frames.append(block({"type": "text", "text": ""}))
            for index, call in enumerate(calls):
                if index in calls_streamed:
                    continue
                frames.append(block({**call, "input": {}}))
                whole = json.dumps(call["input"])
                frames.append(delta(blocks - 1, {"type": "input_json_delta", "partial_json": whole}))
            frames.append(close())
            frames.append(_sse({"type": "message_delta",
                                "delta": {"stop_reason": "tool_use" if calls else "end_turn", "stop_sequence": None},
                                "usage": _anthropic_usage(event.usage())}, "message_delta"))
            frames.append(_sse({"type": "message_stop"}, "message_stop"))
            for frame in frames:
                if frame:
                    yield frame
        else:
            kind = "overloaded_error" if event.outcome in ("stalled", "timeout") else "api_error"
            yield _sse({"type": "error", "error": {"type": kind, "message": event.message}}, "error")
            return
