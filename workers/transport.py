"""kombu's Redis transport, with one change: acks and delivery records reuse one Redis client per pool.

kombu builds a new ``redis.Redis`` for every ack and every delivery it records (``Channel._create_client``
through ``conn_or_acquire``). redis-py's constructor fills a table of a few hundred response callbacks each
time; a profile of a busy worker put about an eighth of its CPU there, on the one thread that consumes for
every pool thread. The client object is thread-safe and holds no connection of its own, so sharing it
changes nothing else: same pool, same connections, same commands.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _shared_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the consumer's own BRPOP client: kombu caches it already
            return super()._create_client(asynchronous=True)
        client = self._shared_client
        if client is None or client.connection_pool is not self.pool:  # the pool is rebuilt on reconnect
            client = self._shared_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel
