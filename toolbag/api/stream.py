"""Relaying a job's streamed answer to an HTTP caller, on asyncio (no thread per stream).

The worker publishes an attempt's text to the job's delta stream (:mod:`toolbag.attempt.deltas`); this module
reads it with ``XREAD BLOCK`` on an asyncio Redis client and turns it into what the caller may see:

- a failed attempt that had sent no text is passed over: the supervisor reroutes it and the caller sees one
  clean stream from the next attempt;
- a failed attempt that had sent text ends the relay with :class:`Failed` (``cut``) and cancels the job: the
  caller holds part of an answer that will not be continued, and is told so in-band, never left with a
  silent truncation or a replay from the start;
- silence longer than the tier's stall budget after text, no end within the wait, or a broken Redis also
  end it with :class:`Failed`, never silently.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from toolbag.jobs import JobResult, JobStatus

__all__ = ["Done", "Failed", "Relayed", "Text", "relay"]

READ_BLOCK_MS = 500

log = logging.getLogger("toolbag.api")


@dataclass(frozen=True)
class Text:
    text: str
    model: str


@dataclass(frozen=True)
class Done:
    result: JobResult


@dataclass(frozen=True)
class Failed:
    """The stream ends with an in-band error. ``outcome``: cut, failed, stalled or timeout."""

    message: str
    outcome: str = "failed"


Relayed = Text | Done | Failed


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
                stall_s: float | None = None) -> AsyncIterator[Relayed]:
    """The job's answer for an HTTP stream: text as it arrives, then ``Done`` or ``Failed``.

    ``streamed``: the job's tier streams (else the answer comes whole, at the end). ``stall_s``: the longest
    silence after text before the relay gives up on the attempt (and cancels the job)."""
    try:
        async for event in _relay(feed, timeout_s, streamed, stall_s):
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


async def _relay(feed: JobFeed, timeout_s: float, streamed: bool, stall_s: float | None) -> AsyncIterator[Relayed]:
    deadline = time.monotonic() + timeout_s
    sent = False
    last_text = time.monotonic()
    last_id = "0-0"
    current: tuple[int, str] | None = None
    while streamed:
        now = time.monotonic()
        if now >= deadline:
            raise TimeoutError
        if sent and stall_s is not None and now - last_text > stall_s:
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
            lost = current is not None and current[0] != attempt
            if lost and sent:
                await feed.cancel()
                yield Failed(f"the answer was cut: the attempt on {model or 'a model'} stopped without an end "
                             "after part of it was sent", "cut")
                return
            current = (attempt, model)
            if fields.get("kind") == "end":
                current = None
                outcome = fields.get("outcome", "")
                if outcome == "ok":
                    streamed = False
                    break
                if sent:
                    await feed.cancel()
                    yield Failed(f"the answer was cut: the attempt on {model} ended {outcome} after part of it "
                                 f"was sent ({fields.get('reason', '')[:200]})", "cut")
                    return
            elif fields.get("text"):
                sent = True
                last_text = time.monotonic()
                yield Text(fields["text"], model)
    result = await feed.result(deadline - time.monotonic())
    if not result.ok:
        yield Failed(f"job {result.status.value}: {result.error or 'no model answered'}",
                     "cut" if sent else "failed")
        return
    if not sent:  # a tier that does not stream: the whole answer at once
        yield Text(output_text(result), result.model or "")
    yield Done(result)


def output_text(result: JobResult) -> str:
    import json

    return result.output if isinstance(result.output, str) else json.dumps(result.output)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
