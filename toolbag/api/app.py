"""The HTTP front door's ASGI app: the compatible endpoints, the native job API, ``/openapi.json``, ``/metrics``.

It holds no state of its own: every request submits or reads a job through :class:`~toolbag.client.Client`
(Redis is the truth), a streamed answer is relayed from the job's delta stream, and keys are looked up in Redis
on every request. Any number of replicas can serve one fleet.

The app is a list of route groups and mounted sub-apps: another part (a console, say) adds its own with
``create_app(client, mounts=[Mount("/console", app=...)])``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from toolbag.api.compat import Compat
from toolbag.api.door import TIER_HEADER, Door
from toolbag.api.errors import JOB_ID_HEADER, ApiError, Dialect, error_body, error_response
from toolbag.api.jobs import JobsApi
from toolbag.api.openapi import openapi_document
from toolbag.api.stream import Done, Failed, Text, relay
from toolbag.client import Client
from toolbag.console.app import console_app
from toolbag.store.connection import UNAVAILABLE_ERRORS, RedisUnavailable
from toolbag.telemetry import metrics

__all__ = ["JOB_ID_HEADER", "TIER_HEADER", "Done", "Failed", "Text", "create_app", "relay"]

log = logging.getLogger("toolbag.api")


def create_app(client: Client | None = None, *, mounts: Sequence[BaseRoute] = ()) -> Starlette:
    """The ASGI app over ``client`` (default: ``Client()`` from the environment), plus ``mounts``."""
    door = Door(client or Client())
    document = openapi_document()

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.serving_registry()), media_type=CONTENT_TYPE_LATEST)

    async def crashed(request: Request, exc: Exception) -> Response:
        dialect: Dialect = "anthropic" if request.url.path == "/v1/messages" else "openai"
        if isinstance(exc, (RedisUnavailable, *UNAVAILABLE_ERRORS)):  # retryable: the SDKs retry a 503
            log.warning("request refused: redis is unavailable (%s)", type(exc).__name__)
            return JSONResponse(error_body(dialect, 503, "the fleet's store is unavailable; retry"), 503,
                                headers={"x-should-retry": "true", "retry-after": "1"})
        log.error("request failed: %s", type(exc).__name__, exc_info=exc)
        return error_response(dialect, ApiError(500, f"internal error ({type(exc).__name__})"))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await door.aredis.aclose()

    routes: list[BaseRoute] = [
        *Compat(door).routes(),
        *JobsApi(door).routes(),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
        Mount("/console", app=console_app(door.client)),
        *mounts,
    ]
    return Starlette(routes=routes, exception_handlers={Exception: crashed}, lifespan=lifespan)
