"""The Redis key schema: every key toolbag writes is named here and nowhere else.

``<p>`` is the configured prefix (default ``tb:``).

=================================  =======  ==========================================================
key                                type     meaning
=================================  =======  ==========================================================
``<p>job:<id>``                    hash     the job record, source of truth (status, token, plan, ...)
``<p>attempts:<id>``               list     attempt and decision history, JSON entries, append-only
``<p>idem:<caller>:<key>``         string   idempotency key -> job id
``<p>notify:<id>``                 list     one ``done`` token once terminal; waiters BLMOVE it in place
``<p>resolved:<id>``               list     one ``done`` token once a human settled an escalated job
``<p>inbox:<name>``                list     ids of finished jobs that named this inbox (bulk completion feed)
``<p>leases``                      zset     ``<id>:<token>`` -> lease deadline (ms); renewed by heartbeat
``<p>deciding``                    zset     job id -> when its outcome went to the supervisor (ms)
``<p>delayed``                     zset     job id -> when to re-enqueue (ms)
``<p>deadlines``                   zset     job id -> job deadline (ms), for non-terminal jobs
``<p>waiting:<queue>``             zset     job id -> enqueue time (ms): queued or reserved, not started
``<p>escalations``                 zset     job id -> escalation time (ms): the human inbox
``<p>workers``                     zset     ``<provider>|<name>`` -> last heartbeat (ms), once consuming
``<p>audit``                       stream   decisions and tool calls, capped
``<p>deltas:<id>``                 stream   streamed text of the job's attempts, batched, capped, expiring
``<p>apikey:<sha256>``             hash     an HTTP front-door key (by the hash of its secret): caller, tier
``<p>apikeys``                     hash     key id -> sha256 of every live front-door key (for list/revoke)
``<p>apirate:<key id>:<minute>``   string   requests made with a front-door key in one minute (its rpm limit)
``<p>outbox``                      stream   webhook notifications waiting for delivery (toolbag.escalations.outbox)
``<p>outbox:failed``               list     notifications given up on after their retries
``<p>outbox:sender``               string   the lock of the one sender fleet-wide
``<p>consolekey:<sha256>``         hash     a web-console key (by the hash of its secret): name, role
``<p>consolekeys``                 hash     key id -> sha256 of every live console key (for list/revoke)
``<p>console:session-secret``      string   the console's cookie-signing secret when none is configured
``<p>stats``                       hash     fleet-wide job counters (submitted, finished) by tier, status, capability
``<p>policy``                      hash     the live tool policy: version, digest, text (toolbag.gateway)
``<p>health:<model>``              hash     circuit state and EWMAs per model
``<p>rl:<model>:<kind>``           hash     rate-limit state per model: ``state`` hash, ``cc-i``/``cc-b`` zsets
``<p>rl:acct:<provider>:<kind>``   hash     the same for a provider account's limits (toolbag.ratelimit)
``<p>rl:caller:<caller>:<kind>``   hash     the same for one caller's limits
``<p>budget:<scope>:<period>``     hash     spend and reservations (nano-USD) of a budget scope in one day or month
``<p>budget:job:<id>``             hash     a job's budget reservation: what is left, which scopes hold it
``<p>budget:pending``              zset     job id -> when to look at its reservation again (toolbag.budgets)
``<p>vb:held``                     zset     ``<id>:<token>`` -> when held (ms): attempts held by the vendor-batch path
``<p>vb:pending:<prov>:<model>``   hash     custom id -> held attempt (job, token, request): not yet in a batch
``<p>vb:order:<prov>:<model>``     zset     custom id -> when held (ms): the pending collection's order and age
``<p>vb:bytes``                    hash     ``<prov>:<model>`` -> bytes of the requests pending there
``<p>vb:batch:<id>``               hash     one batch of ours: state (creating, submitted), vendor id, times
``<p>vb:items:<id>``               hash     custom id -> held attempt, for the batch's items not yet resolved
``<p>vb:open:<prov>``              zset     batch id -> when to look at it next (ms): the provider's open batches
``<p>vb:lock:<prov>``              string   the lock of the one vendor-batch poller of the provider fleet-wide
=================================  =======  ==========================================================

The replicated mode publishes (an empty message, never stored) on the channel ``<p>replication-barrier``
before it hands out a result: see :mod:`toolbag.store.replication`.

Celery's queues live under the same prefix: kombu's Redis transport runs with ``global_keyprefix`` set to
it, so the queue ``<provider>.<tier>`` is the list ``<p><provider>.<tier>``, the supervisor's queue is
``<p>toolbag.supervisor``, and kombu keeps delivered-but-unacked messages in ``<p>unacked`` (hash) and
``<p>unacked_index`` (zset of delivery times). Two fleets with different prefixes share nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from toolbag.store.messages import KOMBU_UNACKED, KOMBU_UNACKED_INDEX, SUPERVISOR_QUEUE


@dataclass(frozen=True)
class Keys:
    prefix: str = "tb:"

    def queue(self, name: str) -> str:
        """The Redis list kombu keeps the Celery queue ``name`` in."""
        return f"{self.prefix}{name}"

    @property
    def supervisor_queue(self) -> str:
        return self.queue(SUPERVISOR_QUEUE)

    @property
    def kombu_unacked(self) -> str:
        return f"{self.prefix}{KOMBU_UNACKED}"

    @property
    def kombu_unacked_index(self) -> str:
        return f"{self.prefix}{KOMBU_UNACKED_INDEX}"

    @property
    def replication_barrier(self) -> str:
        """A pub/sub channel, not a key: the replicated mode's reads publish on it (no subscriber)."""
        return f"{self.prefix}replication-barrier"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def attempts(self, job_id: str) -> str:
        return f"{self.prefix}attempts:{job_id}"

    def idem(self, caller: str, key: str) -> str:
        return f"{self.prefix}idem:{caller}:{key}"

    def notify(self, job_id: str) -> str:
        return f"{self.prefix}notify:{job_id}"

    def deltas(self, job_id: str) -> str:
        """The job's text deltas as its attempts stream them (toolbag.attempt.deltas)."""
        return f"{self.prefix}deltas:{job_id}"

    def api_key(self, digest: str) -> str:
        return f"{self.prefix}apikey:{digest}"

    @property
    def api_keys(self) -> str:
        return f"{self.prefix}apikeys"

    def api_rate(self, key_id: str, minute: int) -> str:
        """Requests made with one front-door key in one wall-clock minute (fleet-wide rpm)."""
        return f"{self.prefix}apirate:{key_id}:{minute}"

    @property
    def outbox(self) -> str:
        return f"{self.prefix}outbox"

    @property
    def outbox_failed(self) -> str:
        return f"{self.prefix}outbox:failed"

    @property
    def outbox_sender(self) -> str:
        return f"{self.prefix}outbox:sender"

    def console_key(self, digest: str) -> str:
        return f"{self.prefix}consolekey:{digest}"

    @property
    def console_keys(self) -> str:
        return f"{self.prefix}consolekeys"

    @property
    def console_session_secret(self) -> str:
        return f"{self.prefix}console:session-secret"

    def inbox(self, name: str) -> str:
        return f"{self.prefix}inbox:{name}"

    def resolved(self, job_id: str) -> str:
        """Wakes callers who keep waiting through an escalation until a human settles it."""
        return f"{self.prefix}resolved:{job_id}"

    def waiting(self, queue: str) -> str:
        return f"{self.prefix}waiting:{queue}"

    def health(self, model: str) -> str:
        return f"{self.prefix}health:{model}"

    def ratelimit(self, model: str, kind: str) -> str:
        return f"{self.prefix}rl:{model}:{kind}"

    def ratelimit_account(self, provider: str, kind: str) -> str:
        return f"{self.prefix}rl:acct:{provider}:{kind}"

    def ratelimit_caller(self, caller: str, kind: str) -> str:
        return f"{self.prefix}rl:caller:{caller}:{kind}"

    def budget(self, scope: str, period: str) -> str:
        """Spend of one budget scope (``fleet``, ``team:<t>``, ``caller:<c>``) in one period (``d:<date>``,
        ``m:<month>``)."""
        return f"{self.prefix}budget:{scope}:{period}"

    def budget_job(self, job_id: str) -> str:
        return f"{self.prefix}budget:job:{job_id}"

    @property
    def budget_pending(self) -> str:
        return f"{self.prefix}budget:pending"

    @property
    def vb_held(self) -> str:
        """Attempts whose lease a vendor batch holds (toolbag.vendorbatch): the lease sweep leaves them alone."""
        return f"{self.prefix}vb:held"

    def vb_pending(self, provider: str, model: str) -> str:
        return f"{self.prefix}vb:pending:{provider}:{model}"

    def vb_order(self, provider: str, model: str) -> str:
        return f"{self.prefix}vb:order:{provider}:{model}"

    @property
    def vb_bytes(self) -> str:
        return f"{self.prefix}vb:bytes"

    def vb_batch(self, batch_id: str) -> str:
        return f"{self.prefix}vb:batch:{batch_id}"

    def vb_items(self, batch_id: str) -> str:
        return f"{self.prefix}vb:items:{batch_id}"

    def vb_open(self, provider: str) -> str:
        return f"{self.prefix}vb:open:{provider}"

    def vb_lock(self, provider: str) -> str:
        return f"{self.prefix}vb:lock:{provider}"

    @property
    def leases(self) -> str:
        return f"{self.prefix}leases"

    @property
    def deciding(self) -> str:
        return f"{self.prefix}deciding"

    @property
    def delayed(self) -> str:
        return f"{self.prefix}delayed"

    @property
    def deadlines(self) -> str:
        return f"{self.prefix}deadlines"

    @property
    def escalations(self) -> str:
        return f"{self.prefix}escalations"

    @property
    def workers(self) -> str:
        return f"{self.prefix}workers"

    @property
    def audit(self) -> str:
        return f"{self.prefix}audit"

    @property
    def stats(self) -> str:
        """Fleet-wide counters, incremented inside the submit and terminal scripts (see metrics.FleetCounters)."""
        return f"{self.prefix}stats"

    @property
    def policy(self) -> str:
        """The fleet's live tool-permission policy (``version``, ``digest``, ``text``, ``published_ms``)."""
        return f"{self.prefix}policy"

    @property
    def dummy(self) -> str:
        """A key that is never written: fills an optional KEYS slot so scripts keep one signature."""
        return f"{self.prefix}none"
