"""The skeleton of one attempt, written once for every vendor.

:meth:`VendorAdapter.call` starts the attempt's clock, sends the vendor's request (plain or streamed) and
turns the answer into a :class:`~toolbag.providers.base.ModelResponse`: rate-limit headers, request id,
latency, time to first token, and the JSON value when a schema was asked for. Whatever goes wrong becomes
one :class:`~toolbag.providers.base.AttemptFailure` (classified by :func:`~toolbag.providers.errors.classify`)
carrying the text streamed so far, the rate-limit headers and request id received so far, and no secret.

A vendor adapter supplies only what differs:

- :meth:`~VendorAdapter.wire_request`: the SDK call's body arguments;
- :meth:`~VendorAdapter._call_arguments`: those plus the attempt's timeout and extra headers, in the SDK's form;
- :meth:`~VendorAdapter._send` / :meth:`~VendorAdapter._stream`: one plain call / one consumed stream, read
  into a :class:`Reply` (raising the failure a stop or finish reason means);
- :meth:`~VendorAdapter._asend` / :meth:`~VendorAdapter._astream`: the same through the SDK's async client, for
  :meth:`VendorAdapter.acall` (a worker's event loop); the request translation and the reading of the answer
  are the sync path's own functions, so both paths send and read the same wire;
- :meth:`~VendorAdapter._new_received`: the :class:`Received` its send and stream fill as data arrives.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar

from toolbag.providers.base import (
    AttemptFailure,
    DeltaSink,
    ModelRequest,
    ModelResponse,
    ProviderKind,
    ToolCall,
    ToolDeltaSink,
    Usage,
)
from toolbag.providers.clock import AttemptClock
from toolbag.providers.errors import classify
from toolbag.providers.headers import ratelimit_headers
from toolbag.providers.reasons import redact_failure
from toolbag.providers.structured import parse_json_output

__all__ = ["Received", "Reply", "VendorAdapter", "with_sdk_timeout_and_headers"]


@dataclass
class Received:
    """What an attempt has received so far; a failed attempt's failure is completed from it."""

    headers: dict[str, str] = field(default_factory=dict)
    text_parts: list[str] = field(default_factory=list)
    response_id: str | None = None
    tool_sink: ToolDeltaSink | None = None  # a streamed attempt's tool calls, as they are generated

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def tool_piece(self, index: int, call_id: str, name: str, arguments: str) -> None:
        """Hand a piece of tool call ``index`` to the attempt's sink, if it takes them (``call_id`` and ``name``
        on the call's first piece only)."""
        if self.tool_sink is not None:
            self.tool_sink.tool(index, call_id, name, arguments)


class _Forwarding(list[str]):
    """A text-part list that also hands each appended piece to a :class:`DeltaSink`."""

    def __init__(self, sink: DeltaSink) -> None:
        super().__init__()
        self._sink = sink

    def append(self, text: str) -> None:
        super().append(text)
        if text:
            self._sink.write(text)


class Reply(NamedTuple):
    """A finished answer as the vendor sent it (what :meth:`VendorAdapter.call` does not measure itself)."""

    text: str
    tool_calls: tuple[ToolCall, ...]
    model: str
    usage: Usage
    stop_reason: str
    response_id: str | None


ReceivedT = TypeVar("ReceivedT", bound=Received)


def with_sdk_timeout_and_headers(
    wire: dict[str, Any], request: ModelRequest, clock: AttemptClock
) -> dict[str, Any]:
    """``wire`` with the per-call ``timeout`` and ``extra_headers`` arguments of the ``anthropic`` and
    ``openai`` SDKs added (in place: ``wire`` is this attempt's own)."""
    wire["timeout"] = clock.http_timeout(request.stream)
    if request.extra_headers:
        wire["extra_headers"] = dict(request.extra_headers)
    return wire


