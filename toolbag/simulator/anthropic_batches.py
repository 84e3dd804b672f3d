"""Anthropic Message Batches (``/v1/messages/batches``): create, retrieve, list, cancel, delete, JSONL results.

``results_url`` is an absolute URL back to this simulator (the SDK GETs it as given). Request counts stay in
``processing`` until the batch ends, as the vendor's do.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .anthropic_wire import AnthropicWire
from .batches import BATCH_TTL_S, BatchEndpoint, BatchItem, BatchStore, SimBatch, batch_settings, page_size
from .call import Call
from .generate import new_id
from .request import RequestError
from .state import SimState
from .wire import HttpError, dumps

MAX_REQUESTS = 100_000
_CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
JSONL_CONTENT = (b"content-type", b"application/binary")


def rfc3339(seconds: float) -> str:
    """An RFC 3339 UTC timestamp with microseconds."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AnthropicBatches(BatchEndpoint):
    """The Message Batches routes."""

    def __init__(self, state: SimState, store: BatchStore) -> None:
        super().__init__(state, store, AnthropicWire())

    def not_found(self, batch_id: str, call: Call) -> HttpError:
        return HttpError(404, {"type": "error", "error": {"type": "not_found_error",
                                                          "message": f"No message batch with id '{batch_id}'."},
                               "request_id": call.rid})

    def routes(self) -> list[Route]:
        return [
            Route("/v1/messages/batches", self.create, methods=["POST"]),
            Route("/v1/messages/batches", self.list_batches, methods=["GET"]),
            Route("/v1/messages/batches/{batch_id}", self.retrieve, methods=["GET"]),
            Route("/v1/messages/batches/{batch_id}", self.delete, methods=["DELETE"]),
            Route("/v1/messages/batches/{batch_id}/cancel", self.cancel, methods=["POST"]),
            Route("/v1/messages/batches/{batch_id}/results", self.results, methods=["GET"]),
        ]

    # ------------------------------------------------------------------ routes

    async def create(self, request: Request) -> Response:
        """``POST /v1/messages/batches``: ``{"requests": [{"custom_id", "params"}, …]}``."""
        call, refused = self.begin(request)
        if refused is not None:
            return refused
        body, refused = await self.json_body(request, call)
        if refused is not None:
            return refused
        try:
            items = self._items(body)
            model = str(items[0].body.get("model", "")) if isinstance(items[0].body, dict) else ""
            settings = batch_settings(self.state, request.headers, model)
        except RequestError as exc:
            return self.invalid(call, str(exc))
        call.entry["model"] = model
        batch = self.new_batch(new_id("msgbatch_"), model, items, settings)
        return self.reply(call, self._batch(batch, request, shown="in_progress"))

    async def retrieve(self, request: Request) -> Response:
        """``GET /v1/messages/batches/{id}``."""
        found = self.lookup(request, request.path_params["batch_id"])
        if isinstance(found, Response):
            return found
        call, batch = found
        return self.reply(call, self._batch(batch, request))

    async def list_batches(self, request: Request) -> Response:
        """``GET /v1/messages/batches[?limit&after_id&before_id]``: newest first."""
        call, refused = self.begin(request)
        if refused is not None:
            return refused
        size = page_size(request.query_params.get("limit", "20"), 1000)
        if size is None:
            return self.invalid(call, "limit: Input should be between 1 and 1000")
        page = self.page(size, after=request.query_params.get("after_id"),
                         before=request.query_params.get("before_id"))
        data = [self._batch(b, request) for b in page.batches]
        return self.reply(call, {"data": data, "has_more": page.has_more, "first_id": page.first_id,
                                 "last_id": page.last_id})

    async def cancel(self, request: Request) -> Response:
        """``POST /v1/messages/batches/{id}/cancel``: ``canceling`` now, ``ended`` from the next retrieve."""
        found = self.lookup(request, request.path_params["batch_id"])
        if isinstance(found, Response):
            return found
        call, batch = found
        now, ended = self.settle(batch)
        if ended:
            return self.reply(call, self._batch(batch, request))
        batch.cancel_s = now
        return self.reply(call, self._batch(batch, request, shown="canceling"))

    async def delete(self, request: Request) -> Response:
        """``DELETE /v1/messages/batches/{id}``: only once it has ended."""
        batch_id = request.path_params["batch_id"]
        found = self.lookup(request, batch_id)
        if isinstance(found, Response):
            return found
        call, batch = found
        if not self.settle(batch)[1]:
            return self.invalid(call, f"Message batch {batch_id} is still in progress; cancel it before deleting.")
        del self.store.batches[batch_id]
        return self.reply(call, {"id": batch_id, "type": "message_batch_deleted"})

    async def results(self, request: Request) -> Response:
        """``GET /v1/messages/batches/{id}/results``: one JSON object per line, one line per item."""
        found = self.lookup(request, request.path_params["batch_id"])
        if isinstance(found, Response):
            return found
        call, batch = found
        if not self.settle(batch)[1]:
            return self.invalid(call, f"Message batch {batch.id} has not ended; its results are not available yet.")
        lines = b"".join(dumps({"custom_id": item.custom_id, "result": self._result(item)}) + b"\n"
                         for item in batch.items)
        return self.raw(call, lines, JSONL_CONTENT)

    # ------------------------------------------------------------------ shapes

    @staticmethod
    def _items(body: Any) -> list[BatchItem]:
        if not isinstance(body, dict) or not isinstance(body.get("requests"), list) or not body["requests"]:
            raise RequestError("requests: Field required (a non-empty list)")
        requests: list[Any] = body["requests"]
        if len(requests) > MAX_REQUESTS:
            raise RequestError(f"requests: at most {MAX_REQUESTS} requests per batch")
        items: list[BatchItem] = []
        seen: set[str] = set()
        for i, entry in enumerate(requests):
            if not isinstance(entry, dict):
                raise RequestError(f"requests.{i}: Input should be an object")
            custom_id = entry.get("custom_id")
            if not isinstance(custom_id, str) or _CUSTOM_ID.fullmatch(custom_id) is None:
                raise RequestError(f"requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
            if custom_id in seen:
                raise RequestError(f"requests.{i}.custom_id: Duplicate custom_id {custom_id!r}")
            seen.add(custom_id)
            params = entry.get("params")
            if not isinstance(params, dict):
                raise RequestError(f"requests.{i}.params: Field required")
            if params.get("stream"):
                raise RequestError(f"requests.{i}.params.stream: streaming is not supported in a batch")
            items.append(BatchItem(custom_id, params))
        return items

    def _batch(self, batch: SimBatch, request: Request, *, shown: str | None = None) -> dict[str, Any]:
        """The MessageBatch; ``shown`` is the status of a create or cancel answer (the vendor's: never ended)."""
        now, ended = (0.0, False) if shown is not None else self.settle(batch)
        counts = batch.counts()
        processing = len(batch.items) - sum(counts.values())
        ended_s = batch.ended_s(now) if ended else None
        cancel_s = batch.cancel_s if batch.cancel_s is not None else (
            ended_s if batch.ending(now) == "cancelled" else None)
        base = str(request.base_url).rstrip("/")
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": "ended" if ended else (shown or "in_progress"),
            "request_counts": {"processing": processing, "succeeded": counts["succeeded"],
                               "errored": counts["errored"], "canceled": counts["canceled"],
                               "expired": counts["expired"]},
            "created_at": rfc3339(batch.created_s),
            "expires_at": rfc3339(batch.created_s + BATCH_TTL_S),
            "ended_at": rfc3339(ended_s) if ended_s is not None else None,
            "cancel_initiated_at": rfc3339(cancel_s) if cancel_s is not None else None,
            "archived_at": None,
            "results_url": f"{base}/v1/messages/batches/{batch.id}/results" if ended else None,
        }

    @staticmethod
    def _result(item: BatchItem) -> dict[str, Any]:
        answer = item.answer
        if answer is None or answer.outcome in ("canceled", "expired"):
            return {"type": answer.outcome if answer is not None else "canceled"}
        if answer.outcome == "errored":
            return {"type": "errored", "error": answer.body}
        message = dict(answer.body or {})
        message["usage"] = {**message.get("usage", {}), "service_tier": "batch"}
        return {"type": "succeeded", "message": message}
