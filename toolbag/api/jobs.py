"""The native job API: what the compatible APIs cannot say.

``POST /jobs``, ``POST /jobs:batch``, ``GET /jobs/{id}``, ``DELETE /jobs/{id}``, ``GET /jobs/{id}/events``
(server-sent events of the job's deltas, every attempt's end, and the job's end) and the escalation inbox
(``/escalations``...). Each goes through the same library calls as the CLI (:class:`~toolbag.client.Client`,
:class:`~toolbag.escalations.Inbox`). A key reads only its own caller's jobs; a key made with ``--inbox`` reads
any job and acts on the inbox, recorded under its caller's name.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from toolbag.api import schemas
from toolbag.api.door import Door
from toolbag.api.errors import JOB_ID_HEADER, ApiError, error_response
from toolbag.api.keys import ApiKey
from toolbag.client import JobRequest
from toolbag.escalations import Inbox, InboxError
from toolbag.gateway.audit import AuditFilter, RedisAuditReader
from toolbag.jobs import JobNotFound, JobStatus
from toolbag.telemetry import metrics

__all__ = ["JobsApi"]

READ_BLOCK_MS = 500
_JOB_ID_CHARS = frozenset("0123456789abcdef")
MAX_GATEWAY_CALLS = 200  # gateway tool calls shown on one job
AUDIT_CLOCK_MARGIN_MS = 60_000

Handler = Callable[[Request, ApiKey], Awaitable[Response]]


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _as_request(body: schemas.JobCreate) -> JobRequest:
    return JobRequest(capability=body.capability, input=body.input, skill=body.skill, tier=body.tier,
                      idempotency_key=body.idempotency_key, deadline_s=body.deadline_s)


class JobsApi:
    """The native endpoints over one :class:`Door`."""

    def __init__(self, door: Door) -> None:
        self.door = door
        self.inbox = Inbox(door.config, door.client.store, door.client.router)

    def routes(self) -> list[Route]:
        wrap = self._endpoint
        return [
            Route("/jobs", wrap("jobs_create", self.create), methods=["POST"]),
            Route("/jobs:batch", wrap("jobs_batch", self.batch), methods=["POST"]),
            Route("/jobs/{job_id}", wrap("jobs_get", self.show), methods=["GET"]),
            Route("/jobs/{job_id}", wrap("jobs_cancel", self.cancel), methods=["DELETE"]),
            Route("/jobs/{job_id}/events", wrap("jobs_events", self.events), methods=["GET"]),
            Route("/escalations", wrap("escalations_list", self.escalations), methods=["GET"]),
            Route("/escalations/{job_id}", wrap("escalations_show", self.escalation), methods=["GET"]),
            Route("/escalations/{job_id}/resolve", wrap("escalations_resolve", self.resolve), methods=["POST"]),
            Route("/escalations/{job_id}/reject", wrap("escalations_reject", self.reject), methods=["POST"]),
            Route("/escalations/{job_id}/retry", wrap("escalations_retry", self.retry), methods=["POST"]),
        ]

    def _endpoint(self, name: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                key = await self.door.authenticate(request)
                response = await handler(request, key)
            except ApiError as err:
                response = error_response("native", err)
            metrics.API_REQUESTS.labels(name, "-", "-", str(response.status_code)).inc()
            return response

        return endpoint

    # -- jobs -------------------------------------------------------------------------------------------

    async def create(self, request: Request, key: ApiKey) -> Response:
        body = await self.door.body(request, schemas.JobCreate, 422)
        sub = await run_in_threadpool(self.door.submit, key, _as_request(body), invalid_status=422)
        status = await run_in_threadpool(sub.job.status)
        answer = schemas.JobCreated(job_id=sub.job.id, status=status, created=sub.job.created)
        return _json(answer, 201 if sub.job.created else 200, sub.job.id)

    async def batch(self, request: Request, key: ApiKey) -> Response:
        body = await self.door.body(request, schemas.JobBatch, 422)
        created = await run_in_threadpool(self._submit_batch, key, body)
        return _json(schemas.BatchCreated(jobs=created), 201)

    def _submit_batch(self, key: ApiKey, body: schemas.JobBatch) -> list[schemas.JobCreated]:
        """Every job's tier for the key, then :meth:`Door.submit_batch` (one refusal writes none)."""
        requests = []
        for index, item in enumerate(body.jobs):
            tier = self.door.tier_for(key, item.tier, f"jobs[{index}].tier")
            requests.append(JobRequest(
                capability=item.capability, input=item.input, skill=item.skill, tier=tier,
                idempotency_key=item.idempotency_key, deadline_s=item.deadline_s))
        submitted = self.door.submit_batch(key, requests)
        statuses = self.door.client.store.statuses([job.id for job in submitted])
        return [schemas.JobCreated(job_id=job.id, status=JobStatus(status or "expired"), created=job.created)
                for job, status in zip(submitted, statuses, strict=True)]

    def _view(self, key: ApiKey, job_id: str) -> schemas.JobView:
        """The job as the key may see it: its own caller's job (any job for an inbox key), else 404."""
        if not job_id or len(job_id) > 64 or not set(job_id) <= _JOB_ID_CHARS:
            raise ApiError(404, f"job_id: no job {job_id[:64]!r}", param="job_id")
        try:
            record, history = self.door.client.store.snapshot(job_id)
        except JobNotFound:
            raise ApiError(404, f"job_id: no job {job_id!r} (unknown id, or its record expired)",
                           param="job_id") from None
        if record.caller != key.caller and not key.inbox:
            raise ApiError(404, f"job_id: no job {job_id!r} (unknown id, or its record expired)", param="job_id")
        base: dict[str, Any] = {
            "job_id": job_id, "status": record.status, "capability": record.capability, "tier": record.tier,
            "caller": record.caller, "skill": record.skill or None, "attempts": history}
        base["gateway_tool_calls"] = self._gateway_calls(job_id, record.created_ms, record.finished_ms)
        if not record.status.terminal:
            return schemas.JobView(**base, model=record.model or None, provider=record.provider or None)
        result = self.door.client.result_of(record, history)
        calls = [schemas.ToolCallView(id=str(c.get("id", "")), name=str(c.get("name", "")),
                                      arguments=dict(c.get("arguments") or {})) for c in result.tool_calls]
        return schemas.JobView(**base, provider=result.provider, model=result.model, output=result.output,
                               error=result.error, usage=result.usage, cost_usd=result.cost_usd, tool_calls=calls)

    def _gateway_calls(self, job_id: str, created_ms: int, finished_ms: int) -> list[schemas.GatewayToolCall]:
        """The gateway's audited tool calls for the job: its decisions, each with the outcome of the call that
        followed (read from the job's time window of the audit stream, at most :data:`MAX_GATEWAY_CALLS`)."""
        store = self.door.client.store
        margin_ms = AUDIT_CLOCK_MARGIN_MS  # audit records carry their host's clock, the job Redis's
        window = AuditFilter(job_id=job_id, kinds=("tool",), since_ms=max(0, created_ms - margin_ms),
                             until_ms=finished_ms + margin_ms if finished_ms else 0)
        entries = RedisAuditReader(store.redis, store.keys).tail(MAX_GATEWAY_CALLS * 2, window)
        calls: dict[str, schemas.GatewayToolCall] = {}
        for _, entry in entries:
            event, decision_id = entry.get("event", ""), entry.get("id", "")
            if event == "decision":
                calls[decision_id] = schemas.GatewayToolCall(
                    tool=entry.get("tool", ""), decision=entry.get("decision", ""), grant=entry.get("grant", ""),
                    outcome="denied" if entry.get("decision") == "deny" else "",
                    step=int(entry.get("step") or 0), model=entry.get("model", ""),
                    ts_ms=int(entry.get("ts_ms") or 0))
            elif event == "call" and decision_id in calls:
                calls[decision_id].outcome = entry.get("outcome", "")
                calls[decision_id].duration_ms = float(entry.get("duration_ms") or 0)
        return list(calls.values())[:MAX_GATEWAY_CALLS]

    async def show(self, request: Request, key: ApiKey) -> Response:
        view = await run_in_threadpool(self._view, key, request.path_params["job_id"])
        return _json(view, 200, view.job_id)

    async def cancel(self, request: Request, key: ApiKey) -> Response:
        job_id = request.path_params["job_id"]

        def cancel() -> schemas.Cancelled:
            self._view(key, job_id)
            done = self.door.client.cancel(job_id)
            return schemas.Cancelled(job_id=job_id, cancelled=done, status=self.door.client.store.get(job_id).status)

        return _json(await run_in_threadpool(cancel), 200, job_id)

    async def events(self, request: Request, key: ApiKey) -> Response:
        """Server-sent events: ``text`` (a batch of an attempt's text), ``attempt_end`` (its outcome), and
        ``end`` (the job's status and output). A failed attempt's text is not part of the answer: the next
        attempt starts again from the beginning (``attempt_end`` says so)."""
        view = await run_in_threadpool(self._view, key, request.path_params["job_id"])
        tier = self.door.config.tiers[view.tier]
        return StreamingResponse(self._events(view.job_id, float(tier.max_deadline_s)),
                                 media_type="text/event-stream",
                                 headers={JOB_ID_HEADER: view.job_id, "cache-control": "no-cache"})

    async def _events(self, job_id: str, timeout_s: float) -> AsyncIterator[bytes]:
        feed = self.door.feed(job_id)
        deadline = time.monotonic() + timeout_s
        last_id = "0-0"
        while True:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                yield _sse("error", {"message": f"no end within {timeout_s:g} s; the job keeps running"})
                return
            answer = await feed.redis.xread({feed.deltas_key: last_id}, count=200,
                                            block=max(1, min(READ_BLOCK_MS, remaining_ms)))
            if not answer:
                if (await feed.status()).terminal and not await feed.redis.xread({feed.deltas_key: last_id},
                                                                                count=1):
                    break
                continue
            for entry_id, raw in answer[0][1]:
                last_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                fields = {_text(k): _text(v) for k, v in raw.items()}
                common = {"attempt": int(fields.get("attempt", "0")), "model": fields.get("model", ""),
                          "offset": int(fields.get("offset") or 0)}
                kind = fields.get("kind")
                if kind == "end":
                    yield _sse("attempt_end", {**common, "outcome": fields.get("outcome", ""),
                                               "reason": fields.get("reason", "")})
                elif kind == "failover":
                    yield _sse("failover", {**common, "continues": fields.get("continues") == "1"})
                elif kind == "tool":
                    yield _sse("tool_call", {**common, "index": int(fields.get("index") or 0),
                                             "id": fields.get("id", ""), "name": fields.get("name", ""),
                                             "arguments": fields.get("arguments", "")})
                else:
                    yield _sse("text", {**common, "text": fields.get("text", "")})
        result = await feed.result(max(0.001, deadline - time.monotonic()))
        yield _sse("end", {"job_id": job_id, "status": result.status.value, "model": result.model,
                           "output": result.output, "error": result.error, "usage": result.usage})

    # -- escalations ------------------------------------------------------------------------------------

    def _inbox_key(self, key: ApiKey) -> None:
        if not key.inbox:
            raise ApiError(403, "this key may not use the escalation inbox (create one with --inbox)")

    async def _inbox_call(self, key: ApiKey, call: Callable[[], Any]) -> Any:
        self._inbox_key(key)
        try:
            return await run_in_threadpool(call)
        except InboxError as err:
            message = str(err)
            if message.startswith("unknown model"):
                raise ApiError(422, f"model: {message}", param="model") from None
            status = 404 if message.startswith("no job") else 409
            raise ApiError(status, f"job_id: {message}", param="job_id") from None

    async def escalations(self, request: Request, key: ApiKey) -> Response:
        raw_limit = request.query_params.get("limit", "100")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
            raise ApiError(422, "limit: a whole number from 1 to 1000", param="limit")
        items = await self._inbox_call(key, lambda: self.inbox.list(int(raw_limit)))
        views = [schemas.EscalationView(**{**item.__dict__, "attempts": [], "input": None}) for item in items]
        return _json(schemas.EscalationList(escalations=views), 200)

    async def escalation(self, request: Request, key: ApiKey) -> Response:
        job_id = request.path_params["job_id"]
        item = await self._inbox_call(key, lambda: self.inbox.show(job_id))
        return _json(schemas.EscalationView(**item.__dict__), 200, job_id)

    async def resolve(self, request: Request, key: ApiKey) -> Response:
        self._inbox_key(key)
        job_id = request.path_params["job_id"]
        body = await self.door.body(request, schemas.Resolve, 422)
        await self._inbox_call(key, lambda: self.inbox.resolve(job_id, body.output, key.caller))
        return _json(schemas.Settled(job_id=job_id, action="resolve"), 200, job_id)

    async def reject(self, request: Request, key: ApiKey) -> Response:
        self._inbox_key(key)
        job_id = request.path_params["job_id"]
        body = await self.door.body(request, schemas.Reject, 422)
        await self._inbox_call(key, lambda: self.inbox.reject(job_id, body.reason, key.caller))
        return _json(schemas.Settled(job_id=job_id, action="reject"), 200, job_id)

    async def retry(self, request: Request, key: ApiKey) -> Response:
        self._inbox_key(key)
        job_id = request.path_params["job_id"]
        body = await self.door.body(request, schemas.Retry, 422)
        model = await self._inbox_call(key, lambda: self.inbox.retry(job_id, body.model, key.caller))
        return _json(schemas.Settled(job_id=job_id, action="retry", model=model), 200, job_id)


def _json(model: BaseModel, status: int, job_id: str | None = None) -> JSONResponse:
    headers = {JOB_ID_HEADER: job_id} if job_id else {}
    return JSONResponse(model.model_dump(mode="json"), status, headers=headers)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