class VendorAdapter(ABC, Generic[ReceivedT]):
    """An :class:`~toolbag.providers.base.Adapter` whose :meth:`call` is the shared attempt skeleton.

    Subclasses hold one thread-safe SDK client; everything per attempt lives in the call's own objects.
    """

    kind: ProviderKind
    # The response header carrying the vendor's request id; the response's own id is the fallback.
    request_id_header: ClassVar[str | None] = None

    def __init__(self, *, api_key: str) -> None:
        self._secrets = (api_key,)

    @abstractmethod
    def wire_request(self, model: str, request: ModelRequest) -> dict[str, Any]:
        """The JSON-serializable body arguments of the SDK call for ``request``."""

    @abstractmethod
    def close(self) -> None:
        """Release HTTP connections."""

    @abstractmethod
    def _new_received(self) -> ReceivedT:
        """An empty :class:`Received` for one attempt."""

    @abstractmethod
    def _call_arguments(self, wire: dict[str, Any], request: ModelRequest, clock: AttemptClock) -> dict[str, Any]:
        """The SDK call's keyword arguments: ``wire`` plus the attempt's timeout and extra headers."""

    @abstractmethod
    def _send(self, arguments: dict[str, Any], clock: AttemptClock, received: ReceivedT) -> Reply:
        """One plain (non-streaming) call."""

    @abstractmethod
    def _stream(self, arguments: dict[str, Any], clock: AttemptClock, received: ReceivedT) -> Reply:
        """One streamed call, consumed to its end and closed; ``clock`` is checked between chunks."""

    async def _asend(self, arguments: dict[str, Any], clock: AttemptClock, received: ReceivedT) -> Reply:
        """:meth:`_send` through the async client (this default: the sync call on a thread of its own)."""
        return await asyncio.to_thread(self._send, arguments, clock, received)

    async def _astream(self, arguments: dict[str, Any], clock: AttemptClock, received: ReceivedT) -> Reply:
        """:meth:`_stream` through the async client (this default: the sync stream on a thread of its own)."""
        return await asyncio.to_thread(self._stream, arguments, clock, received)

    async def aclose(self) -> None:
        """Release the async client's HTTP connections (on the event loop that used them)."""
        return None

    def call(self, model: str, request: ModelRequest, sink: DeltaSink | None = None) -> ModelResponse:
        """One attempt; returns a response or raises :class:`AttemptFailure`, never an SDK exception.

        A streamed attempt hands each text piece to ``sink`` as it arrives."""
        clock = AttemptClock(request.timeouts, vendor=self.kind)
        received = self._new_received()
        if sink is not None and request.stream:
            received.text_parts = _Forwarding(sink)
            received.tool_sink = sink if isinstance(sink, ToolDeltaSink) else None
        try:
            arguments = self._call_arguments(self.wire_request(model, request), request, clock)
            if request.stream:
                reply = self._stream(arguments, clock, received)
            else:
                reply = self._send(arguments, clock, received)
            return self._response(reply, request, clock, received.headers)
        except Exception as exc:
            raise self._failure(exc, clock, received) from None

    async def acall(self, model: str, request: ModelRequest, sink: DeltaSink | None = None) -> ModelResponse:
        """:meth:`call` on an event loop, through the SDK's async client: the same skeleton, wire and answer."""
        clock = AttemptClock(request.timeouts, vendor=self.kind)
        received = self._new_received()
        if sink is not None and request.stream:
            received.text_parts = _Forwarding(sink)
            received.tool_sink = sink if isinstance(sink, ToolDeltaSink) else None
        try:
            arguments = self._call_arguments(self.wire_request(model, request), request, clock)
            if request.stream:
                reply = await self._astream(arguments, clock, received)
            else:
                reply = await self._asend(arguments, clock, received)
            return self._response(reply, request, clock, received.headers)
        except Exception as exc:
            raise self._failure(exc, clock, received) from None

    def _response(
        self, reply: Reply, request: ModelRequest, clock: AttemptClock, headers: Mapping[str, str]
    ) -> ModelResponse:
        parsed = None
        if request.json_schema is not None and not reply.tool_calls:
            parsed = parse_json_output(reply.text, vendor=self.kind)
        return ModelResponse(
            text=reply.text,
            model=reply.model,
            usage=reply.usage,
            parsed=parsed,
            tool_calls=reply.tool_calls,
            stop_reason=reply.stop_reason,
            request_id=self._request_id(headers, reply.response_id),
            latency_s=clock.elapsed_s(),
            time_to_first_token_s=clock.time_to_first_token_s() if request.stream else None,
            ratelimit_headers=ratelimit_headers(headers),
        )

    def _failure(self, exc: Exception, clock: AttemptClock, received: Received) -> AttemptFailure:
        failure = classify(exc, vendor=self.kind, partial_text=received.text, latency_s=clock.elapsed_s())
        if not failure.ratelimit_headers:
            failure.ratelimit_headers = ratelimit_headers(received.headers)
        failure.request_id = failure.request_id or self._request_id(received.headers, received.response_id)
        return redact_failure(failure, self._secrets)

    def _request_id(self, headers: Mapping[str, str], response_id: str | None) -> str | None:
        header = self.request_id_header
        return (headers.get(header) if header is not None else None) or response_id
