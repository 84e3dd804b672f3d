"""The Redis job store: every job transition as one atomic, fenced Lua script.

A Celery message is only a pointer ``(job_id, token)``. The store decides whether a delivery is current:
a stale or duplicate delivery fails the token compare-and-set and is dropped by the caller.

One clock decides every lease, delay and deadline: Redis's (``TIME``, read inside the scripts or by
:meth:`JobStore.now_ms`). No host's clock is compared with a stored time, so a host whose clock is off
neither loses leases nor promotes, expires or re-sends early or late.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as redis_async

from toolbag.config import MAX_KEEP_S
from toolbag.jobs import JobNotFound, JobRecord, JobStatus
from toolbag.lua import script as lua_script
from toolbag.store.keys import Keys
from toolbag.store.messages import attempt_message, decide_message, envelope_pointer, unacked_pointer
from toolbag.store.replication import Replication, not_replicated, run_replicated

WAIT_CHUNK_S = 5.0  # longest single blocking wait; must stay below the client's socket timeout
SUBMIT_BATCH = 100  # jobs per submit script call: its fixed cost shared, Redis held ~1 ms at most per call
log = logging.getLogger("toolbag.store")


def text(value: Any) -> str:
    """A Redis reply value as text (replies are bytes unless the client decodes them)."""
    return value.decode() if isinstance(value, bytes) else str(value)


HISTORY_FIELD = "_history"  # a NewJob field submit writes as the first entry of the job's history, not to its hash


@dataclass(frozen=True)
class NewJob:
    """Everything ``submit`` writes for one job."""

    job_id: str
    queue: str
    deadline_s: float
    fields: dict[str, str]
    idempotency_key: str | None = None
    caller: str = ""


@dataclass(frozen=True)
class Transition:
    """The result of a fenced transition: ``ok`` false means the job had moved on (stale). A completion also
    carries what its folded fragments answered: ``health`` (the circuit state after learning, '' without) and
    ``settled`` (the rate-limit settle's reply, () without)."""

    ok: bool
    #: The job's status after the transition, or (not ``ok``) the one that stopped it; ``None`` when the reply
    #: named no status: then ``reason`` says why (``missing``: no such job; ``not due``; ``not delayed``).
    status: JobStatus | None = None
    created_ms: int = 0
    finished_ms: int = 0
    health: str = ""
    settled: tuple[int, ...] = ()
    reason: str = ""

    @property
    def missing(self) -> bool:
        """Whether the job has no record (an unknown id, or it expired)."""
        return self.status is None and self.reason == "missing"


def moved(ok: bool, said: str, **more: Any) -> Transition:
    """The :class:`Transition` of a script whose reply's second item, ``said``, is a status or why there is none."""
    try:
        return Transition(ok, JobStatus(said), **more)
    except ValueError:
        return Transition(ok, None, reason=said, **more)


@dataclass(frozen=True)
class ScriptPart:
    """The keys and arguments a Lua fragment adds to a transition's script: a rule of another module (a
    rate-limit admission or settle, a health update) run in the same step, so it costs no round trip or
    script call of its own. The module that owns the rule builds it; the store only passes it on."""

    keys: tuple[str, ...]
    args: tuple[str, ...]


@dataclass(frozen=True)
class Claimed:
    """A claim made by :meth:`JobStore.claim_with`: when it started (Redis's clock), whether the attempt is
    already marked calling (its admission committed a call due now), and the admission's raw reply (empty
    without one)."""

    started_ms: int
    called: bool
    grant: list[Any]


def completed(reply: Any) -> Transition:
    """The ``complete`` script's reply."""
    if int(reply[0]) != 1:
        return moved(False, text(reply[1]), health=text(reply[2]), settled=tuple(int(x) for x in reply[3]))
    return Transition(True, JobStatus.SUCCEEDED, int(reply[1]), int(reply[2]), health=text(reply[3]),
                      settled=tuple(int(x) for x in reply[4]))


def ended(reply: Any) -> Transition:
    """The ``end_attempt`` script's reply."""
    if int(reply[0]) != 1:
        return moved(False, text(reply[1]), health=text(reply[2]), settled=tuple(int(x) for x in reply[3]))
    return Transition(True, JobStatus.DECIDING, health=text(reply[1]), settled=tuple(int(x) for x in reply[2]))


def learned(keys: Keys, health: ScriptPart | None, settle: ScriptPart | None) -> tuple[list[str], list[Any]]:
    """The keys and arguments of ``lua/call_learned.lua`` (what a call teaches, run by the transition that ends
    its attempt): the health update of its outcome (one key) and its rate-limit settle, either or both absent."""
    return (
        [health.keys[0] if health is not None else keys.dummy, *(settle.keys if settle is not None else ())],
        [len(health.args) if health is not None else 0, *(health.args if health is not None else ()),
         *(settle.args if settle is not None else ())],
    )


@dataclass(frozen=True)
class AttemptCalls:
    """The keys and arguments of the scripts that end or renew an attempt, for the sync store and the
    event loop's :class:`AsyncAttemptStore` alike."""

    keys: Keys
    job_ttl_s: int

    def complete(
        self, job_id: str, token: str, output: Any, result: dict[str, Any], record_json: str,
        health: ScriptPart | None = None, settle: ScriptPart | None = None,
    ) -> tuple[list[str], list[Any]]:
        """``health``: the health update of the answer (one key), ``settle``: the call's rate-limit settle,
        both run in the completion's step (``lua/complete.lua``)."""
        k = self.keys
        more_keys, more_args = learned(k, health, settle)
        return (
            [k.job(job_id), k.leases, k.attempts(job_id), k.notify(job_id), k.deadlines, k.audit, k.stats, *more_keys],
            [token, json.dumps(output), json.dumps(result), record_json, self.job_ttl_s, *more_args],
        )

    def end_attempt(
        self, job_id: str, token: str, outcome: str, record_json: str,
        health: ScriptPart | None = None, settle: ScriptPart | None = None,
    ) -> tuple[list[str], list[Any]]:
        """``health`` and ``settle`` as for :meth:`complete` (``lua/end_attempt.lua``)."""
        k = self.keys
        more_keys, more_args = learned(k, health, settle)
        return (
            [k.job(job_id), k.leases, k.attempts(job_id), k.deciding, k.supervisor_queue, *more_keys],
            [token, outcome, record_json, decide_message(job_id, token, outcome), *more_args],
        )

    def renew(
        self, members: Iterable[str], lease_ttl_s: float, presence: str | None
    ) -> tuple[list[str], list[Any]] | None:
        members = list(members)
        if not members and presence is None:
            return None
        return [self.keys.leases, self.keys.workers], [int(lease_ttl_s * 1000), presence or "", *members]


class AsyncAttemptStore:
    """The transitions a worker's event loop makes (complete, end an attempt, renew leases) over
    ``redis.asyncio``: the same scripts, keys and fences as :class:`JobStore`."""

    def __init__(self, client: redis_async.Redis, calls: AttemptCalls) -> None:
        self.redis = client
        self.calls = calls
        self._complete = client.register_script(lua_script("complete"))
        self._end_attempt = client.register_script(lua_script("end_attempt"))
        self._renew = client.register_script(lua_script("renew"))

    @classmethod
    def from_url(cls, url: str, calls: AttemptCalls, max_connections: int = 64) -> AsyncAttemptStore:
        """A client over at most ``max_connections`` connections; a call waits for a free one (up to 30 s)
        rather than failing when thousands of attempts end at once."""
        from toolbag.store.connection import async_redis_client

        return cls(async_redis_client(url, max_connections=max_connections, socket_keepalive=True), calls)

    async def complete(
        self, job_id: str, token: str, output: Any, result: dict[str, Any], record_json: str, *,
        health: ScriptPart | None = None, settle: ScriptPart | None = None,
    ) -> Transition:
        keys, args = self.calls.complete(job_id, token, output, result, record_json, health, settle)
        return completed(await self._complete(keys=keys, args=args))

    async def end_attempt(
        self, job_id: str, token: str, outcome: str, record_json: str, *,
        health: ScriptPart | None = None, settle: ScriptPart | None = None,
    ) -> Transition:
        keys, args = self.calls.end_attempt(job_id, token, outcome, record_json, health, settle)
        return ended(await self._end_attempt(keys=keys, args=args))

    async def renew_leases(
        self, members: Iterable[str], lease_ttl_s: float, *, presence: str | None = None
    ) -> list[str]:
        call = self.calls.renew(members, lease_ttl_s, presence)
        if call is None:
            return []
        return [text(m) for m in await self._renew(keys=call[0], args=call[1])]

    async def close(self) -> None:
        await self.redis.aclose()


class JobStore:
    """Typed access to the job keys. Thread-safe (redis-py connection pool)."""

    def __init__(self, client: redis.Redis, keys: Keys | None = None, job_ttl_s: int = 7 * 86_400) -> None:
        if not 1 <= job_ttl_s <= MAX_KEEP_S:
            raise ValueError(f"job_ttl_s must be from 1 to {MAX_KEEP_S} seconds, got {job_ttl_s}")
        self.redis = client
        self.url: str | None = None  # the URL it was made from (:meth:`from_url`), for clients of other kinds
        self.keys = keys or Keys()
        self.job_ttl_s = job_ttl_s
        self.replication = Replication()  # the fast mode unless told: submit and complete wait for no replica
        self.calls = AttemptCalls(self.keys, job_ttl_s)
        self._submit = client.register_script(lua_script("submit"))
        self._claim = client.register_script(lua_script("claim"))
        self._complete = client.register_script(lua_script("complete"))
        self._end_attempt = client.register_script(lua_script("end_attempt"))
        self._dispatch = client.register_script(lua_script("dispatch"))
        self._promote = client.register_script(lua_script("promote"))
        self._finish = client.register_script(lua_script("finish"))
        self._resolve = client.register_script(lua_script("resolve"))
        self._reclaim = client.register_script(lua_script("reclaim"))
        self._hand_back = client.register_script(lua_script("hand_back"))
        self._renew = client.register_script(lua_script("renew"))
        self._calling = client.register_script(lua_script("calling"))

    @classmethod
    def from_url(cls, url: str, keys: Keys | None = None, job_ttl_s: int = 7 * 86_400) -> JobStore:
        """A store on ``url`` (a plain or a Sentinel URL: :mod:`toolbag.store.connection`)."""
        from toolbag.store.connection import redis_client

        client = redis_client(url, socket_connect_timeout_s=5, socket_timeout_s=WAIT_CHUNK_S + 25,
                              socket_keepalive=True, health_check_interval=25, max_connections=512)
        store = cls(client, keys, job_ttl_s)
        store.url = url
        return store

    def _replicated(self, script: Any, keys: list[str], args: list[Any], *, required: bool) -> Any:
        """``script`` as a write of the replicated mode (:mod:`toolbag.store.replication`); plainly in the fast
        one. Unconfirmed: :class:`NotReplicated` when ``required``, else a warning."""
        if not self.replication.replicas:
            return script(keys=keys, args=args)
        replies, confirmed = run_replicated(self.redis, self.replication,
                                            lambda pipe: script(keys=keys, args=args, client=pipe))
        if not confirmed:
            if required:
                raise not_replicated(self.replication, "the write")
            log.warning("a write is not on a replica within %d ms; a failover now could undo it",
                        self.replication.timeout_ms)
        return replies[0]

    # -- submit -------------------------------------------------------------------------------------

    def _submit_args(self, jobs: Sequence[NewJob]) -> tuple[list[str], list[Any]]:
        """The keys and arguments of one ``lua/submit.lua`` call for ``jobs``."""
        keys: list[str] = [self.keys.deadlines, self.keys.stats]
        argv: list[Any] = [self.job_ttl_s]
        for job in jobs:
            use_idem = job.idempotency_key is not None
            keys += [
                self.keys.job(job.job_id),
                self.keys.idem(job.caller, job.idempotency_key) if job.idempotency_key is not None else self.keys.dummy,
                self.keys.queue(job.queue),
                self.keys.waiting(job.queue),
                self.keys.attempts(job.job_id),
            ]
            argv += [
                job.job_id,
                "1" if use_idem else "0",
                attempt_message(job.queue, job.job_id, "1", capability=job.fields.get("capability", ""),
                                model=job.fields.get("model", "")),
                int(job.deadline_s * 1000),
                len(job.fields),
            ]
            for name, value in job.fields.items():
                argv += [name, value]
        return keys, argv

    def submit(self, job: NewJob) -> tuple[bool, str]:
        """Create and enqueue; returns ``(created, job_id)`` (the existing id on an idempotency hit)."""
        keys, argv = self._submit_args([job])
        created, job_id = self._replicated(self._submit, keys, argv, required=True)
        return bool(int(created)), text(job_id)

    def submit_many(self, jobs: Sequence[NewJob]) -> list[tuple[bool, str]]:
        """``submit`` for many jobs in one round trip: :data:`SUBMIT_BATCH` jobs per script call, which shares
        one clock read and one write per shared key (queue, waiting set, deadlines, counters) among them; each
        call is atomic."""
        pipe = self.redis.pipeline(transaction=False)
        for start in range(0, len(jobs), SUBMIT_BATCH):
            keys, argv = self._submit_args(jobs[start:start + SUBMIT_BATCH])
            self._submit(keys=keys, args=argv, client=pipe)
        if self.replication.replicas:
            pipe.wait(self.replication.replicas, self.replication.timeout_ms)
        replies = pipe.execute()
        if self.replication.replicas and int(replies.pop()) < self.replication.replicas:
            raise not_replicated(self.replication, "the submissions")
        flat = [x for reply in replies for x in reply]
        return [(bool(int(c)), text(i)) for c, i in zip(flat[0::2], flat[1::2], strict=True)]

    # -- worker side --------------------------------------------------------------------------------

    def claim(self, job_id: str, token: str, queue: str, lease_ttl_s: float, worker: str) -> JobRecord | None:
        """Take the attempt if ``token`` is current, without a rate-limit admission; returns the job record (as
        claimed), or None when stale."""
        reply = self._claim(
            keys=[self.keys.job(job_id), self.keys.leases, self.keys.waiting(queue)],
            args=[token, int(lease_ttl_s * 1000), worker, "record"],
        )
        if int(reply[0]) != 1:
            return None
        flat = [text(x) for x in reply[4:]]
        return JobRecord.from_hash(dict(zip(flat[0::2], flat[1::2], strict=True)))

    def claim_with(
        self, job_id: str, token: str, queue: str, lease_ttl_s: float, worker: str,
        admission: ScriptPart | None = None,
    ) -> Claimed | None:
        """The claim of a caller that read the job already (:meth:`peek`), with the attempt's first rate-limit
        admission try in the same step (``admission``: ``RateLimiter.opening``'s part); None when stale. A
        refused admission still claims (the caller hands the job back, fenced, as after any refusal)."""
        part = admission or ScriptPart((), ())
        reply = self._claim(
            keys=[self.keys.job(job_id), self.keys.leases, self.keys.waiting(queue), *part.keys],
            args=[token, int(lease_ttl_s * 1000), worker, "known", *part.args],
        )
        if int(reply[0]) != 1:
            return None
        return Claimed(int(reply[1]), int(reply[2]) == 1, list(reply[3]))

    def peek(self, job_id: str) -> JobRecord | None:
        """The job record as it is now, unfenced (None when gone): what a worker builds its request from before
        the fenced claim, which decides whether the delivery is current."""
        raw = self.redis.hgetall(self.keys.job(job_id))
        return JobRecord.from_hash({text(k): text(v) for k, v in raw.items()}) if raw else None

    def calling(self, job_id: str, token: str) -> bool:
        """Record that the running attempt ``token`` is about to call its vendor (``called_ms``); False when the
        attempt is no longer current (swept as lost, or the job cancelled): then it must not call."""
        return int(self._calling(keys=[self.keys.job(job_id)], args=[token])) == 1

    def renew_leases(self, members: Iterable[str], lease_ttl_s: float, *, presence: str | None = None) -> list[str]:
        """Extend live leases (``<id>:<token>``) to ``lease_ttl_s`` past Redis's now and, with ``presence``
        (``<provider>|<name>``), mark that worker heard from; returns the members whose lease was already gone."""
        call = self.calls.renew(members, lease_ttl_s, presence)
        if call is None:
            return []
        return [text(m) for m in self._renew(keys=call[0], args=call[1])]

    def complete(
        self, job_id: str, token: str, output: Any, result: dict[str, Any], record_json: str, *,
        health: ScriptPart | None = None, settle: ScriptPart | None = None,
    ) -> Transition:
        """Running → succeeded; ``health`` and ``settle`` (see :meth:`AttemptCalls.complete`) in the same step,
        whether or not the attempt is still current."""
        keys, args = self.calls.complete(job_id, token, output, result, record_json, health, settle)
        # done on the master either way; a caller's result waits for a replica itself
        return completed(self._replicated(self._complete, keys, args, required=False))

    def end_attempt(
        self, job_id: str, token: str, outcome: str, record_json: str, *,
        health: ScriptPart | None = None, settle: ScriptPart | None = None,
    ) -> Transition:
        """Running → deciding, pushing a decision message to the supervisor queue in the same step; ``health``
        and ``settle`` (a worker's failed call: see :meth:`AttemptCalls.complete`) whether current or not."""
        keys, args = self.calls.end_attempt(job_id, token, outcome, record_json, health, settle)
        return ended(self._end_attempt(keys=keys, args=args))

    def hand_back(
        self,
        job_id: str,
        token: str,
        *,
        model: str,
        provider: str,
        queue: str,
        record_json: str,
        delay_s: float = 0.0,
        audit: bool = False,
    ) -> Transition:
        """Running → waiting for ``delay_s`` (throttled), or → queued on ``queue`` now (spilled), without an
        attempt: the attempt number stays, the token moves on. Used when rate-limit admission says no."""
        new_token = str(int(token) + 1)
        delay_ms = max(0, int(delay_s * 1000))
        target = self.keys.delayed if delay_ms > 0 else self.keys.queue(queue)
        envelope = attempt_message(queue, job_id, new_token, model=model) if delay_ms <= 0 else ""
        reply = self._hand_back(
            keys=[self.keys.job(job_id), self.keys.leases, self.keys.attempts(job_id), target,
                  self.keys.waiting(queue), self.keys.audit],
            args=[token, new_token, model, provider, queue, envelope, record_json, delay_ms, "1" if audit else "0"],
        )
        return moved(int(reply[0]) == 1, text(reply[1]) if len(reply) > 1 else "")

    # -- supervisor side ----------------------------------------------------------------------------

    def dispatch(
        self,
        job_id: str,
        expected_token: str,
        *,
        model: str,
        provider: str,
        queue: str,
        record_json: str,
        delay_s: float = 0.0,
        feedback: str = "",
        expected_status: JobStatus = JobStatus.DECIDING,
        new_deadline_s: float = 0.0,
        prefill: str = "",
    ) -> Transition:
        """Deciding (or escalated) → queued on ``queue``, or waiting in the delayed set for ``delay_s``.
        ``prefill``: the part of a cut streamed answer the next attempt continues ('' : it starts afresh)."""
        new_token = str(int(expected_token) + 1)
        delay_ms = int(delay_s * 1000)
        target = self.keys.delayed if delay_ms > 0 else self.keys.queue(queue)
        envelope = attempt_message(queue, job_id, new_token, model=model) if delay_ms <= 0 else ""
        leaving = self.keys.escalations if expected_status is JobStatus.ESCALATED else self.keys.deciding
        reply = self._dispatch(
            keys=[self.keys.job(job_id), leaving, self.keys.attempts(job_id), target,
                  self.keys.waiting(queue), self.keys.audit, self.keys.deadlines, self.keys.notify(job_id),
                  self.keys.resolved(job_id)],
            args=[expected_token, new_token, model, provider, queue, envelope, record_json, delay_ms, feedback,
                  expected_status.value, int(new_deadline_s * 1000), prefill],
        )
        return moved(int(reply[0]) == 1, text(reply[1]) if len(reply) > 1 else "")

    def promote(self, job_id: str) -> Transition:
        """Waiting and due → queued. Safe to call twice, from two supervisors."""
        record = self.redis.hmget(self.keys.job(job_id), ["token", "queue", "capability", "model"])
        if record[0] is None or record[1] is None:
            self.redis.zrem(self.keys.delayed, job_id)
            return Transition(False, reason="missing")
        token, queue = text(record[0]), text(record[1])
        capability, model = text(record[2] or b""), text(record[3] or b"")
        reply = self._promote(
            keys=[self.keys.job(job_id), self.keys.delayed, self.keys.queue(queue), self.keys.waiting(queue)],
            args=[token, attempt_message(queue, job_id, token, capability=capability, model=model)],
        )
        return moved(int(reply[0]) == 1, text(reply[1]) if len(reply) > 1 else JobStatus.QUEUED)

    def finish(
        self,
        job_id: str,
        status: JobStatus,
        reason: str,
        record_json: str,
        *,
        expected_status: JobStatus | None = None,
        expected_token: str = "*",
        notification: Mapping[str, str | int] | None = None,
    ) -> Transition:
        """End a job without success; fenced by status and token when given. ``notification`` (a webhook's
        outbox fields, see ``Outbox.entry_fields``) joins the outbox in the same step: written exactly when
        the transition is."""
        queue = self.redis.hget(self.keys.job(job_id), "queue")
        webhook = [part for field in (notification or {}).items() for part in field]
        reply = self._finish(
            keys=[
                self.keys.job(job_id), self.keys.leases, self.keys.deciding, self.keys.delayed,
                self.keys.deadlines, self.keys.notify(job_id), self.keys.attempts(job_id),
                self.keys.escalations, self.keys.waiting(text(queue)) if queue else self.keys.dummy,
                self.keys.audit, self.keys.resolved(job_id), self.keys.stats, self.keys.outbox,
            ],
            args=["*" if expected_status is None else expected_status.value, expected_token, status.value, reason,
                  record_json, self.job_ttl_s, *webhook],
        )
        if int(reply[0]) != 1:
            return moved(False, text(reply[1]))
        return Transition(True, status, int(reply[1]), int(reply[2]))

    def resolve(
        self, job_id: str, status: JobStatus, record_json: str, *, output: Any = None,
        result: dict[str, Any] | None = None, error: str = "",
    ) -> Transition:
        """Escalated → succeeded (a human's output) or failed (rejected); wakes every waiter."""
        reply = self._resolve(
            keys=[self.keys.job(job_id), self.keys.escalations, self.keys.attempts(job_id),
                  self.keys.notify(job_id), self.keys.resolved(job_id), self.keys.audit],
            args=[status.value, "" if output is None else json.dumps(output),
                  "" if result is None else json.dumps(result), error, record_json, self.job_ttl_s],
        )
        return moved(int(reply[0]) == 1, text(reply[1]) if len(reply) > 1 else status)

    def escalated(self, limit: int = 100) -> list[tuple[str, float]]:
        """The human inbox, oldest first: (job id, escalated at, unix seconds)."""
        rows: list[Any] = self.redis.zrange(self.keys.escalations, 0, limit - 1, withscores=True)
        return [(text(row[0]), float(row[1]) / 1000) for row in rows]

    def wait_resolved(self, job_id: str, timeout_s: float) -> bool:
        key = self.keys.resolved(job_id)
        timeout_s = min(max(timeout_s, 0.001), WAIT_CHUNK_S)
        return self.redis.blmove(key, key, timeout=timeout_s, src="RIGHT", dest="LEFT") is not None  # type: ignore[arg-type]  # Redis takes fractional seconds; the stub says int

    def audit_tail(self, count: int = 50) -> list[dict[str, str]]:
        entries: list[Any] = self.redis.xrevrange(self.keys.audit, count=count) or []
        return [{"id": text(entry_id), **{text(k): text(v) for k, v in (fields or {}).items()}}
                for entry_id, fields in entries]

    def count_rejected(self, reason: str) -> None:
        """Count a submission refused at the edge in the fleet-wide counters (best effort: a refusal is
        reported to its caller whether or not Redis can count it)."""
        try:
            self.redis.hincrby(self.keys.stats, f"rejected|{reason}", 1)
        except redis.RedisError as err:
            log.warning("could not count a rejected submission: %s", err)

    # -- reads --------------------------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord:
        raw = self.redis.hgetall(self.keys.job(job_id))
        if not raw:
            raise JobNotFound(job_id)
        return JobRecord.from_hash({text(k): text(v) for k, v in raw.items()})

    def snapshot(self, job_id: str) -> tuple[JobRecord, list[dict[str, Any]]]:
        """The job record and its history in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.job(job_id))
        pipe.lrange(self.keys.attempts(job_id), 0, -1)
        raw, history = pipe.execute()
        if not raw:
            raise JobNotFound(job_id)
        return JobRecord.from_hash({text(k): text(v) for k, v in raw.items()}), [json.loads(text(x)) for x in history]

    def snapshot_many(self, job_ids: Sequence[str]) -> list[tuple[JobRecord, list[dict[str, Any]]] | None]:
        """``snapshot`` of many jobs in one round trip; ``None`` where a record is gone."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.keys.job(job_id))
            pipe.lrange(self.keys.attempts(job_id), 0, -1)
        replies = pipe.execute()
        out: list[tuple[JobRecord, list[dict[str, Any]]] | None] = []
        for raw, history in zip(replies[0::2], replies[1::2], strict=True):
            if not raw:
                out.append(None)
                continue
            record = JobRecord.from_hash({text(k): text(v) for k, v in raw.items()})
            out.append((record, [json.loads(text(x)) for x in history]))
        return out

    def statuses(self, job_ids: Sequence[str]) -> list[str | None]:
        """The status of each job in one round trip; ``None`` where a record is gone."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(self.keys.job(job_id), "status")
        return [None if v is None else text(v) for v in pipe.execute()]

    def pop_inbox(self, inbox: str, max_count: int, timeout_s: float) -> list[str]:
        """Up to ``max_count`` job ids from a completion inbox (oldest first), blocking up to ``timeout_s``
        (at most ``WAIT_CHUNK_S``) for the first. A job names its inbox in its ``inbox`` field; the
        terminal transitions push its id there."""
        timeout_s = min(max(timeout_s, 0.0), WAIT_CHUNK_S)
        if timeout_s <= 0:
            items = self.redis.rpop(inbox, max_count)
            return [text(x) for x in items or []]
        got = self.redis.blmpop(timeout_s, 1, inbox, direction="RIGHT", count=max_count)
        return [text(x) for x in got[1]] if got else []

    def history(self, job_id: str) -> list[dict[str, Any]]:
        return [json.loads(text(x)) for x in self.redis.lrange(self.keys.attempts(job_id), 0, -1)]

    def wait(self, job_id: str, timeout_s: float) -> bool:
        """Block until the job is terminal (True) or ``timeout_s`` (at most ``WAIT_CHUNK_S``) passes.

        The notify list holds one token once the job is terminal; BLMOVE onto the same list wakes this
        waiter without consuming the token, so every waiter wakes.
        """
        key = self.keys.notify(job_id)
        timeout_s = min(max(timeout_s, 0.001), WAIT_CHUNK_S)
        got = self.redis.blmove(key, key, timeout=timeout_s, src="RIGHT", dest="LEFT")  # type: ignore[arg-type]  # fractional seconds
        return got is not None

    def now_ms(self) -> int:
        """Redis's clock (``TIME``) in milliseconds: the one clock of leases, delays and deadlines."""
        reply: Any = self.redis.time()
        return int(reply[0]) * 1000 + int(reply[1]) // 1000

    def _scored_by(self, key: str, until_ms: float, limit: int) -> list[str]:
        return [text(x) for x in self.redis.zrangebyscore(key, "-inf", until_ms, start=0, num=limit)]

    def due_delayed(self, limit: int = 500) -> list[str]:
        """Waiting jobs whose time to queue again has come, by Redis's clock."""
        return self._scored_by(self.keys.delayed, self.now_ms(), limit)

    def expired_leases(self, limit: int = 500) -> list[tuple[str, str]]:
        """``(job id, token)`` of every lease past its deadline by Redis's clock: its worker is gone."""
        members = self._scored_by(self.keys.leases, self.now_ms(), limit)
        out = []
        for member in members:
            job_id, _, token = member.rpartition(":")
            out.append((job_id, token))
        return out

    def stuck_deciding(self, older_than_s: float, limit: int = 500) -> list[str]:
        """Jobs handed to the supervisor more than ``older_than_s`` ago (Redis's clock) and still deciding."""
        return self._scored_by(self.keys.deciding, self.now_ms() - older_than_s * 1000, limit)

    def overdue(self, limit: int = 500) -> list[str]:
        """Non-terminal jobs past their deadline by Redis's clock."""
        return self._scored_by(self.keys.deadlines, self.now_ms(), limit)

    def orphaned_deliveries(self, older_than_s: float, limit: int = 200) -> list[tuple[str, str, str, str]]:
        """Attempt messages delivered to a consumer more than ``older_than_s`` ago and still unacked:
        (delivery tag, queue, job id, token). A live worker claims within milliseconds of delivery.

        kombu stamps a delivery (in seconds) with the consuming worker's clock, the one time here not taken
        from Redis: ``older_than_s`` must stay well above any skew between a worker's clock and Redis's. A
        reclaim made early by such skew is fenced (the late claim finds its token stale) and costs no call.
        """
        cutoff = self.now_ms() / 1000 - older_than_s
        tags: list[Any] = list(
            self.redis.zrangebyscore(self.keys.kombu_unacked_index, "-inf", cutoff, start=0, num=limit)
        )
        if not tags:
            return []
        raws = self.redis.hmget(self.keys.kombu_unacked, tags)
        out = []
        for tag, raw in zip(tags, raws, strict=True):
            delivered = unacked_pointer(raw)
            if delivered is not None:
                out.append((text(tag), delivered[0], delivered[1], delivered[2]))
        return out

    def vanished_pointers(self, queue: str, older_than_s: float, limit: int = 200) -> list[tuple[str, str]]:
        """Queued jobs (id, token) whose pointer message is neither on ``queue`` nor delivered and unacked.

        kombu's BRPOP takes a message off the list before it records the delivery in ``unacked``; a worker
        killed between the two loses the message, and the job would wait forever. A job is on the list only
        if it was pushed after the list's tail (the next message out), because pushes go to the head. The
        reads are ordered (tail, then candidates, then ``unacked``) so a message moving along that path
        during the check is always seen once; a caller should still confirm a hit on a later check (a
        stalled worker may sit between the pop and the record) before it re-pushes the job.
        """
        waiting = self.keys.waiting(queue)
        bound_ms = self.now_ms() - older_than_s * 1000
        tail = self.redis.lindex(self.keys.queue(queue), -1)
        if tail is not None:
            pointer = envelope_pointer(tail)
            if pointer is None:
                return []
            pipe = self.redis.pipeline(transaction=False)
            pipe.hget(self.keys.job(pointer[0]), "token")
            pipe.zscore(waiting, pointer[0])
            tail_token, tail_pushed_ms = pipe.execute()
            if tail_token is None or text(tail_token) != pointer[1] or tail_pushed_ms is None:
                return []  # a stale message is next out: no bound this time; workers will drain it
            bound_ms = min(bound_ms, float(tail_pushed_ms))
        candidates = [text(x) for x in self.redis.zrangebyscore(waiting, "-inf", f"({bound_ms}", start=0, num=limit)]
        if not candidates:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for job_id in candidates:
            pipe.hmget(self.keys.job(job_id), ["status", "token"])
        states = pipe.execute()
        delivered = {(job_id, token) for _q, job_id, token in
                     filter(None, map(unacked_pointer, self.redis.hvals(self.keys.kombu_unacked)))}
        out = []
        for job_id, (status, token) in zip(candidates, states, strict=True):
            if status is None or text(status) != JobStatus.QUEUED.value:
                continue
            if (job_id, text(token)) not in delivered:
                out.append((job_id, text(token)))
        return out

    def reclaim(self, tag: str, queue: str, job_id: str, token: str, record_json: str) -> Transition:
        """Re-enqueue a job whose message was delivered to a worker that died before claiming it (``tag``
        is kombu's delivery tag, dropped from ``unacked``), or whose message vanished (``tag`` empty)."""
        new_token = str(int(token) + 1)
        reply = self._reclaim(
            keys=[self.keys.job(job_id), self.keys.queue(queue), self.keys.waiting(queue), self.keys.attempts(job_id),
                  self.keys.kombu_unacked_index, self.keys.kombu_unacked],
            args=[token, new_token, attempt_message(queue, job_id, new_token), tag, record_json],
        )
        return moved(int(reply[0]) == 1, text(reply[1]) if len(reply) > 1 else JobStatus.QUEUED)

    def resend_decision(self, job_id: str, token: str) -> None:
        """Re-push a decision message for a job stuck in ``deciding`` (its message was lost with a
        supervisor). Duplicates are harmless: decisions are fenced by token."""
        now_ms = self.now_ms()
        self.redis.lpush(self.keys.supervisor_queue, decide_message(job_id, token))
        self.redis.zadd(self.keys.deciding, {job_id: now_ms}, xx=True)

    def worker_heartbeat(self, member: str) -> None:
        """Mark the worker ``<provider>|<name>`` heard from now (Redis's clock)."""
        self.renew_leases((), 0, presence=member)

    def worker_gone(self, member: str) -> None:
        self.redis.zrem(self.keys.workers, member)

    def live_workers(self, max_age_s: float) -> list[str]:
        """``<provider>|<name>`` of every worker process heard from within ``max_age_s``."""
        cutoff = self.now_ms() - int(max_age_s * 1000)
        self.redis.zremrangebyscore(self.keys.workers, "-inf", cutoff - 3_600_000)
        return [text(x) for x in self.redis.zrangebyscore(self.keys.workers, cutoff, "+inf")]

    def queue_stats(self, queue: str) -> tuple[int, float]:
        """(jobs waiting, age in seconds of the oldest) for a queue: queued or reserved but not started."""
        key = self.keys.waiting(queue)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(key)
        pipe.zrange(key, 0, 0, withscores=True)
        depth, oldest = pipe.execute()
        age_s = max(0.0, (self.now_ms() - oldest[0][1]) / 1000) if oldest else 0.0
        return int(depth), age_s
