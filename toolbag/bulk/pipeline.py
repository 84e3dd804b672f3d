"""Many jobs through the fleet at once: pipelined submission with backpressure, and one completion feed.

Waiting on thousands of jobs one blocking read each costs a connection and a round trip per job. Instead
every job of a run names the same **inbox** (``JobRequest.inbox``); the terminal transitions push the
job's id there, and :class:`Pipeline` pops ids in chunks and reads their results in one pipelined round
trip. A slow sweep of the jobs still in flight is the safety net for ids that never reach this inbox
(a job reused through its idempotency key that names another inbox, or an inbox lost with Redis).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any, Generic, TypeVar

from toolbag.client import Client, JobRequest
from toolbag.jobs import JobResult, JobStatus, SubmitError
from toolbag.store import NewJob

T = TypeVar("T")

_TERMINAL = frozenset(s.value for s in JobStatus if s.terminal)


@dataclass(frozen=True)
class Submitted(Generic[T]):
    """The item's job is queued (``created`` false: an earlier job with its idempotency key was reused)."""

    tag: T
    job_id: str
    created: bool


@dataclass(frozen=True)
class Rejected(Generic[T]):
    """The item failed validation at submit; no job was created."""

    tag: T
    error: SubmitError


@dataclass(frozen=True)
class Finished(Generic[T]):
    """The item's job reached a terminal status."""

    tag: T
    result: JobResult


Event = Submitted[T] | Rejected[T] | Finished[T]


def gone_result(job_id: str) -> JobResult:
    """The result reported for a job whose record vanished (expired, or deleted) before it was read."""
    return JobResult(job_id=job_id, status=JobStatus.EXPIRED, error="the job's record is gone (expired or deleted)")


