"""The one place a vendor exception becomes an :class:`~toolbag.providers.base.AttemptFailure`.

Every adapter funnels what its SDK call or stream raised through :func:`classify`: SDK exceptions, raw
``httpx2`` transport errors (the Gemini SDK does not wrap them; streams surface them mid-iteration) and
malformed stream chunks. (A refusal or block inside an HTTP 200 answer is not an exception: see
:mod:`toolbag.providers.stop_reasons`.)::

    BaseException
      ├── AttemptFailure                        → unchanged
      ├── httpx2.TimeoutException               → timeout        (connect, read = first token / stall, pool)
      ├── httpx2.TransportError                 → network        (reset, refused, peer closed mid-body)
      ├── anthropic / openai APITimeoutError    → timeout
      ├── anthropic / openai APIConnectionError → network (or timeout when caused by one)
      ├── anthropic / openai APIStatusError     → by status, error type / code and message (see outcome_kind_for)
      ├── openai APIError (mid-stream chunk)    → by error type / code
      ├── google.genai errors.APIError          → by code, status and google.rpc details
      ├── JSON / unknown-response errors        → server_error  (a chunk that is not JSON)
      └── anything else                         → server_error  (never escapes an adapter)

A reason always carries the vendor's own words (error type, code and message), whole: the adapter removes
secrets from it before clipping it (:func:`toolbag.providers.reasons.redact_failure`). A context-length
reason starts with a :class:`~toolbag.providers.reasons.ContextReport` note of the numbers the vendor gave.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import httpx2

from toolbag.providers.base import AttemptFailure, OutcomeKind
from toolbag.providers.headers import parse_retry_after, ratelimit_headers
from toolbag.providers.reasons import ContextReport

if TYPE_CHECKING:
    import anthropic
    import openai
    from google.genai import errors as genai_errors

__all__ = ["classify", "context_report"]

# Substrings (lower-cased) of vendor error types, codes and messages.
_QUOTA_MARKERS = (
    "insufficient_quota",
    "billing",
    "credit balance",
    "spend_limit",
    "spend limit",
    "spending cap",
    "exceeded your current quota",
    "prepayment credits",
    "payment required",
)
_CONTEXT_MARKERS = (
    "prompt is too long",
    "context_length_exceeded",
    "context length",
    "context window",
    "context_window",
    "maximum number of tokens",
    "too many tokens",
    "input token count",
    "request_too_large",
    "prompt too long",
)
_AUTH_MARKERS = ("api_key_invalid", "api key not valid", "invalid api key", "invalid x-api-key")

# The numbers in a context-length message, as each vendor words them (lower-cased; the first match wins).
# Every quantifier is bounded and the scan is capped at _CONTEXT_SCAN_CHARS characters.
_CONTEXT_SCAN_CHARS = 2000
_TOKENS = r"(\d[\d,]{0,15})"
_CONTEXT_BOTH = (
    re.compile(rf"{_TOKENS} tokens > {_TOKENS} maximum"),  # anthropic: "prompt is too long: N tokens > L maximum"
    re.compile(rf"input token count \({_TOKENS}\) exceeds the maximum number of tokens allowed \({_TOKENS}\)"),
)
_CONTEXT_SUM = re.compile(rf"context limit: {_TOKENS} \+ {_TOKENS} > {_TOKENS}")  # anthropic: input + max_tokens > L
_CONTEXT_LIMIT = (
    re.compile(rf"maximum context length is {_TOKENS} tokens"),  # openai and openai-compatible servers
    re.compile(rf"maximum number of tokens allowed \(?{_TOKENS}"),  # gemini
)
_CONTEXT_REQUESTED = re.compile(rf"(?:you requested|resulted in) {_TOKENS} tokens")  # openai

# Error ``type`` values (Anthropic, OpenAI and compatible servers) carried by errors without a useful HTTP
# status, e.g. an error event inside a 200 stream.
_TYPE_KINDS: dict[str, OutcomeKind] = {
    "overloaded_error": OutcomeKind.OVERLOADED,
    "overloaded": OutcomeKind.OVERLOADED,
    "service_unavailable": OutcomeKind.OVERLOADED,
    "service_unavailable_error": OutcomeKind.OVERLOADED,
    "unavailable": OutcomeKind.OVERLOADED,
    "api_error": OutcomeKind.SERVER_ERROR,
    "server_error": OutcomeKind.SERVER_ERROR,
    "internal_error": OutcomeKind.SERVER_ERROR,
    "internal": OutcomeKind.SERVER_ERROR,
    "timeout_error": OutcomeKind.SERVER_ERROR,
    "deadline_exceeded": OutcomeKind.SERVER_ERROR,
    "rate_limit_error": OutcomeKind.RATE_LIMITED,
    "rate_limit_exceeded": OutcomeKind.RATE_LIMITED,
    "requests": OutcomeKind.RATE_LIMITED,
    "tokens": OutcomeKind.RATE_LIMITED,
    "resource_exhausted": OutcomeKind.RATE_LIMITED,
    "insufficient_quota": OutcomeKind.QUOTA_EXHAUSTED,
    "billing_error": OutcomeKind.QUOTA_EXHAUSTED,
    "authentication_error": OutcomeKind.AUTH,
    "permission_error": OutcomeKind.AUTH,
    "invalid_api_key": OutcomeKind.AUTH,
    "unauthenticated": OutcomeKind.AUTH,
    "permission_denied": OutcomeKind.AUTH,
    "invalid_request_error": OutcomeKind.BAD_REQUEST,
    "invalid_argument": OutcomeKind.BAD_REQUEST,
    "not_found_error": OutcomeKind.BAD_REQUEST,
}


# --------------------------------------------------------------------------------------------- helpers


def _parse_duration_s(value: Any) -> float | None:
    """A protobuf JSON duration (``"7s"``, ``"1.5s"``) or a ``{"seconds", "nanos"}`` mapping, in seconds."""
    if isinstance(value, str) and value.endswith("s"):
        try:
            return max(0.0, float(value[:-1]))
        except ValueError:
            return None
    if isinstance(value, Mapping):
        try:
            return max(0.0, float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9)
        except (TypeError, ValueError):
            return None
    return None


def _text_of(*parts: object) -> str:
    return " ".join(str(part) for part in parts if part).lower()


def _has(text: str, markers: tuple[str, ...]) -> bool:
    return any(marker in text for marker in markers)


def outcome_kind_for(status: int | None, error_type: str | None, code: str | None, message: str) -> OutcomeKind:
    """Outcome kind for an Anthropic / OpenAI(-compatible) error from its status, type, code and message."""
    text = _text_of(error_type, code, message)
    if status is None or status < 400:  # an error event inside a successful stream: only the body speaks
        for key in (code, error_type):
            if key and key.lower() in _TYPE_KINDS:
                kind = _TYPE_KINDS[key.lower()]
                if kind is OutcomeKind.RATE_LIMITED and _has(text, _QUOTA_MARKERS):
                    return OutcomeKind.QUOTA_EXHAUSTED
                return kind
        if _has(text, _QUOTA_MARKERS):
            return OutcomeKind.QUOTA_EXHAUSTED
        if _has(text, _CONTEXT_MARKERS):
            return OutcomeKind.CONTEXT_TOO_LONG
        return OutcomeKind.SERVER_ERROR
    if status == 401:
        return OutcomeKind.AUTH
    if status == 402:
        return OutcomeKind.QUOTA_EXHAUSTED
    if status == 403:
        return OutcomeKind.QUOTA_EXHAUSTED if _has(text, _QUOTA_MARKERS) else OutcomeKind.AUTH
    if status == 429:
        return OutcomeKind.QUOTA_EXHAUSTED if _has(text, _QUOTA_MARKERS) else OutcomeKind.RATE_LIMITED
    if status == 408:
        return OutcomeKind.TIMEOUT
    if status == 413 or (status < 500 and _has(text, _CONTEXT_MARKERS)):
        return OutcomeKind.CONTEXT_TOO_LONG
    if status < 500 and _has(text, _QUOTA_MARKERS):
        return OutcomeKind.QUOTA_EXHAUSTED  # Anthropic's 400 "credit balance is too low"
    if status < 500 and _has(text, _AUTH_MARKERS):
        return OutcomeKind.AUTH
    if status in (503, 529):
        return OutcomeKind.OVERLOADED
    if status >= 500:
        return OutcomeKind.OVERLOADED if _has(text, ("overloaded",)) else OutcomeKind.SERVER_ERROR
    return OutcomeKind.BAD_REQUEST


def _tokens(digits: str) -> int:
    return int(digits.replace(",", ""))


def context_report(message: str) -> ContextReport:
    """The request size and the limit a vendor's context-length message states (either may be missing)."""
    text = message[:_CONTEXT_SCAN_CHARS].lower()
    for pattern in _CONTEXT_BOTH:
        if found := pattern.search(text):
            return ContextReport.of(_tokens(found[1]), _tokens(found[2]))
    if found := _CONTEXT_SUM.search(text):
        return ContextReport.of(_tokens(found[1]) + _tokens(found[2]), _tokens(found[3]))
    limit = next((_tokens(found[1]) for p in _CONTEXT_LIMIT if (found := p.search(text))), None)
    requested = _tokens(found[1]) if (found := _CONTEXT_REQUESTED.search(text)) else None
    return ContextReport.of(requested, limit)


