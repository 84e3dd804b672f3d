"""Relaying a job's streamed answer to an HTTP caller, on asyncio (no thread per stream).

The worker publishes an attempt's text to the job's delta stream (:mod:`toolbag.attempt.deltas`); this module
reads it with ``XREAD BLOCK`` on an asyncio Redis client and turns it into what the caller may see:

- a failed attempt that had sent no text is passed over: the supervisor reroutes it and the caller sees one
  clean stream from the next attempt;
- a failed attempt that had sent text, on a route that continues cut answers (``stream_failover:
  continue``), is followed by the attempt that continues it: the supervisor marks the failover in the stream
  (``kind: failover``) and the continuing attempt's entries start at the caller's ``offset``, so the caller
  receives exactly the rest;
- otherwise (the route says ``error``, the next model takes no prefill, or an attempt starts the answer
  afresh) it ends the relay with :class:`Failed` (``cut``) and cancels the job: the caller holds part of an
  answer that will not be continued, and is told so in-band, never left with a silent truncation or a replay
  from the start;
- silence longer than the tier's stall budget after text, no end within the wait, or a broken Redis also
  end it with :class:`Failed`, never silently.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from toolbag.attempt.tokens import estimate_text_tokens
from toolbag.jobs import JobResult, JobStatus

__all__ = ["Done", "Failed", "Relayed", "Text", "ToolPiece", "relay"]

READ_BLOCK_MS = 500

log = logging.getLogger("toolbag.api")


@dataclass(frozen=True)
class Text:
    text: str
    model: str


@dataclass(frozen=True)
class ToolPiece:
    """A piece of the model's call of one of the caller's tools, as generated: call ``index`` starts with its
    ``call_id`` and ``name`` (empty on later pieces), then more of its ``arguments`` (JSON text)."""

    index: int
    call_id: str
    name: str
    arguments: str
    model: str


@dataclass(frozen=True)
class Done:
    """The answer is complete. ``carried_chars``: how much of it came from attempts that were cut and continued
    (0: one attempt gave it all)."""

    result: JobResult
    carried_chars: int = 0

    def usage(self) -> dict[str, int]:
        """The answer's tokens over every attempt that gave part of it: the answering attempt's as its vendor
        counted them, plus an estimate for the carried part (a cut stream ends before its vendor's count): its
        output, and the input the cut attempt read (the answering one's, less the carried part it was sent)."""
        usage = self.result.usage
        input_tokens, output_tokens = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
        if self.carried_chars:
            carried = estimate_text_tokens(output_text(self.result)[: self.carried_chars])
            input_tokens += max(0, input_tokens - carried)
            output_tokens += carried
        return {"input_tokens": input_tokens, "output_tokens": output_tokens}


@dataclass(frozen=True)
class Failed:
    """The stream ends with an in-band error. ``outcome``: cut, failed, stalled or timeout."""

    message: str
    outcome: str = "failed"


Relayed = Text | ToolPiece | Done | Failed


@dataclass(frozen=True)
class JobFeed:
    """What the relay needs about one job, all async: its delta stream, its status, its result, cancel."""

    redis: Any  # redis.asyncio.Redis
    deltas_key: str
    job_key: str
    notify_key: str
    terminal_result: Callable[[], Awaitable[JobResult]]
    cancel: Callable[[], Awaitable[Any]]

    async def status(self) -> JobStatus:
        raw = await self.redis.hget(self.job_key, "status")
        return JobStatus(_text(raw)) if raw is not None else JobStatus.EXPIRED

    async def result(self, timeout_s: float) -> JobResult:
        """The job's result once terminal, waiting on its notify token (no thread held while waiting);
        ``TimeoutError`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not (await self.status()).terminal:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            await self.redis.blmove(self.notify_key, self.notify_key, timeout=max(0.001, min(remaining, 5.0)),
                                    src="RIGHT", dest="LEFT")
        return await self.terminal_result()


async def relay(feed: JobFeed, timeout_s: float, *, streamed: bool = True,
                stall_s: float | None = None, continues: bool = False) -> AsyncIterator[Relayed]:
    """The job's answer for an HTTP stream: text as it arrives, then ``Done`` or ``Failed``.

    ``streamed``: the job's tier streams (else the answer comes whole, at the end). ``stall_s``: the longest
    silence after text before the relay gives up on the attempt (and cancels the job). ``continues``: the
    job's route continues a cut answer (``stream_failover: continue``): a failed attempt after text waits for
    the supervisor's word and relays the continuing attempt's text, which must start exactly where the caller's
    part ends."""
    try:
        async for event in _relay(feed, timeout_s, streamed, stall_s, continues):
            yield event
    except TimeoutError:
        yield Failed(f"no answer within {timeout_s:g} s; the job keeps running", "timeout")
    except _Stalled as stalled:
        await feed.cancel()
        yield Failed(str(stalled), "stalled")
    except Exception as err:  # noqa: BLE001 - any broken read ends the stream in-band, never silently
        log.warning("relay failed: %s", type(err).__name__)
        yield Failed(f"the front door lost the job's stream ({type(err).__name__})", "failed")


class _Stalled(Exception):
    pass


async def _relay(feed: JobFeed, timeout_s: float, streamed: bool, stall_s: float | None,
                 continues: bool) -> AsyncIterator[Relayed]:
    deadline = time.monotonic() + timeout_s
    sent = 0  # characters of the answer the caller holds
    last_text = time.monotonic()
    last_id = "0-0"
    current: tuple[int, str] | None = None  # the attempt being relayed
    newest = 0  # the latest attempt heard of: a zombie's late entries are skipped
    carried = 0  # where the answering attempt's text starts: what earlier, cut attempts gave
    called = False  # a tool call went out: an answer with one is never continued
    while streamed:
        now = time.monotonic()
        if now >= deadline:
            raise TimeoutError
        if (sent or called) and stall_s is not None and now - last_text > stall_s:
            raise _Stalled(f"the answer was cut: no text for {stall_s:g} s after part of it was sent")
        block_ms = max(1, min(READ_BLOCK_MS, int((deadline - now) * 1000)))
        answer = await feed.redis.xread({feed.deltas_key: last_id}, count=200, block=block_ms)
        if not answer:
            if (await feed.status()).terminal and not await feed.redis.xread({feed.deltas_key: last_id}, count=1):
                break
            continue
        for entry_id, raw in answer[0][1]:
            last_id = _text(entry_id)
            fields = {_text(k): _text(v) for k, v in raw.items()}
            attempt, model = int(fields.get("attempt", "0")), fields.get("model", "")
            offset, kind = int(fields.get("offset") or 0), fields.get("kind", "text")
            if attempt < newest:
                continue
            newest = attempt
            if kind == "failover":
                if (sent or called) and (called or not (continues and fields.get("continues") == "1"
                                                        and offset == sent)):
                    await feed.cancel()
                    yield Failed(f"the answer was cut after part of it was sent, and the next model ({model}) "
                                 "cannot continue it", "cut")
                    return
                current = None
                continue
            if current is None or current[0] != attempt:  # an attempt's first entry
                if current is not None and (sent or called) and (called or not continues):
                    await feed.cancel()
                    yield Failed(f"the answer was cut: the attempt on {current[1] or 'a model'} stopped without "
                                 "an end after part of it was sent", "cut")
                    return
                if sent and offset != sent:
                    await feed.cancel()
                    yield Failed(f"the answer was cut after part of it was sent; the attempt on {model} started "
                                 "it afresh", "cut")
                    return
                current = (attempt, model)
            if kind == "end":
                current = None
                outcome = fields.get("outcome", "")
                if outcome == "ok":
                    streamed, carried = False, offset
                    break
                if (sent or called) and (called or not continues):
                    await feed.cancel()
                    yield Failed(f"the answer was cut: the attempt on {model} ended {outcome} after part of it "
                                 f"was sent ({fields.get('reason', '')[:200]})", "cut")
                    return
            elif kind == "tool":
                called = True
                last_text = time.monotonic()
                yield ToolPiece(int(fields.get("index") or 0), fields.get("id", ""), fields.get("name", ""),
                                fields.get("arguments", ""), model)
            elif fields.get("text"):
                sent += len(fields["text"])
                last_text = time.monotonic()
                yield Text(fields["text"], model)
    result = await feed.result(deadline - time.monotonic())
    if not result.ok:
        yield Failed(f"job {result.status.value}: {result.error or 'no model answered'}",
                     "cut" if sent or called else "failed")
        return
    if not sent and not called:  # a tier that does not stream: the whole answer at once
        yield Text(output_text(result), result.model or "")
    yield Done(result, carried_chars=carried)


def output_text(result: JobResult) -> str:
    import json

    return result.output if isinstance(result.output, str) else json.dumps(result.output)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
