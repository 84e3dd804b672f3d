"""An adapter's async SDK clients, in shards of at most :data:`SHARD_CONNECTIONS` connections each.

The async HTTP pool looks at every idle connection on each request and each release (a socket probe through
anyio, microseconds apiece), so a single pool of a thousand connections spends more CPU choosing a connection
than sending the request. Several small pools, each call on the least busy one, keep that cost bounded; the
calls in flight never exceed any shard's size, because the worker's slots bound them in total.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

__all__ = ["SHARD_CONNECTIONS", "ClientShards"]

SHARD_CONNECTIONS = 16

ClientT = TypeVar("ClientT")


class ClientShards(Generic[ClientT]):
    """``make(connections)`` clients, made on first use (on the event loop that uses them)."""

    def __init__(self, make: Callable[[int], ClientT], connections: int) -> None:
        self.count = max(1, -(-connections // SHARD_CONNECTIONS))
        self.per_shard = -(-max(1, connections) // self.count)
        self._make = make
        self._clients: list[ClientT] = []
        self._busy: list[int] = []

    @contextmanager
    def use(self) -> Iterator[ClientT]:
        """The least busy shard's client, for one call."""
        if not self._clients:
            self._clients = [self._make(self.per_shard) for _ in range(self.count)]
            self._busy = [0] * self.count
        index = min(range(self.count), key=self._busy.__getitem__)
        self._busy[index] += 1
        try:
            yield self._clients[index]
        finally:
            self._busy[index] -= 1

    def take_all(self) -> list[ClientT]:
        """Every client made so far (to close them); the shards start empty again."""
        clients, self._clients, self._busy = self._clients, [], []
        return clients