def _headers_of(response: Any) -> Mapping[str, str]:
    headers = getattr(response, "headers", None)
    return headers if isinstance(headers, Mapping) else {}


# ----------------------------------------------------------------------------------- SDK exceptions


def _sdk_types(module: str, *names: str) -> tuple[type[BaseException], ...]:
    """Exception classes of an SDK this process has already imported; none otherwise. An exception of an
    SDK's type cannot exist before that SDK is imported, so a worker never loads the other vendors' SDKs
    (the anthropic SDK alone takes over a second to import) just to rule them out."""
    loaded = sys.modules.get(module)
    return tuple(getattr(loaded, name) for name in names) if loaded is not None else ()


def _from_anthropic_status(exc: anthropic.APIStatusError) -> AttemptFailure:
    error_type = exc.type if isinstance(exc.type, str) else None
    message = exc.api_message if isinstance(exc.api_message, str) else str(exc.message)
    code = exc.error_code if isinstance(exc.error_code, str) else None
    status = exc.status_code
    kind = outcome_kind_for(status if status >= 400 else None, error_type, code, message)
    if code in ("enforced_spend_limit_reached", "contract_spend_limit_reached"):
        kind = OutcomeKind.QUOTA_EXHAUSTED
    headers = _headers_of(exc.response)
    where = f"HTTP {status}" if status >= 400 else "mid-stream error event"
    label = ":".join(part for part in (error_type, code) if part) or "error"
    return AttemptFailure(
        kind,
        f"anthropic {where} {label}: {message}",
        retry_after_s=parse_retry_after(headers) if kind is OutcomeKind.RATE_LIMITED else None,
        status_code=status if status >= 400 else None,
        request_id=exc.request_id,
        ratelimit_headers=ratelimit_headers(headers),
    )


