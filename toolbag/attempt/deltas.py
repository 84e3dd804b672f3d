"""Streamed text through Redis: a worker publishes an attempt's deltas, any reader relays them.

One stream per job (``Keys.deltas``). Each entry names its attempt, its model and its ``offset`` (where the
attempt's text starts in the answer: 0, or the length of the cut answer it continues); ``kind`` is ``text`` (a
batch of deltas), ``tool`` (a piece of a tool call as the model generates it: ``index``, its ``id`` and
``name`` on its first piece, ``arguments``), ``end`` (the attempt is over, with its outcome) or ``failover``
(the supervisor's word on a cut answer: ``continues`` 1 when the next attempt continues it from ``offset``, 0
when it starts afresh).
Writes are batched: the first piece of an attempt goes out at once (time to first token), later ones when
:data:`FLUSH_CHARS` characters or :data:`FLUSH_MS` milliseconds have gathered; every flush is one pipelined
``XADD`` (capped by ``MAXLEN``) and ``EXPIRE``.

The end entry is written before the attempt's state transition (``complete`` or ``end_attempt``), so a
reader always sees an attempt's end before the next attempt's text.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as redis_async

from toolbag.jobs import JobStatus
from toolbag.providers.adapter import VendorAdapter
from toolbag.providers.base import Adapter, DeltaSink, ModelRequest, ModelResponse

__all__ = [
    "AsyncRedisDeltaSink", "AttemptEnd", "DeltaEvent", "RedisDeltaSink", "StreamingAdapter", "TextDelta",
    "attempt_text", "mark_failover", "read_deltas",
]

FLUSH_CHARS = 256
FLUSH_MS = 25.0
MAXLEN = 10_000  # entries per job stream, approximate trim
TTL_S = 3600  # a job's stream outlives its answer by an hour; the record keeps the output
READ_BLOCK_MS = 500



class _DeltaBatch:
    """What both delta sinks share: the buffer, when a batch is due, and the stream entries it becomes."""

    def __init__(self, key: str, *, attempt: int, model: str, ttl_s: int, offset: int = 0) -> None:
        self._key = key
        self._attempt = str(attempt)
        self._offset = str(offset)
        self._model = model
        self._ttl_s = ttl_s
        self._buffer: list[dict[str, str]] = []  # the entries of the next batch
        self._buffered_chars = 0
        self._last_flush = 0.0
        self._sent_any = False

    def _buffered(self, text: str) -> bool:
        """Buffer ``text``; whether a batch is due (the first piece at once, then every FLUSH_MS or FLUSH_CHARS)."""
        last = self._buffer[-1] if self._buffer else None
        if last is not None and last["kind"] == "text":
            last["text"] += text
        else:
            self._buffer.append({"kind": "text", "text": text})
        return self._due(len(text))

    def _buffered_tool(self, index: int, call_id: str, name: str, arguments: str) -> bool:
        """Buffer a piece of tool call ``index`` (a ``tool`` entry: its id and name on the first, then more of
        its arguments); whether a batch is due."""
        last = self._buffer[-1] if self._buffer else None
        if not call_id and last is not None and last["kind"] == "tool" and last["index"] == str(index):
            last["arguments"] += arguments
        else:
            self._buffer.append({"kind": "tool", "index": str(index), "id": call_id, "name": name,
                                 "arguments": arguments})
        return self._due(len(arguments) + 1)

    def _due(self, chars: int) -> bool:
        self._buffered_chars += chars
        due = (time.monotonic() - self._last_flush) * 1000 >= FLUSH_MS
        return not self._sent_any or due or self._buffered_chars >= FLUSH_CHARS

    def _take(self) -> list[dict[str, str]]:
        entries, self._buffer = self._buffer, []
        self._buffered_chars = 0
        return entries

    def _last_entries(self, outcome: str, reason: str) -> list[dict[str, str]]:
        """What is left in the buffer, then the attempt's end with its outcome."""
        return [*self._take(), {"kind": "end", "outcome": outcome, "reason": reason[:500]}]

    def _queue(self, pipe: Any, entries: Sequence[dict[str, str]]) -> None:
        for entry in entries:
            fields: dict[Any, Any] = {"attempt": self._attempt, "model": self._model, "offset": self._offset,
                                      **entry}
            pipe.xadd(self._key, fields, maxlen=MAXLEN, approximate=True)
        pipe.expire(self._key, self._ttl_s)


