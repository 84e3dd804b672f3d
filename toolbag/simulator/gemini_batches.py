"""Gemini batch mode: ``models/{m}:batchGenerateContent`` (inline requests, or an uploaded JSONL file of
``{"key", "request"}`` lines: see :mod:`.gemini_files`), ``batches/{id}`` get / list / ``:cancel`` / delete.

Every answer is a long-running Operation whose ``metadata`` is the batch (the SDK reads ``metadata.state`` and
``metadata.output.inlinedResponses.inlinedResponses``); an ended batch also carries ``done`` and ``response``.
The inline responses keep the order of the requests: ``{"response": …, "metadata": …}`` for an answer (a
refusal included), ``{"error": {"code", "message"}, "metadata": …}`` for an error answer or for a request the
batch did not reach (``CANCELLED`` 499, ``DEADLINE_EXCEEDED`` 504). A file-fed batch writes the same entries,
each with its ``key``, one per line to ``metadata.output.responsesFile``.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .anthropic_batches import rfc3339
from .batches import BatchEndpoint, BatchItem, BatchStore, SimBatch, batch_settings, page_size
from .call import Call
from .gemini_files import GeminiFile, GeminiFiles
from .gemini_wire import GeminiWire, field
from .generate import new_id
from .request import RequestError
from .state import SimState
from .wire import HttpError, dumps

_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main."
_STATES = {None: "BATCH_STATE_RUNNING", "completed": "BATCH_STATE_SUCCEEDED", "expired": "BATCH_STATE_EXPIRED",
           "cancelled": "BATCH_STATE_CANCELLED"}
_UNREACHED = {"canceled": (499, "CANCELLED", "The request was cancelled with its batch."),
              "expired": (504, "DEADLINE_EXCEEDED", "The batch expired before the request was processed.")}


def _status(code: int, status: str, message: str) -> HttpError:
    return HttpError(code, {"error": {"code": code, "message": message, "status": status}})


class GeminiBatches(BatchEndpoint):
    """The batch routes of the Gemini Developer API (inline or file input)."""

    def __init__(self, state: SimState, store: BatchStore, files: GeminiFiles) -> None:
        super().__init__(state, store, GeminiWire())
        self.files = files

    async def create(self, request: Request, model: str) -> Response:
        """``POST /{ver}/models/{model}:batchGenerateContent`` with ``batch.inputConfig.requests``."""
        call, refused = self.begin(request)
        if refused is not None:
            return refused
        body, refused = await self.json_body(request, call)
        if refused is not None:
            return refused
        model = model.removeprefix("models/")
        call.entry["model"] = model
        try:
            items, display_name, source = self._items(body)
            settings = batch_settings(self.state, request.headers, model)
        except RequestError as exc:
            return self.invalid(call, str(exc))
        batch = self.new_batch("batches/" + new_id("").lower(), model, items, settings, display_name=display_name,
                               source=source)
        return self.reply(call, self._operation(batch, pending=True))

    async def get(self, request: Request, name: str) -> Response:
        """``GET /{ver}/batches/{id}``."""
        found = self.lookup(request, name)
        if isinstance(found, Response):
            return found
        call, batch = found
        return self.reply(call, self._operation(batch))

    async def cancel(self, request: Request, name: str) -> Response:
        """``POST /{ver}/batches/{id}:cancel``: an empty answer; the batch is ``CANCELLED`` from then on."""
        found = self.lookup(request, name)
        if isinstance(found, Response):
            return found
        call, batch = found
        now, ended = self.settle(batch)
        if ended:
            return self.fail(call, _status(400, "FAILED_PRECONDITION", f"{name} has already ended."))
        batch.cancel_s = now
        return self.reply(call, {})

    async def delete(self, request: Request, name: str) -> Response:
        """``DELETE /{ver}/batches/{id}``."""
        found = self.lookup(request, name)
        if isinstance(found, Response):
            return found
        call, batch = found
        del self.store.batches[name]
        return self.reply(call, {})

    async def list_batches(self, request: Request) -> Response:
        """``GET /{ver}/batches[?pageSize&pageToken]``: newest first; the page token is the last name given."""
        call, refused = self.begin(request)
        if refused is not None:
            return refused
        size = page_size(request.query_params.get("pageSize", "50"), 1000)
        if size is None:
            return self.fail(call, _status(400, "INVALID_ARGUMENT", "pageSize must be between 1 and 1000."))
        page = self.page(size, after=request.query_params.get("pageToken"))
        body: dict[str, Any] = {"operations": [self._operation(b) for b in page.batches]}
        if page.has_more:
            body["nextPageToken"] = page.last_id
        return self.reply(call, body)

    def not_found(self, batch_id: str, call: Call) -> HttpError:
        return _status(404, "NOT_FOUND", f"Requested entity was not found: {batch_id}.")

    # ------------------------------------------------------------------ shapes

    def _items(self, body: Any) -> tuple[list[BatchItem], str, str | None]:
        """The requests (inline, or the lines of an uploaded file), the display name, the input file's name."""
        batch = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(batch, dict):
            raise RequestError("* BatchGenerateContentRequest.batch: batch is not specified")
        config = field(batch, "inputConfig")
        if not isinstance(config, dict):
            raise RequestError("* GenerateContentBatch.input_config: input_config is not specified")
        name = field(batch, "displayName")
        display_name = name if isinstance(name, str) else ""
        file_name = field(config, "fileName")
        if file_name is not None:
            return self._file_items(str(file_name)), display_name, str(file_name)
        outer = field(config, "requests")
        requests = field(outer, "requests") if isinstance(outer, dict) else None
        if not isinstance(requests, list) or not requests:
            raise RequestError("* GenerateContentBatch.input_config.requests: requests is not specified")
        items: list[BatchItem] = []
        for i, entry in enumerate(requests):
            if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
                raise RequestError(f"Invalid value at 'batch.input_config.requests.requests[{i}].request'")
            metadata = entry.get("metadata")
            key = metadata.get("key") if isinstance(metadata, dict) else None
            items.append(BatchItem(str(key) if key is not None else str(i), entry["request"], metadata))
        return items, display_name, None

    def _file_items(self, file_name: str) -> list[BatchItem]:
        """The lines of an uploaded JSONL file: ``{"key": …, "request": {GenerateContentRequest}}``."""
        found = self.files.files.get(file_name)
        if found is None:
            raise RequestError(f"GenerateContentBatch.input_config.file_name: {file_name} does not exist")
        items: list[BatchItem] = []
        for number, raw in enumerate(bytes(found.content).decode("utf-8", errors="replace").splitlines(), 1):
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw)
            except ValueError:
                raise RequestError(f"{file_name} line {number}: not valid JSON") from None
            if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
                raise RequestError(f"{file_name} line {number}: needs a 'request' object")
            key = entry.get("key")
            items.append(BatchItem(str(key) if key is not None else str(number), entry["request"],
                                   {"key": key} if key is not None else None))
        if not items:
            raise RequestError(f"GenerateContentBatch.input_config.file_name: {file_name} holds no requests")
        return items

    def _operation(self, batch: SimBatch, *, pending: bool = False) -> dict[str, Any]:
        now, ended = (0.0, False) if pending else self.settle(batch)
        ending = batch.ending(now) if ended else None
        counts = batch.counts()
        answered_ok = sum(1 for i in batch.items if i.answer is not None and i.answer.status == 200)
        metadata: dict[str, Any] = {
            "@type": _TYPE + "GenerateContentBatch",
            "name": batch.id,
            "model": "models/" + batch.model,
            "displayName": batch.extra["display_name"],
            "state": "BATCH_STATE_PENDING" if pending else _STATES[ending],
            "createTime": rfc3339(batch.created_s),
            "updateTime": rfc3339(batch.ended_s(now) or batch.created_s) if ended else rfc3339(batch.created_s),
            "batchStats": {"requestCount": str(len(batch.items)),
                           "successfulRequestCount": str(answered_ok),
                           "failedRequestCount": str(sum(counts.values()) - answered_ok),
                           "pendingRequestCount": str(len(batch.items) - sum(counts.values()))},
        }
        operation: dict[str, Any] = {"name": batch.id, "metadata": metadata}
        if ended:
            metadata["endTime"] = rfc3339(batch.ended_s(now) or now)
            output: dict[str, Any]
            if batch.extra["source"] is not None:
                output = {"responsesFile": self._responses_file(batch)}
            else:
                output = {"inlinedResponses": {"inlinedResponses": [self._response(item)
                                                                    for item in batch.items]}}
            metadata["output"] = output
            operation["done"] = True
            operation["response"] = {"@type": _TYPE + "GenerateContentBatchOutput", **output}
        return operation

    def _responses_file(self, batch: SimBatch) -> str:
        """The output file of a file-fed batch (made once): one ``{"key", "response" | "error"}`` per line."""
        made: str | None = batch.extra.get("responses_file")
        if made is None:
            out = GeminiFile("files/" + new_id("").lower(), f"{batch.id} responses", "application/jsonl", done=True)
            for item in batch.items:
                line = self._response(item)
                key = line.pop("metadata", {}).get("key")
                out.content.extend(dumps({"key": key if key is not None else item.custom_id, **line}) + b"\n")
            self.files.keep(out)
            made = batch.extra["responses_file"] = out.name
        return made

    @staticmethod
    def _response(item: BatchItem) -> dict[str, Any]:
        answer = item.answer
        out: dict[str, Any] = {}
        if answer is not None and answer.status == 200:
            out["response"] = answer.body
        elif answer is not None and answer.status:
            error = dict((answer.body or {}).get("error") or {})
            out["error"] = {"code": error.get("code", answer.status), "message": error.get("message", "")}
        else:
            code, status, message = _UNREACHED["expired" if answer is not None and answer.outcome == "expired"
                                               else "canceled"]
            out["error"] = {"code": code, "message": f"{status}: {message}"}
        if item.metadata is not None:
            out["metadata"] = item.metadata
        return out