def _openai_error_fields(body: object, fallback_message: str) -> tuple[str | None, str | None, str]:
    """(type, code, message) from an OpenAI-style error body (inner object, or wrapped in ``error``)."""
    inner: Any = body
    if isinstance(inner, Mapping) and isinstance(inner.get("error"), Mapping):
        inner = inner["error"]
    if not isinstance(inner, Mapping):
        return None, None, fallback_message
    error_type = inner.get("type")
    code = inner.get("code")
    message = inner.get("message")
    return (
        str(error_type) if error_type else None,
        str(code) if code is not None else None,
        str(message) if message else fallback_message,
    )


def _from_openai_error(exc: openai.APIError, vendor: str) -> AttemptFailure:
    error_type, code, message = _openai_error_fields(exc.body, str(exc.message))
    has_status = isinstance(exc, _sdk_types("openai", "APIStatusError"))
    status = cast("openai.APIStatusError", exc).status_code if has_status else None
    kind = outcome_kind_for(status, error_type, code, message)
    response = getattr(exc, "response", None)
    headers = _headers_of(response)
    where = f"HTTP {status}" if status is not None else "mid-stream error"
    label = ":".join(part for part in (error_type, code) if part) or "error"
    return AttemptFailure(
        kind,
        f"{vendor} {where} {label}: {message}",
        retry_after_s=parse_retry_after(headers) if kind is OutcomeKind.RATE_LIMITED else None,
        status_code=status,
        request_id=getattr(exc, "request_id", None),
        ratelimit_headers=ratelimit_headers(headers),
    )