class Pipeline(Generic[T]):
    """Feed ``(tag, JobRequest)`` items to the fleet, at most ``max_in_flight`` jobs at a time.

    :meth:`run` yields one list of events per step (a submitted chunk, a chunk of finished jobs), so a
    caller can write each step's results in one go. When only a few jobs have finished, a step waits
    ``linger_s`` for more, so there are at most a few dozen steps a second whatever the rate. ``backlog``
    counts items a caller holds back (e.g. to restore input order) against ``max_in_flight`` too, so
    memory stays bounded either way.
    """

    def __init__(
        self,
        client: Client,
        inbox: str,
        *,
        max_in_flight: int = 256,
        chunk_size: int = 200,
        wait_s: float = 1.0,
        sweep_s: float = 5.0,
        linger_s: float = 0.05,
        backlog: Callable[[], int] | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.client = client
        self.store = client.store
        self.inbox = inbox
        self.inbox_key = client.store.keys.inbox(inbox)
        self.max_in_flight = max_in_flight
        self.chunk_size = max(1, min(chunk_size, max_in_flight))
        self.wait_s = wait_s
        self.sweep_s = sweep_s
        self.linger_s = linger_s
        self._backlog = backlog or (lambda: 0)
        self._refill_at = max(1, min(self.chunk_size, max_in_flight // 4))
        self.pending: dict[str, list[T]] = {}

    @property
    def in_flight(self) -> int:
        """Jobs submitted and not yet seen finished."""
        return len(self.pending)

    def run(self, items: Iterable[tuple[T, JobRequest]]) -> Iterator[list[Event[T]]]:
        """Submit every item and yield events until each has finished or was rejected."""
        source = iter(items)
        exhausted = False
        last_sweep = time.monotonic()
        while True:
            while not exhausted:
                room = self.max_in_flight - len(self.pending) - self._backlog()
                if room <= 0 or (room < self._refill_at and self.pending):
                    break
                want = min(room, self.chunk_size)
                batch = list(islice(source, want))
                exhausted = len(batch) < want
                if batch:
                    yield self._submit(batch)
            if not self.pending:
                if exhausted:
                    return
                continue
            ready = self.store.pop_inbox(self.inbox_key, self.chunk_size, self.wait_s)
            if ready and len(ready) < self.chunk_size and self.linger_s > 0:
                time.sleep(self.linger_s)  # let a few more finish: fewer, larger steps cost less per job
                ready += self.store.pop_inbox(self.inbox_key, self.chunk_size - len(ready), 0)
            if time.monotonic() - last_sweep >= self.sweep_s:
                ready += self._sweep()
                last_sweep = time.monotonic()
            events = self._collect(ready)
            if events:
                yield events

    def _submit(self, batch: list[tuple[T, JobRequest]]) -> list[Event[T]]:
        events: list[Event[T]] = []
        prepared = self.client.prepare_each([replace(req, inbox=self.inbox) for _, req in batch])
        valid: list[tuple[T, NewJob]] = []
        for (tag, _), outcome in zip(batch, prepared, strict=True):
            if isinstance(outcome, SubmitError):
                events.append(Rejected(tag, outcome))
            else:
                valid.append((tag, outcome))
        jobs = self.client.submit_prepared([job for _, job in valid])
        reused: list[str] = []
        for (tag, _), job in zip(valid, jobs, strict=True):
            self.pending.setdefault(job.id, []).append(tag)
            events.append(Submitted(tag, job.id, job.created))
            if not job.created:
                reused.append(job.id)
        if reused:  # an earlier run's job: it may have finished already, and may report to another inbox
            statuses = self.store.statuses(reused)
            events += self._collect([j for j, s in zip(reused, statuses, strict=True) if s is None or s in _TERMINAL])
        return events

    def _sweep(self) -> list[str]:
        ids = list(self.pending)
        statuses = self.store.statuses(ids) if ids else []
        return [j for j, s in zip(ids, statuses, strict=True) if s is None or s in _TERMINAL]

    def _collect(self, job_ids: list[str]) -> list[Event[T]]:
        wanted = list(dict.fromkeys(j for j in job_ids if j in self.pending))
        if not wanted:
            return []
        events: list[Event[T]] = []
        for job_id, snap in zip(wanted, self.store.snapshot_many(wanted), strict=True):
            if snap is None:
                result = gone_result(job_id)
            elif snap[0].status.terminal:
                result = self.client.result_of(*snap)
            else:  # pushed by an earlier life of the job, or swept early: not finished yet
                continue
            for tag in self.pending.pop(job_id):
                events.append(Finished(tag, result))
        return events

    def forget_inbox(self) -> None:
        """Delete the inbox (once nothing is in flight; a late push would recreate it with a TTL)."""
        self.store.redis.delete(self.inbox_key)


@dataclass(frozen=True)
class MapResult:
    """What :meth:`Client.map` yields for one input: its position, the input, and the job's result —
    or ``error`` when the input failed validation and no job ran."""

    index: int
    input: Any
    result: JobResult | None = None
    error: SubmitError | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None and self.result.ok

    @property
    def output(self) -> Any:
        return self.result.output if self.result is not None else None

    @property
    def job_id(self) -> str | None:
        return self.result.job_id if self.result is not None else None


def map_inputs(
    client: Client,
    skill: str | None,
    inputs: Iterable[Any],
    *,
    capability: str | None = None,
    tier: str | None = None,
    caller: str = "anonymous",
    max_in_flight: int = 256,
    ordered: bool = False,
    idempotency_key: Callable[[int, Any], str] | None = None,
) -> Iterator[MapResult]:
    """The body of :meth:`Client.map`."""
    held: dict[int, MapResult] = {}
    pipeline: Pipeline[tuple[int, Any]] = Pipeline(
        client, f"map:{uuid.uuid4().hex}", max_in_flight=max_in_flight, backlog=lambda: len(held)
    )

    def items() -> Iterator[tuple[tuple[int, Any], JobRequest]]:
        for index, value in enumerate(inputs):
            key = idempotency_key(index, value) if idempotency_key is not None else None
            yield (index, value), JobRequest(capability, value, skill, tier, caller, key)

    next_index = 0
    try:
        for events in pipeline.run(items()):
            for event in events:
                if isinstance(event, Submitted):
                    continue
                (index, value) = event.tag
                if isinstance(event, Rejected):
                    out = MapResult(index, value, error=event.error)
                else:
                    out = MapResult(index, value, result=event.result)
                if not ordered:
                    yield out
                    continue
                held[index] = out
                while next_index in held:
                    yield held.pop(next_index)
                    next_index += 1
    finally:
        if not pipeline.pending:
            pipeline.forget_inbox()
