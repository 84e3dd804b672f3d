"""The routes of the three vendors' batch APIs over one :class:`~.batches.BatchStore`.

``/v1/batches…`` is both OpenAI's Batch API and Gemini's ``v1`` batches: a request carrying Google's key
(``x-goog-api-key`` or ``?key=``) goes to Gemini, any other to OpenAI.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .anthropic_batches import AnthropicBatches
from .batches import BatchStore
from .gemini_batches import GeminiBatches
from .gemini_files import GeminiFiles
from .openai_batches import OpenAIBatches
from .state import SimState
from .wire import HttpError

GEMINI_VERSIONS = ("v1", "v1beta")


class BatchRoutes:
    """Anthropic Message Batches, OpenAI Files + Batches, Gemini inline batches."""

    def __init__(self, state: SimState) -> None:
        self.store = BatchStore()
        self.anthropic = AnthropicBatches(state, self.store)
        self.openai = OpenAIBatches(state, self.store)
        self.gemini_files = GeminiFiles(state, self.store)
        self.gemini = GeminiBatches(state, self.store, self.gemini_files)

    def routes(self) -> list[Route]:
        return [
            *self.anthropic.routes(),
            *self.openai.routes(),
            Route("/{version}/batches", self.collection, methods=["GET", "POST"]),
            Route("/{version}/batches/{name}", self.member, methods=["GET", "POST", "DELETE"]),
            Route("/{version}/batches/{name}/cancel", self.openai_cancel, methods=["POST"]),
            Route("/upload/{version}/files", self.gemini_upload, methods=["POST"]),
            Route("/{version}/files/{name}", self.file_member, methods=["GET", "DELETE"]),
        ]

    @staticmethod
    def _google(request: Request) -> bool:
        return bool(request.headers.get("x-goog-api-key") or request.query_params.get("key"))

    def _openai_path(self, request: Request) -> bool:
        return request.path_params["version"] == "v1" and not self._google(request)

    async def collection(self, request: Request) -> Response:
        """``GET|POST /v1/batches`` (OpenAI list/create) and ``GET /{v1,v1beta}/batches`` (Gemini list)."""
        if self._openai_path(request):
            if request.method == "POST":
                return await self.openai.create(request)
            return await self.openai.list_batches(request)
        if request.path_params["version"] in GEMINI_VERSIONS and request.method == "GET":
            return await self.gemini.list_batches(request)
        return self._unknown(request)

    async def member(self, request: Request) -> Response:
        """``GET /v1/batches/{id}`` (OpenAI); ``GET|DELETE /{ver}/batches/{id}``, ``POST …/{id}:cancel`` (Gemini)."""
        name: str = request.path_params["name"]
        if self._openai_path(request):
            if request.method == "GET":
                return await self.openai.retrieve(request, name)
            return self._unknown(request)
        if request.path_params["version"] not in GEMINI_VERSIONS:
            return self._unknown(request)
        if request.method == "POST" and name.endswith(":cancel"):
            return await self.gemini.cancel(request, "batches/" + name.removesuffix(":cancel"))
        if request.method == "GET":
            return await self.gemini.get(request, "batches/" + name)
        if request.method == "DELETE":
            return await self.gemini.delete(request, "batches/" + name)
        return self._unknown(request)

    async def gemini_upload(self, request: Request) -> Response:
        """``POST /upload/{v1,v1beta}/files`` (Gemini's resumable upload)."""
        if request.path_params["version"] not in GEMINI_VERSIONS:
            return self._unknown(request)
        return await self.gemini_files.upload(request)

    async def file_member(self, request: Request) -> Response:
        """``GET|DELETE /v1/files/{id}`` (OpenAI) and ``GET /{ver}/files/{id}[:download]`` (Gemini)."""
        name: str = request.path_params["name"]
        if self._openai_path(request):
            if request.method == "GET":
                return await self.openai.file(request, name)
            return await self.openai.delete_file(request, name)
        if request.path_params["version"] in GEMINI_VERSIONS and request.method == "GET":
            return await self.gemini_files.get(request, "files/" + name)
        return self._unknown(request)

    async def openai_cancel(self, request: Request) -> Response:
        """``POST /v1/batches/{id}/cancel``."""
        if not self._openai_path(request):
            return self._unknown(request)
        return await self.openai.cancel(request, request.path_params["name"])

    def _unknown(self, request: Request) -> Response:
        endpoint = self.gemini if self._google(request) else self.openai
        call, _ = endpoint.begin(request)
        message = f"Unknown request path: {request.method} {request.url.path}"
        if endpoint is self.gemini:
            return endpoint.fail(call, _not_found(message))
        return endpoint.fail(call, _openai_not_found(message))


def _not_found(message: str) -> HttpError:
    return HttpError(404, {"error": {"code": 404, "message": message, "status": "NOT_FOUND"}})


def _openai_not_found(message: str) -> HttpError:
    return HttpError(404, {"error": {"message": message, "type": "invalid_request_error", "param": None,
                                     "code": "unknown_url"}})