def _gemini_details(exc: genai_errors.APIError) -> list[Mapping[str, Any]]:
    body: Any = exc.details
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        body = body["error"]
    details = body.get("details") if isinstance(body, Mapping) else None
    return [item for item in details if isinstance(item, Mapping)] if isinstance(details, list) else []


def _from_gemini_error(exc: genai_errors.APIError) -> AttemptFailure:
    code = exc.code if isinstance(exc.code, int) else None
    status = str(exc.status or "")
    message = str(exc.message or "")
    details = _gemini_details(exc)
    retry_after_s: float | None = None
    quota_violations: list[Mapping[str, Any]] = []
    reasons: list[str] = []
    for item in details:
        type_url = str(item.get("@type", ""))
        if type_url.endswith("google.rpc.RetryInfo"):
            retry_after_s = _parse_duration_s(item.get("retryDelay"))
        elif type_url.endswith("google.rpc.QuotaFailure"):
            violations = item.get("violations")
            if isinstance(violations, list):
                quota_violations.extend(v for v in violations if isinstance(v, Mapping))
        elif type_url.endswith("google.rpc.ErrorInfo") and item.get("reason"):
            reasons.append(str(item["reason"]))
    text = _text_of(status, message, *reasons)
    headers = _headers_of(getattr(exc, "response", None))

    kind: OutcomeKind
    if code == 429 or status == "RESOURCE_EXHAUSTED":
        # A rate limit says when to come back (RetryInfo). A quota failure without a retry hint, a per-day
        # quota, or a billing / prepayment problem will not clear by waiting seconds.
        per_day = any(
            "perday" in _text_of(v.get("quotaId"), v.get("quotaMetric")).replace("_", "").replace("-", "")
            for v in quota_violations
        )
        billing = _has(text, ("billing", "prepayment", "spending cap", "spend limit", "credit"))
        if billing or per_day or (quota_violations and retry_after_s is None):
            kind = OutcomeKind.QUOTA_EXHAUSTED
        else:
            kind = OutcomeKind.RATE_LIMITED
        if retry_after_s is None and kind is OutcomeKind.RATE_LIMITED:
            retry_after_s = parse_retry_after(headers)
    elif code in (401, 403) or status in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        kind = OutcomeKind.AUTH
    elif _has(text, _AUTH_MARKERS):
        kind = OutcomeKind.AUTH  # Gemini answers a bad key with 400 INVALID_ARGUMENT / API_KEY_INVALID
    elif code == 503 or status == "UNAVAILABLE":
        kind = OutcomeKind.OVERLOADED
    elif code == 408:
        kind = OutcomeKind.TIMEOUT
    elif code is not None and code >= 500:
        kind = OutcomeKind.SERVER_ERROR
    elif code is not None and 400 <= code < 500:
        if code == 413 or _has(text, _CONTEXT_MARKERS):
            kind = OutcomeKind.CONTEXT_TOO_LONG
        elif _has(text, ("billing", "prepayment")):
            kind = OutcomeKind.QUOTA_EXHAUSTED
        else:
            kind = OutcomeKind.BAD_REQUEST
    else:
        kind = OutcomeKind.SERVER_ERROR  # e.g. a non-200 success status, which the SDK refuses
    label = " ".join(part for part in (status, *reasons) if part) or "error"
    request_id = headers.get("x-request-id") or headers.get("x-goog-request-id")
    return AttemptFailure(
        kind,
        f"gemini HTTP {code} {label}: {message}",
        retry_after_s=retry_after_s if kind is OutcomeKind.RATE_LIMITED else None,
        status_code=code,
        request_id=request_id,
    )