class RedisDeltaSink(_DeltaBatch):
    """A :class:`~toolbag.providers.base.ToolDeltaSink` for one attempt, batching into the job's delta stream."""

    def __init__(self, client: redis.Redis, key: str, *, attempt: int, model: str, ttl_s: int = TTL_S,
                 offset: int = 0) -> None:
        super().__init__(key, attempt=attempt, model=model, ttl_s=ttl_s, offset=offset)
        self._redis = client

    def write(self, text: str) -> None:
        if self._buffered(text):
            self.flush()

    def tool(self, index: int, call_id: str, name: str, arguments: str) -> None:
        if self._buffered_tool(index, call_id, name, arguments):
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            self._add(self._take())
            self._sent_any = True
        self._last_flush = time.monotonic()

    def end(self, outcome: str, reason: str = "") -> None:
        """Flush what is left and mark the attempt's end with its outcome (``ok`` or a failure kind)."""
        self._add(self._last_entries(outcome, reason))

    def _add(self, entries: Sequence[dict[str, str]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        self._queue(pipe, entries)
        pipe.execute()


class AsyncRedisDeltaSink(_DeltaBatch):
    """:class:`RedisDeltaSink` for an attempt on the worker's event loop: the same batches and entries, written
    by one flush task at a time over ``redis.asyncio`` while the stream goes on; :meth:`end` waits for it."""

    def __init__(
        self, client: redis_async.Redis, key: str, *, attempt: int, model: str, ttl_s: int = TTL_S, offset: int = 0
    ) -> None:
        super().__init__(key, attempt=attempt, model=model, ttl_s=ttl_s, offset=offset)
        self._redis = client
        self._flushing: asyncio.Task[None] | None = None
        self._again = False  # a flush came due while one was being written

    def write(self, text: str) -> None:
        if self._buffered(text):
            self._flush_soon()

    def tool(self, index: int, call_id: str, name: str, arguments: str) -> None:
        if self._buffered_tool(index, call_id, name, arguments):
            self._flush_soon()

    def _flush_soon(self) -> None:
        self._sent_any = True
        self._last_flush = time.monotonic()
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._flush())
        else:
            self._again = True

    async def _flush(self) -> None:
        while self._buffer:
            self._again = False
            await self._add(self._take())
            if not self._again:
                return

    async def end(self, outcome: str, reason: str = "") -> None:
        """Wait for the flush under way, then write what is left and the attempt's end (as
        :meth:`RedisDeltaSink.end`)."""
        if self._flushing is not None:
            await self._flushing  # a failed write fails the attempt's ending, as it would the sync sink's
        await self._add(self._last_entries(outcome, reason))

    async def _add(self, entries: Sequence[dict[str, str]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        self._queue(pipe, entries)
        await pipe.execute()


def attempt_text(client: redis.Redis, key: str, attempt: int) -> tuple[str, int | None]:
    """The text attempt ``attempt`` streamed into the job's stream, and the offset it started from (None: the
    attempt wrote nothing)."""
    wanted = str(attempt)
    parts: list[str] = []
    offset: int | None = None
    for _, fields in _decoded(client.xrange(key, "-", "+")):
        if fields.get("attempt") != wanted or fields.get("kind") not in ("text", "end"):
            continue
        if offset is None:
            offset = int(fields.get("offset") or 0)
        parts.append(fields.get("text", ""))
    return "".join(parts), offset


def mark_failover(client: redis.Redis, key: str, *, attempt: int, model: str, continues: bool, offset: int,
                  ttl_s: int = TTL_S) -> None:
    """The supervisor's word on a cut answer, for the stream's readers: attempt ``attempt`` on ``model``
    continues it from ``offset`` characters, or (``continues`` false) starts afresh."""
    pipe = client.pipeline(transaction=False)
    pipe.xadd(key, {"attempt": str(attempt), "model": model, "offset": str(offset), "kind": "failover",
                    "continues": "1" if continues else "0"}, maxlen=MAXLEN, approximate=True)
    pipe.expire(key, ttl_s)
    pipe.execute()


class StreamingAdapter:
    """An adapter that hands the wrapped vendor adapter a delta sink on every call."""

    def __init__(self, adapter: Adapter, sink: DeltaSink) -> None:
        self.adapter = adapter
        self.kind = adapter.kind
        self.sink = sink

    def call(self, model: str, request: ModelRequest) -> ModelResponse:
        if isinstance(self.adapter, VendorAdapter):
            return self.adapter.call(model, request, self.sink)
        return self.adapter.call(model, request)

    def wire_request(self, model: str, request: ModelRequest) -> dict[str, Any]:
        return self.adapter.wire_request(model, request)

    def close(self) -> None:
        self.adapter.close()


@dataclass(frozen=True)
class TextDelta:
    """Text streamed by one attempt. ``offset``: where the attempt's text starts in the answer (above 0, it
    continues the text of the cut attempts before it)."""

    text: str
    attempt: int
    model: str
    offset: int = 0


@dataclass(frozen=True)
class AttemptEnd:
    """An attempt is over. ``outcome`` is ``ok`` or its failure kind; ``lost`` when it stopped without a word
    (its worker died) and a later attempt began. A failed attempt's text is not part of the answer, unless the
    next attempt continues it (its deltas' ``offset`` is the length of the text before it)."""

    attempt: int
    model: str
    outcome: str
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


DeltaEvent = TextDelta | AttemptEnd


def read_deltas(
    client: redis.Redis, key: str, status_of: Callable[[], JobStatus], *, timeout_s: float | None = 60.0
) -> Iterator[DeltaEvent]:
    """The job's delta stream from its start, as events, until an attempt ends ``ok`` or the job is terminal.

    ``status_of()`` returns the job's :class:`~toolbag.jobs.JobStatus`; it is asked when the stream is quiet.
    Raises ``TimeoutError`` when ``timeout_s`` passes first."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last_id = "0-0"
    current: tuple[int, str] | None = None
    while True:
        block_ms = READ_BLOCK_MS
        if deadline is not None:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                raise TimeoutError(f"no end of the stream within {timeout_s} s")
            block_ms = max(1, min(block_ms, remaining_ms))
        answer = client.xread({key: last_id}, count=200, block=block_ms)
        if not answer:
            if status_of().terminal:
                if client.xlen(key) and client.xread({key: last_id}, count=1):
                    continue
                return
            continue
        entries = _entries(answer)
        last_id = entries[-1][0]
        for _, fields in entries:
            if fields.get("kind") in ("failover", "tool"):
                continue
            attempt, model = int(fields.get("attempt", "0")), fields.get("model", "")
            if current is not None and current[0] != attempt:
                yield AttemptEnd(current[0], current[1], "lost", "the attempt stopped without an end")
            current = (attempt, model)
            if fields.get("kind") == "end":
                current = None
                end = AttemptEnd(attempt, model, fields.get("outcome", ""), fields.get("reason", ""))
                yield end
                if end.ok:
                    return
            else:
                yield TextDelta(fields.get("text", ""), attempt, model, int(fields.get("offset") or 0))


def _entries(answer: Any) -> list[tuple[str, dict[str, str]]]:
    """One stream's entries from an ``XREAD`` answer, decoded."""
    return _decoded(answer[0][1])


def _decoded(entries: Any) -> list[tuple[str, dict[str, str]]]:
    return [(_text(entry_id), {_text(k): _text(v) for k, v in raw.items()}) for entry_id, raw in entries]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
