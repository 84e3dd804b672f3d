"""OpenAI Batch API: ``/v1/files`` (multipart upload, retrieve, content, delete) and ``/v1/batches``.

The input file holds one request per line (``custom_id``, ``method``, ``url``, ``body``); a file that does not
validate makes the batch ``failed`` with one error per bad line. Once the batch ends, answered 200s go to the
output file and everything else (error answers, expired and cancelled requests) to the error file, in the
vendor's line shape; a file is only made when it has lines.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .batches import (
    BATCH_TTL_S,
    STORE_LIMIT,
    BatchEndpoint,
    BatchItem,
    BatchStore,
    SimBatch,
    batch_settings,
    page_size,
)
from .call import Call
from .generate import new_id
from .openai_wire import ChatWire, ResponsesWire
from .request import RequestError
from .state import SimState
from .wire import HttpError, Wire, dumps

MAX_REQUESTS = 50_000
FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
BINARY_CONTENT = (b"content-type", b"application/octet-stream")
_ITEM_ERRORS = {"expired": ("batch_expired", "This request could not be executed before the completion window "
                                             "expired."),
                "canceled": ("batch_cancelled", "This request was not executed because the batch was cancelled.")}


def _error(status: int, message: str, code: str | None = None, param: str | None = None) -> HttpError:
    return HttpError(status, {"error": {"message": message, "type": "invalid_request_error", "param": param,
                                        "code": code}})


@dataclass
class SimFile:
    """One uploaded or produced file."""

    id: str
    filename: str
    purpose: str
    content: bytes
    created_s: int = field(default_factory=lambda: int(time.time()))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": len(self.content), "created_at": self.created_s,
                "filename": self.filename, "purpose": self.purpose, "status": "processed",
                "expires_at": None, "status_details": None}


class OpenAIBatches(BatchEndpoint):
    """The Files and Batches routes (``/v1/batches`` answers Gemini too when it carries a Google key)."""

    def __init__(self, state: SimState, store: BatchStore) -> None:
        super().__init__(state, store, ChatWire())
        self.files: dict[str, SimFile] = {}
        self.item_wires: dict[str, Wire] = {"/v1/chat/completions": self.wire, "/v1/responses": ResponsesWire()}

    def routes(self) -> list[Route]:
        return [
            Route("/v1/files", self.upload, methods=["POST"]),
            Route("/v1/files/{file_id}/content", self.content, methods=["GET"]),
        ]

    # ------------------------------------------------------------------ files

    async def upload(self, request: Request) -> Response:
        """``POST /v1/files`` (multipart: ``purpose``, ``file``)."""
        call, refused = self.begin(request)
        if refused is not None:
            return refused
        try:
            form = await request.form()
        except Exception:  # noqa: BLE001 - any unparseable body is the client's 400
            return self.invalid(call, "The request body must be multipart/form-data.")
        try:
            purpose = form.get("purpose")
            upload = form.get("file")
            if not isinstance(purpose, str) or purpose not in FILE_PURPOSES:
                return self.fail(call, _error(400, f"'purpose': must be one of {', '.join(FILE_PURPOSES)}",
                                              "invalid_value", "purpose"))
            if not isinstance(upload, UploadFile):
                return self.fail(call, _error(400, "'file': a file is required", None, "file"))
            sim_file = SimFile(new_id("file-"), upload.filename or "upload.jsonl", purpose, await upload.read())
        finally:
            await form.close()
        self._keep(sim_file)
        return self.reply(call, sim_file.to_dict())

    async def file(self, request: Request, file_id: str) -> Response:
        """``GET /v1/files/{id}``."""
        call, refused = self.begin(request)
        if refused is not None:
            return refused
        found = self.files.get(file_id)
        if found is None:
            return self.fail(call, self._no_file(file_id))
        return self.reply(call, found.to_dict())

    async def delete_file(self, request: Request, file_id: str) -> Response:
        """``DELETE /v1/files/{id}``."""
        call, refused = self.begin(request)
        if refused is not None:
            return refused
        if self.files.pop(file_id, None) is None:
            return self.fail(call, self._no_file(file_id))
        return self.reply(call, {"id": file_id, "object": "file", "deleted": True})

    async def content(self, request: Request) -> Response:
        """``GET /v1/files/{id}/content``: the bytes."""
        call, refused = self.begin(request)
        if refused is not None:
            return refused
        found = self.files.get(request.path_params["file_id"])
        if found is None:
            return self.fail(call, self._no_file(request.path_params["file_id"]))
        return self.raw(call, found.content, BINARY_CONTENT)

    def _keep(self, sim_file: SimFile) -> None:
        """Hold a file (three per batch at most: input, output, errors; oldest dropped first)."""
        self.files[sim_file.id] = sim_file
        while len(self.files) > 3 * STORE_LIMIT:
            del self.files[next(iter(self.files))]

    @staticmethod
    def _no_file(file_id: str) -> HttpError:
        return _error(404, f"No such File object: {file_id}", None, "id")

    # ------------------------------------------------------------------ batches

    async def create(self, request: Request) -> Response:
        """``POST /v1/batches``: ``input_file_id``, ``endpoint``, ``completion_window``, ``metadata``."""
        call, refused = self.begin(request)
        if refused is not None:
            return refused
        body, refused = await self.json_body(request, call)
        if refused is not None:
            return refused
        if not isinstance(body, dict):
            return self.invalid(call, "We could not parse the JSON body of your request.")
        endpoint = body.get("endpoint")
        if endpoint not in self.item_wires:
            return self.fail(call, _error(400, f"Invalid value for 'endpoint': the simulator serves "
                                          f"{', '.join(self.item_wires)}.", "invalid_value", "endpoint"))
        if body.get("completion_window") != "24h":
            return self.fail(call, _error(400, "Invalid value for 'completion_window': only '24h' is supported.",
                                          "invalid_value", "completion_window"))
        input_file = self.files.get(str(body.get("input_file_id")))
        if input_file is None:
            return self.fail(call, _error(400, f"Invalid 'input_file_id': {body.get('input_file_id')!r} does not "
                                          "exist.", "invalid_value", "input_file_id"))
        metadata = body.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            return self.fail(call, _error(400, "Invalid type for 'metadata': expected an object.",
                                          "invalid_type", "metadata"))
        items, errors = self._items(input_file.content, endpoint)
        model = str(items[0].body.get("model", "")) if items and isinstance(items[0].body, dict) else ""
        try:
            settings = batch_settings(self.state, request.headers, model)
        except RequestError as exc:
            return self.invalid(call, str(exc))
        call.entry["model"] = model
        batch = self.new_batch(new_id("batch_"), model, items, settings, item_wire=self.item_wires[endpoint],
                               endpoint=endpoint, input_file_id=input_file.id, metadata=metadata, errors=errors)
        return self.reply(call, self._batch(batch, status="validating" if not errors else None))

    async def retrieve(self, request: Request, batch_id: str) -> Response:
        """``GET /v1/batches/{id}``."""
        found = self.lookup(request, batch_id)
        if isinstance(found, Response):
            return found
        call, batch = found
        return self.reply(call, self._batch(batch))

    async def cancel(self, request: Request, batch_id: str) -> Response:
        """``POST /v1/batches/{id}/cancel``: ``cancelling`` now, ``cancelled`` from the next retrieve."""
        found = self.lookup(request, batch_id)
        if isinstance(found, Response):
            return found
        call, batch = found
        now, ended = self.settle(batch)
        if ended or batch.extra["errors"]:
            return self.fail(call, _error(400, f"Cannot cancel a batch with status "
                                               f"'{self._batch(batch)['status']}'."))
        batch.cancel_s = now
        return self.reply(call, self._batch(batch, status="cancelling"))

    async def list_batches(self, request: Request) -> Response:
        """``GET /v1/batches[?after&limit]``: newest first."""
        call, refused = self.begin(request)
        if refused is not None:
            return refused
        size = page_size(request.query_params.get("limit", "20"), 100)
        if size is None:
            return self.fail(call, _error(400, "Invalid 'limit': must be between 1 and 100.", None, "limit"))
        page = self.page(size, after=request.query_params.get("after"))
        return self.reply(call, {"object": "list", "data": [self._batch(b) for b in page.batches],
                                 "first_id": page.first_id, "last_id": page.last_id, "has_more": page.has_more})

    def not_found(self, batch_id: str, call: Call) -> HttpError:
        return _error(404, f"No batch found with id '{batch_id}'.")

    # ------------------------------------------------------------------ shapes

    @staticmethod
    def _items(content: bytes, endpoint: str) -> tuple[list[BatchItem], list[dict[str, Any]]]:
        """The requests of an input file, and the validation errors (one per bad line, 1-based)."""
        items: list[BatchItem] = []
        errors: list[dict[str, Any]] = []
        seen: set[str] = set()

        def bad(line: int, code: str, message: str, param: str | None = None) -> None:
            errors.append({"code": code, "line": line, "message": message, "param": param})

        lines = [raw for raw in content.decode("utf-8", errors="replace").splitlines() if raw.strip()]
        if not lines:
            bad(1, "empty_file", "The input file is empty.")
        if len(lines) > MAX_REQUESTS:
            bad(MAX_REQUESTS + 1, "too_many_requests", f"A batch may hold at most {MAX_REQUESTS} requests.")
            return [], errors
        for number, raw in enumerate(lines, start=1):
            try:
                entry = json.loads(raw)
            except ValueError:
                bad(number, "invalid_json_line", "This line is not parseable as valid JSON.")
                continue
            if not isinstance(entry, dict):
                bad(number, "invalid_json_line", "This line is not a JSON object.")
                continue
            custom_id = entry.get("custom_id")
            if not isinstance(custom_id, str) or not custom_id:
                bad(number, "missing_required_parameter", "Missing required parameter: 'custom_id'.", "custom_id")
            elif custom_id in seen:
                bad(number, "duplicate_custom_id", f"The custom_id {custom_id!r} is not unique.", "custom_id")
            elif entry.get("method") != "POST":
                bad(number, "invalid_method", "Only the POST method is supported.", "method")
            elif entry.get("url") != endpoint:
                bad(number, "mismatched_url", f"The url must match the batch endpoint {endpoint}.", "url")
            elif not isinstance(entry.get("body"), dict):
                bad(number, "missing_required_parameter", "Missing required parameter: 'body'.", "body")
            else:
                seen.add(custom_id)
                items.append(BatchItem(custom_id, entry["body"]))
        return items, errors

    def _batch(self, batch: SimBatch, status: str | None = None) -> dict[str, Any]:
        created = int(batch.created_s)
        errors: list[dict[str, Any]] = batch.extra["errors"]
        out: dict[str, Any] = {
            "id": batch.id, "object": "batch", "endpoint": batch.extra["endpoint"], "model": batch.model or None,
            "input_file_id": batch.extra["input_file_id"], "completion_window": "24h", "created_at": created,
            "expires_at": created + int(BATCH_TTL_S), "metadata": batch.extra["metadata"],
            "errors": {"object": "list", "data": errors} if errors else None,
            "output_file_id": None, "error_file_id": None,
            "in_progress_at": None, "finalizing_at": None, "completed_at": None, "failed_at": None,
            "expired_at": None, "cancelling_at": None, "cancelled_at": None,
            "request_counts": {"total": len(batch.items), "completed": 0, "failed": 0}, "usage": None,
        }
        if errors:
            out.update(status="failed", failed_at=created, request_counts={"total": 0, "completed": 0, "failed": 0})
            return out
        if status is not None:  # the answer to create (validating) or to cancel (cancelling)
            out["status"] = status
            if status == "cancelling":
                out.update(in_progress_at=created, cancelling_at=int(batch.cancel_s or created))
            return out
        now, ended = self.settle(batch)
        out["in_progress_at"] = created
        if not ended:
            out["status"] = "in_progress"
            return out
        ending = batch.ending(now)
        ended_at = int(batch.ended_s(now) or now)
        if ending == "completed":
            out.update(status="completed", finalizing_at=ended_at, completed_at=ended_at)
        elif ending == "expired":
            out.update(status="expired", expired_at=ended_at)
        else:
            out.update(status="cancelled", cancelling_at=int(batch.cancel_s or ended_at), cancelled_at=ended_at)
        self._write_files(batch)
        ok = [i for i in batch.items if i.answer is not None and i.answer.status == 200]
        answered = [i.answer for i in batch.items if i.answer is not None and i.answer.status]
        out.update(output_file_id=batch.extra.get("output_file_id"), error_file_id=batch.extra.get("error_file_id"),
                   request_counts={"total": len(batch.items), "completed": len(ok),
                                   "failed": len(batch.items) - len(ok)})
        input_tokens = sum(a.input_tokens for a in answered)
        output_tokens = sum(a.output_tokens for a in answered)
        out["usage"] = {"input_tokens": input_tokens, "output_tokens": output_tokens,
                        "total_tokens": input_tokens + output_tokens,
                        "input_tokens_details": {"cached_tokens": 0},
                        "output_tokens_details": {"reasoning_tokens": 0}}
        return out

    def _write_files(self, batch: SimBatch) -> None:
        """Make the output and error files once (only those with lines)."""
        if "output_file_id" in batch.extra:
            return
        output: list[bytes] = []
        failed: list[bytes] = []
        for item in batch.items:
            answer = item.answer
            line: dict[str, Any] = {"id": new_id("batch_req_"), "custom_id": item.custom_id, "response": None,
                                    "error": None}
            if answer is not None and answer.status:
                line["response"] = {"status_code": answer.status, "request_id": new_id("req_"),
                                    "body": answer.body}
            else:
                code, message = _ITEM_ERRORS["expired" if answer is not None and answer.outcome == "expired"
                                             else "canceled"]
                line["error"] = {"code": code, "message": message}
            (output if answer is not None and answer.status == 200 else failed).append(dumps(line) + b"\n")
        for key, lines, name in (("output_file_id", output, "output"), ("error_file_id", failed, "error")):
            if lines:
                made = SimFile(new_id("file-"), f"{batch.id}_{name}.jsonl", "batch_output", b"".join(lines))
                self._keep(made)
                batch.extra[key] = made.id
            else:
                batch.extra[key] = None
