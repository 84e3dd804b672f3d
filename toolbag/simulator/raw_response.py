"""Responses sent exactly as rendered: our own header list and body bytes, nothing added by Starlette."""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .wire import Headers

JSON_CONTENT = (b"content-type", b"application/json")
SSE_CONTENT = (b"content-type", b"text/event-stream; charset=utf-8")


def raw_headers(base: Headers, content_type: tuple[bytes, bytes], body: bytes | None,
                extra: dict[str, str] | None = None) -> Headers:
    """``base`` plus the content type, the length of ``body`` (when known) and ``extra``."""
    headers = [*base, content_type]
    if body is not None:
        headers.append((b"content-length", str(len(body)).encode()))
    if extra:
        headers.extend((k.encode(), v.encode()) for k, v in extra.items())
    return headers


class RawResponse(Response):
    """A fully rendered answer (the fast path)."""

    def __init__(self, status: int, headers: Headers, body: bytes) -> None:
        self.status_code = status
        self.raw_headers = headers
        self.body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body})
