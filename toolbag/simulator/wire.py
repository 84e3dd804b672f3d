"""What every vendor wire module provides, plus small shared helpers (SSE framing, JSON bytes, headers)."""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeGuard, get_args

from .faults import Fault, RateLimitInfo
from .generate import Reply
from .request import SimRequest

# How a 200 answer is shaped: a normal answer, a refusal variant, or a stream that goes wrong midway.
AnswerMode = Literal[
    "normal", "refusal", "refusal_filter", "refusal_finish", "midstream_error", "midstream_refusal"
]

_ANSWER_MODES = frozenset(get_args(AnswerMode))

Headers = list[tuple[bytes, bytes]]


def _is_answer_mode(name: str) -> TypeGuard[AnswerMode]:
    return name in _ANSWER_MODES


def answer_mode(fault_name: str, stream: bool) -> AnswerMode:
    """How a 200 answer is shaped under a fault; ``midstream_refusal`` without a stream is a plain refusal."""
    if fault_name == "midstream_refusal" and not stream:
        return "refusal"
    return fault_name if _is_answer_mode(fault_name) else "normal"


def dumps(value: Any) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event; ``event`` adds an ``event:`` line (Anthropic, OpenAI Responses)."""
    payload = data if isinstance(data, bytes) else dumps(data)
    if event is None:
        return b"data: " + payload + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


@dataclass(frozen=True)
class StreamEvent:
    """One SSE event. ``content`` marks events carrying model output; ``tokens`` paces them."""

    data: bytes
    content: bool = False
    tokens: int = 0


@dataclass
class HttpError:
    """A vendor-native error answer."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


_reset_cache: tuple[int, float, str] = (0, 0.0, "")


def rfc3339_in(seconds: float) -> str:
    """An RFC 3339 UTC timestamp ``seconds`` from now (cached per wall-clock second)."""
    global _reset_cache
    now = int(time.time())
    if _reset_cache[0] == now and _reset_cache[1] == seconds:
        return _reset_cache[2]
    stamp = datetime.fromtimestamp(now + seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    _reset_cache = (now, seconds, stamp)
    return stamp


def go_duration(seconds: float) -> str:
    """OpenAI's reset format: ``12ms``, ``1s``, ``6m0s``."""
    if seconds < 1:
        return f"{int(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:g}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest}s"


def retry_after_headers(seconds: float, *, with_ms: bool) -> dict[str, str]:
    headers = {"retry-after": f"{seconds:g}" if seconds != int(seconds) else str(int(seconds))}
    if with_ms:
        headers["retry-after-ms"] = str(int(seconds * 1000))
    return headers


class Wire(ABC):
    """One vendor's wire protocol: parse its requests, render its answers, errors and streams."""

    vendor: str

    @abstractmethod
    def authorized(self, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
        """Whether the request carries this vendor's credential header."""

    @abstractmethod
    def parse(self, body: Any, *, model: str | None, stream: bool | None) -> SimRequest:
        """The neutral request, or :class:`~.request.RequestError`."""

    @abstractmethod
    def body(self, req: SimRequest, reply: Reply, mode: AnswerMode, rid: str) -> dict[str, Any]:
        """A complete non-streaming 200 body (normal answer or refusal variant)."""

    @abstractmethod
    def stream(self, req: SimRequest, reply: Reply, mode: AnswerMode, rid: str) -> list[StreamEvent]:
        """The SSE events of a streaming 200 answer, terminal event included."""

    @abstractmethod
    def malformed_event(self) -> bytes:
        """An SSE event whose data is not valid JSON."""

    @abstractmethod
    def error(self, fault: Fault, req: SimRequest | None, rid: str) -> HttpError:
        """The native error answer for an error fault (see :data:`~.faults.ERROR_FAULTS`)."""

    @abstractmethod
    def invalid(self, message: str, rid: str) -> HttpError:
        """A native 400 invalid-request error with ``message``."""

    @abstractmethod
    def unauthenticated(self, rid: str) -> HttpError:
        """The native 401 for a missing credential."""

    @abstractmethod
    def headers(self, model: str, rid: str, limits: RateLimitInfo) -> Headers:
        """Response headers added to every answer (request id, rate-limit headers)."""