def _from_transport(exc: BaseException, vendor: str) -> AttemptFailure | None:
    """Timeouts and connection failures, whether raw ``httpx2`` or wrapped by an SDK."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 8:
        chain.append(current)
        current = current.__cause__ or current.__context__
    detail = next((f"{type(e).__name__}: {e}" for e in chain if str(e)), type(exc).__name__)
    timeouts: tuple[type[BaseException], ...] = (
        httpx2.TimeoutException, *_sdk_types("anthropic", "APITimeoutError"), *_sdk_types("openai", "APITimeoutError")
    )
    if any(isinstance(e, timeouts) for e in chain):
        return AttemptFailure(OutcomeKind.TIMEOUT, f"{vendor} timed out ({detail})")
    unreachable: tuple[type[BaseException], ...] = (
        httpx2.TransportError, *_sdk_types("anthropic", "APIConnectionError"),
        *_sdk_types("openai", "APIConnectionError"),
    )
    if any(isinstance(e, unreachable) for e in chain):
        return AttemptFailure(OutcomeKind.NETWORK, f"{vendor} connection failed ({detail})")
    return None


def classify(
    exc: BaseException,
    *,
    vendor: str,
    partial_text: str = "",
    latency_s: float = 0.0,
) -> AttemptFailure:
    """Map anything an SDK call or stream raised to an :class:`AttemptFailure` with the vendor's reason.

    ``partial_text`` is the text streamed before the failure (kept on the failure, never as success).
    """
    failure: AttemptFailure
    if isinstance(exc, AttemptFailure):
        failure = exc
    elif isinstance(exc, _sdk_types("anthropic", "APIStatusError")):
        failure = _from_anthropic_status(cast("anthropic.APIStatusError", exc))
    elif isinstance(exc, _sdk_types("openai", "APIError")) and not isinstance(
        exc, _sdk_types("openai", "APIConnectionError")
    ):
        if isinstance(exc, _sdk_types("openai", "APIResponseValidationError")):
            failure = AttemptFailure(
                OutcomeKind.SERVER_ERROR,
                f"{vendor} sent an unexpected response: {cast('openai.APIError', exc).message}",
            )
        else:
            failure = _from_openai_error(cast("openai.APIError", exc), vendor)
    elif isinstance(exc, _sdk_types("google.genai.errors", "APIError")):
        failure = _from_gemini_error(cast("genai_errors.APIError", exc))
    elif isinstance(exc, _sdk_types("anthropic", "APIResponseValidationError")):
        failure = AttemptFailure(
            OutcomeKind.SERVER_ERROR,
            f"{vendor} sent an unexpected response: {cast('anthropic.APIError', exc).message}",
        )
    elif (transport := _from_transport(exc, vendor)) is not None:
        failure = transport
    elif isinstance(exc, (json.JSONDecodeError, *_sdk_types("google.genai.errors", "UnknownApiResponseError"))):
        failure = AttemptFailure(
            OutcomeKind.SERVER_ERROR, f"{vendor} sent a malformed response chunk: {exc}"
        )
    elif isinstance(exc, (*_sdk_types("anthropic", "AnthropicError"), *_sdk_types("openai", "OpenAIError"))):
        failure = AttemptFailure(
            OutcomeKind.BAD_REQUEST, f"{vendor} SDK error {type(exc).__name__}: {exc}"
        )
    else:
        failure = AttemptFailure(
            OutcomeKind.SERVER_ERROR, f"{vendor}: unexpected {type(exc).__name__}: {exc}"
        )
    if failure.kind is OutcomeKind.CONTEXT_TOO_LONG and not ContextReport.read(failure.reason).said_anything:
        report = context_report(failure.reason)
        if report.said_anything:
            failure.reason = f"{report.note()} {failure.reason}"
            failure.args = (f"{failure.kind.value}: {failure.reason}",)
    if partial_text and not failure.partial_text:
        failure.partial_text = partial_text
    if latency_s and not failure.latency_s:
        failure.latency_s = latency_s
    return failure
