"""Gemini Files for batch mode: the resumable upload (``POST /upload/{ver}/files``), ``files/{id}`` metadata and
``files/{id}:download?alt=media``.

The upload starts with ``X-Goog-Upload-Command: start`` (answered with an absolute ``x-goog-upload-url``); the
bytes follow at that URL in one or more ``upload`` commands, the last ``upload, finalize`` (answered with
``x-goog-upload-status: final`` and the file). The upload URL carries its own id, as Google's do, so those
calls need no key.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .anthropic_batches import rfc3339
from .batches import STORE_LIMIT, BatchEndpoint, BatchStore
from .call import Call
from .faults import DEFAULT_RATELIMIT
from .gemini_wire import GeminiWire
from .gemini_wire import field as wire_field
from .generate import new_id
from .raw_response import JSON_CONTENT, RawResponse, raw_headers
from .state import SimState
from .wire import HttpError, dumps

BINARY_CONTENT = (b"content-type", b"application/octet-stream")


def _status(code: int, status: str, message: str) -> HttpError:
    return HttpError(code, {"error": {"code": code, "message": message, "status": status}})


@dataclass
class GeminiFile:
    """One uploaded or produced file (``name`` is ``files/…``)."""

    name: str
    display_name: str
    mime_type: str
    content: bytearray = field(default_factory=bytearray)
    done: bool = False
    created_s: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "displayName": self.display_name, "mimeType": self.mime_type,
                "sizeBytes": str(len(self.content)), "createTime": rfc3339(self.created_s),
                "state": "ACTIVE" if self.done else "PROCESSING", "source": "UPLOADED"}


class GeminiFiles(BatchEndpoint):
    """The Files routes batch mode uses."""

    def __init__(self, state: SimState, store: BatchStore) -> None:
        super().__init__(state, store, GeminiWire())
        self.files: dict[str, GeminiFile] = {}
        self._uploads: dict[str, GeminiFile] = {}  # upload id -> the file being uploaded

    def keep(self, made: GeminiFile) -> None:
        self.files[made.name] = made
        while len(self.files) > 2 * STORE_LIMIT:
            del self.files[next(iter(self.files))]

    async def upload(self, request: Request) -> Response:
        """``POST /upload/{ver}/files``: ``start``, then ``upload`` / ``upload, finalize`` at the upload URL."""
        upload_id = request.query_params.get("upload_id")
        command = request.headers.get("x-goog-upload-command", "")
        if upload_id is None:
            return await self._start(request, command)
        pending = self._uploads.get(upload_id)
        call = Call(self.state, self.wire, request)  # the upload id stands in for the key
        if pending is None:
            return self.fail(call, _status(404, "NOT_FOUND", "No upload session with this id."))
        offset = request.headers.get("x-goog-upload-offset", "0")
        if not offset.isdigit() or int(offset) != len(pending.content):
            return self.fail(call, _status(400, "INVALID_ARGUMENT", f"X-Goog-Upload-Offset {offset!r} is not "
                                           f"the uploaded size {len(pending.content)}"))
        pending.content.extend(await request.body())
        if "finalize" not in command:
            return self._upload_answer(call, b"", "active")
        pending.done = True
        del self._uploads[upload_id]
        self.keep(pending)
        return self._upload_answer(call, dumps({"file": pending.to_dict()}), "final")

    async def _start(self, request: Request, command: str) -> Response:
        call, refused = self.begin(request)
        if refused is not None:
            return refused
        if command.strip() != "start":
            return self.invalid(call, "X-Goog-Upload-Command must be 'start' to begin an upload")
        body, refused = await self.json_body(request, call)
        if refused is not None:
            return refused
        meta = wire_field(body, "file") if isinstance(body, dict) else None
        meta = meta if isinstance(meta, dict) else {}
        mime = request.headers.get("x-goog-upload-header-content-type") or wire_field(meta, "mimeType") or ""
        made = GeminiFile("files/" + new_id("").lower(), str(wire_field(meta, "displayName") or ""), str(mime))
        upload_id = new_id("up")
        self._uploads[upload_id] = made
        base = str(request.base_url).rstrip("/")
        version = request.path_params["version"]
        return self._upload_answer(call, dumps({}), "active",
                                   {"x-goog-upload-url": f"{base}/upload/{version}/files?upload_id={upload_id}"})

    def _upload_answer(self, call: Call, payload: bytes, status: str, extra: dict[str, str] | None = None,
                       ) -> Response:
        call.finish_at_once(200)
        headers = raw_headers(self.wire.headers("", call.rid, DEFAULT_RATELIMIT), JSON_CONTENT, payload,
                              {"x-goog-upload-status": status, **(extra or {})})
        return RawResponse(200, headers, payload)


    async def get(self, request: Request, name: str) -> Response:
        """``GET /{ver}/files/{id}`` and ``GET /{ver}/files/{id}:download?alt=media``."""
        call, refused = self.begin(request)
        if refused is not None:
            return refused
        download = name.endswith(":download")
        found = self.files.get(name.removesuffix(":download"))
        if found is None:
            return self.fail(call, _status(404, "NOT_FOUND", f"Requested entity was not found: {name}."))
        if download:
            return self.raw(call, bytes(found.content), BINARY_CONTENT)
        return self.reply(call, found.to_dict())
