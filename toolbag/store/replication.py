"""The replicated mode: a write the fleet acknowledges is on a replica too (Redis ``WAIT``), so a failover to
that replica keeps it. See docs/deploy.md for what each mode guarantees.

``WAIT`` counts the replicas that have every write made so far *on the connection it runs on*, so the write
and its ``WAIT`` go down one pipeline (one connection). A reader that must not return what a failover could
take back (a job's result) runs :func:`barrier`: a ``PUBLISH`` of its own travels the replication stream
after everything it read, so once a replica has it, the replica has what was read too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from toolbag.store.connection import RedisUnavailable


class NotReplicated(RedisUnavailable):
    """No replica confirmed the write within the bound: it may be lost in a failover. Retryable."""


@dataclass(frozen=True)
class Replication:
    """``replicas`` 0: the fast mode (no waiting). Otherwise writes wait for that many replicas, up to
    ``timeout_ms``."""

    replicas: int = 0
    timeout_ms: int = 1000

    @classmethod
    def of(cls, durability: str, timeout_ms: int) -> Replication:
        """From the fleet settings ``redis_durability`` (``fast`` | ``replicated``) and ``replica_ack_timeout_ms``."""
        return cls(1 if durability == "replicated" else 0, timeout_ms)


def run_replicated(client: redis.Redis, replication: Replication,
                   queue: Callable[[Any], None]) -> tuple[list[Any], bool]:
    """Run the commands ``queue`` adds to a pipeline, then ``WAIT`` on the same connection: their replies, and
    whether enough replicas confirmed within the bound (the writes were made on the master either way)."""
    pipe = client.pipeline(transaction=False)
    queue(pipe)
    pipe.wait(replication.replicas, replication.timeout_ms)
    *replies, acked = pipe.execute()
    return replies, int(acked) >= replication.replicas


def not_replicated(replication: Replication, what: str) -> NotReplicated:
    return NotReplicated(f"no replica confirmed {what} within {replication.timeout_ms} ms; retry")


def barrier(client: redis.Redis, channel: str, replication: Replication) -> None:
    """Return once a replica has everything this client has read so far; :class:`NotReplicated` otherwise."""
    if replication.replicas:
        _replies, confirmed = run_replicated(client, replication, lambda pipe: pipe.publish(channel, b""))
        if not confirmed:
            raise not_replicated(replication, "what this client read")
