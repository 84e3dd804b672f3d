"""Refusals at the front door: the HTTP status, and the error body each SDK parses for it."""

from __future__ import annotations

import math
from typing import Any, Literal

from starlette.responses import JSONResponse

from toolbag.errors import ToolbagError

__all__ = ["JOB_ID_HEADER", "ApiError", "Dialect", "error_body", "error_response"]

JOB_ID_HEADER = "x-toolbag-job-id"

Dialect = Literal["openai", "anthropic", "native"]


class ApiError(ToolbagError):
    """A request the front door refuses: HTTP status, a one-line message naming the field, and for a 429 the
    seconds after which a retry may succeed."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.retry_after_s = retry_after_s


_OPENAI_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_error",
                 404: "invalid_request_error", 409: "invalid_request_error", 413: "invalid_request_error",
                 422: "invalid_request_error", 429: "rate_limit_exceeded", 500: "server_error",
                 502: "server_error", 504: "timeout"}
_OPENAI_CODES = {401: "invalid_api_key", 403: "tier_not_allowed", 404: "model_not_found",
                 429: "rate_limit_exceeded"}
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 409: "invalid_request_error", 413: "request_too_large",
                    422: "invalid_request_error", 429: "rate_limit_error", 500: "api_error", 502: "api_error",
                    504: "timeout_error"}


def error_body(dialect: Dialect, status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """The error body each SDK parses for ``status`` (the native job API uses the OpenAI shape)."""
    if dialect == "anthropic":
        return {"type": "error", "error": {"type": _ANTHROPIC_TYPES.get(status, "api_error"), "message": message}}
    return {"error": {"message": message, "type": _OPENAI_TYPES.get(status, "server_error"), "param": param,
                      "code": _OPENAI_CODES.get(status)}}


def error_response(dialect: Dialect, err: ApiError, job_id: str | None = None) -> JSONResponse:
    """``err`` as the SDK expects it. A 429 says when to retry (``retry-after``, whole seconds) and lets the
    SDKs retry; every other refusal tells them not to."""
    headers = {"x-should-retry": "true" if err.status == 429 else "false"}
    if err.retry_after_s is not None:
        headers["retry-after"] = str(max(1, math.ceil(err.retry_after_s)))
    if job_id is not None:
        headers[JOB_ID_HEADER] = job_id
    return JSONResponse(error_body(dialect, err.status, err.message, err.param), err.status, headers=headers)
