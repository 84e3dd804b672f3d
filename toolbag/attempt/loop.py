"""A worker's attempts on one asyncio event loop: thousands of vendor calls open at once, no thread each.

Celery still delivers (queues, tiers, acks). The task that receives a delivery calls :meth:`AttemptLoop.hand`
on one of a few pool threads: it waits for a free slot (``slots``, the worker's concurrency: back-pressure, so
the pool stops taking messages and prefetch stays bounded), reads the job, builds the request and makes the fenced
claim with the first rate-limit admission try and the ``calling`` mark in one script (the lease starts), all
as :meth:`~toolbag.attempt.runner.AttemptRunner.run` does, then hands the attempt to the loop and returns: the
message is acknowledged and the lease is the truth from here on. The loop makes the vendor call through the
SDK's async client, publishes streamed text and writes the completion over ``redis.asyncio``, and renews
every lease of the process. A process that dies with attempts on its loop leaves leases that expire; the
supervisor's sweep ends those attempts as ``lost`` and decides on them, exactly as for a thread that died.

The call goes through the runner's caller on the loop (:meth:`ToolLoop.acall
<toolbag.gateway.loop.ToolLoop.acall>`): a plain call, or a tool loop whose model calls are awaited through the
async client and whose tool calls through the gateway's async path. The gateway's MCP sessions are opened on this
loop too (the caller is bound to it), so an MCP ``tools/call`` is awaited here; a sync Python tool runs on the
gateway's small tool executor with its timeout. No attempt has a thread of its own.

The transition that ends an attempt (``complete`` or ``end_attempt``) settles its rate-limit ticket and
updates the model's health in its own script; the budgets' settles (sync Redis calls) run on a small thread
pool, and so do the Redis calls of a tool loop's later-step rate-limit admissions (their waits for a slot are
slept on the loop: ``RateLimiter.aadmit_step``) and the gateway's policy reads and audit writes
(``Gateway.blocking``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from toolbag.attempt.context import AsyncCaller, MeteredAdapter
from toolbag.attempt.deltas import AsyncRedisDeltaSink
from toolbag.attempt.runner import AttemptRunner, Started, Success, crashed
from toolbag.providers.adapter import VendorAdapter
from toolbag.providers.base import AttemptFailure, OutcomeKind
from toolbag.store.jobstore import AsyncAttemptStore, Transition

__all__ = ["AttemptLoop"]

log = logging.getLogger("toolbag.worker")

TAIL_THREADS = 4  # settle + health after each attempt: short Redis calls, nobody waits on them
STEP_THREADS = 4  # the Redis calls of a tool loop's later-step admissions and settles (waits stay on the loop)
DRAIN_POLL_S = 0.05

T = TypeVar("T")


class AttemptLoop:
    """Runs the attempts of one worker process on one event loop in a daemon thread (see the module)."""

    def __init__(
        self,
        runner: AttemptRunner,
        store: AsyncAttemptStore,
        slots: int,
    ) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        adapter = runner.adapter
        if not isinstance(adapter, VendorAdapter):
            raise TypeError(f"the event-loop path needs a VendorAdapter, got {type(adapter).__name__}")
        caller = runner.caller
        if not isinstance(caller, AsyncCaller):
            raise TypeError(f"the event-loop path needs a caller with acall, got {type(caller).__name__}")
        self.runner = runner
        self.adapter: VendorAdapter[Any] = adapter
        self.caller: AsyncCaller = caller
        self.store = store
        self.slots = slots
        self._free = threading.BoundedSemaphore(slots)
        self._open = 0  # attempts handed to the loop and not finished
        self._open_lock = threading.Lock()
        self._tail = concurrent.futures.ThreadPoolExecutor(TAIL_THREADS, thread_name_prefix="toolbag-attempt-tail")
        self._steps = concurrent.futures.ThreadPoolExecutor(STEP_THREADS, thread_name_prefix="toolbag-attempt-step")
        self.loop = asyncio.new_event_loop()
        bind = getattr(caller, "bind", None)
        if bind is not None:  # the gateway's MCP sessions live on this loop
            bind(self.loop)
        self._thread = threading.Thread(target=self._serve, name="toolbag-attempt-loop", daemon=True)
        self._thread.start()
        self._renewing = self._submit(runner.keeper.serve(self._renew))

    # -- from Celery's pool threads -----------------------------------------------------------------

    def hand(self, job_id: str, token: str, queue: str) -> concurrent.futures.Future[Any] | None:
        """Claim and prepare one delivered attempt on this thread, then leave its call to the loop (the future
        of that call; None when the attempt was not handed: stale, refused, or not admitted). Blocks while every
        slot is taken."""
        self._free.acquire()
        handed = False
        future: concurrent.futures.Future[Any] | None = None
        try:
            started = self.runner.start(job_id, token, queue)
            if started is None:
                return None
            try:
                with self._open_lock:
                    self._open += 1
                try:
                    future = self._submit(self._finish(started))
                except RuntimeError:  # the loop is closed (stopping): the lease expires, as a dead worker's
                    with self._open_lock:
                        self._open -= 1
                    raise
                handed = True
            finally:
                if not handed:
                    self.runner.release(started.record, started.token)
        finally:
            if not handed:
                self._free.release()
        return future

    @property
    def open_attempts(self) -> int:
        with self._open_lock:
            return self._open

    def stop(self, drain_s: float) -> None:
        """Let the attempts on the loop finish (up to ``drain_s``), then stop the loop and close its clients.
        Attempts still open after that keep their leases until they expire and the supervisor recovers them."""
        deadline = time.monotonic() + drain_s
        while self.open_attempts and time.monotonic() < deadline:
            time.sleep(DRAIN_POLL_S)
        if self.loop.is_closed():
            return
        self._renewing.cancel()
        try:
            self._submit(self._close()).result(timeout=5)
        except Exception:
            log.warning("closing the attempt loop's clients failed", exc_info=True)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self._tail.shutdown(wait=False)
        self._steps.shutdown(wait=False)

    # -- on the loop ---------------------------------------------------------------------------------

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def _renew(self, members: Any, ttl_s: float, presence: str | None) -> list[str]:
        return await self.store.renew_leases(members, ttl_s, presence=presence)

    async def _close(self) -> None:
        close_caller = getattr(self.caller, "aclose", None)
        if close_caller is not None:  # the MCP sessions opened on this loop
            try:
                await close_caller()
            except Exception:
                log.warning("closing the caller's sessions failed", exc_info=True)
        await self.adapter.aclose()
        await self.store.close()

    async def _blocking(self, work: Callable[[], T]) -> T:
        return await self.loop.run_in_executor(self._steps, work)

    async def _finish(self, started: Started) -> None:
        try:
            await self._call(started)
        except BaseException:  # cancelled at shutdown: the lease expires and the supervisor recovers it
            log.warning("attempt left unfinished on the loop", extra={"job_id": started.record.id}, exc_info=True)
            raise
        finally:
            self.runner.release(started.record, started.token)
            with self._open_lock:
                self._open -= 1
            self._free.release()

    async def _call(self, started: Started) -> None:
        """:meth:`AttemptRunner.finish` on the loop: the caller's call(s) (one plain call, or a tool loop whose
        later vendor calls each take their own rate-limit slot), then the attempt's outcome."""
        runner, record, token, ctx = self.runner, started.record, started.token, started.ctx
        ticket = started.ticket
        ticket.__enter__()
        sink: AsyncRedisDeltaSink | None = None
        if started.request.stream:
            sink = AsyncRedisDeltaSink(self.store.redis, runner.store.keys.deltas(record.id),
                                       attempt=record.attempt, model=record.model,
                                       offset=len(started.continued))
        metered = MeteredAdapter(self.adapter, runner.admission, ctx, runner.config.tiers[record.tier].total_timeout_s,
                                 sink=sink, blocking=self._blocking)
        try:
            try:
                response = await self.caller.acall(metered, ctx, started.request)
            except AttemptFailure as failure:
                # the first call's usage when it was made (a later step failed), else what the failure says
                first = metered.first
                ticket.settle(first, first.ratelimit_headers if first else failure.ratelimit_headers)
                raise
            first = metered.first or response
            ticket.settle(first, first.ratelimit_headers)
            success = runner.succeeded(started, response)
            if sink is not None:
                await sink.end(OutcomeKind.OK.value)
            lesson = runner.success_lesson(started, success)
            done = await self.store.complete(record.id, token, success.output, success.result,
                                             success.attempt.to_json(), health=lesson.health, settle=lesson.settle)
            runner.learned(lesson, done)
        except AttemptFailure as failure:
            await self._failed(started, failure, sink)
            return
        except Exception as err:  # a bug of ours must not crash the loop or lose the job
            log.exception("attempt crashed", extra={"job_id": record.id})
            await self._failed(started, crashed(err), sink)
            return
        await self._after(started, success, done)

    async def _after(self, started: Started, success: Success, done: Transition) -> None:
        record = started.record

        def tail() -> None:
            self.runner.settle_spend(record, success, done)

        if self.runner.budgets is not None:  # the ticket and health were settled by the completion itself
            await self._in_tail(tail)
        self.runner.observe_success(started, success, done)

    async def _failed(self, started: Started, failure: AttemptFailure, sink: AsyncRedisDeltaSink | None) -> None:
        runner, record = self.runner, started.record
        latency_s = time.monotonic() - started.t0
        if sink is not None:
            try:
                await sink.end(failure.kind.value, failure.reason)
            except Exception:  # the stream's reader learns the end from the job's status instead
                log.warning("could not end the delta stream", extra={"job_id": record.id}, exc_info=True)
        lesson = runner.lesson(record.model, failure.kind, latency_s, failure.retry_after_s, started.ticket, failure)
        try:
            done = await self.store.end_attempt(record.id, started.token, failure.kind.value,
                                                runner.failure_record(record, failure, latency_s),
                                                health=lesson.health, settle=lesson.settle)
        except BaseException:  # the lease expires and the supervisor decides; the ticket is settled on its own
            await self._in_tail(lambda: started.ticket.__exit__(type(failure), failure, None))
            raise
        runner.learned(lesson, done)  # a health sink without a script part records here, on the loop
        runner.observe_failure(record, failure, latency_s)

    async def _in_tail(self, work: Callable[[], None]) -> None:
        try:
            await self.loop.run_in_executor(self._tail, work)
        except Exception:  # the limiter and the health tracker heal on their own (holds expire, EWMAs move on)
            log.warning("settling an attempt failed", exc_info=True)
