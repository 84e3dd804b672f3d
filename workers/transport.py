"""kombu's Redis transports (plain and Sentinel), with the changes a fleet that outlives Redis needs.

1. Acks and delivery records reuse one Redis client per pool. kombu builds a new ``redis.Redis`` for every
   ack and every delivery it records (``Channel._create_client`` through ``conn_or_acquire``). redis-py's
   constructor fills a table of a few hundred response callbacks each time; a profile of a busy worker put
   about an eighth of its CPU there. The client object is thread-safe and holds no connection of its own, so
   sharing it changes nothing else: same pool, same connections, same commands.
2. An attempt that ends after its broker connection was dropped (Redis restarted, or failed over) still
   acks: its channel's transport is closed then, and kombu would read the address from a connection that is
   gone (``AttributeError: 'NoneType' object has no attribute 'hostname'``), an error Celery does not
   expect and dies of. The shared client's pool reconnects by itself, so the ack goes through it; with no
   client yet, the ack fails as a connection error (logged; the message is restored or reclaimed).
3. A delivery's record (``unacked_index`` then ``unacked``) and its ack (``unacked`` then ``unacked_index``)
   go out as one pipeline without MULTI/EXEC: two commands instead of four each. Atomicity is not needed
   because of the order: a record or an ack cut in half leaves at most an index entry without its message,
   which kombu's restore drops (it finds no message to restore) and the supervisor's orphan check skips; the
   message of a delivery recorded only in the index is found by the vanished-pointer check, as one popped by a
   worker killed before any record. The restore itself keeps kombu's WATCH/MULTI transaction, and an ack's
   HDEL still aborts a restore racing it (it writes the watched hash).
4. Redis refusing writes for a while — full (``OOM``, under ``noeviction``), a replica after a failover
   (``READONLY``), loading its data, no master — counts as a connection error: Celery logs it, reconnects
   with back-off and carries on, instead of an unrecoverable error that ends the process.
"""

from __future__ import annotations

from time import time
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.json import dumps

from toolbag.store.connection import UNAVAILABLE_ERRORS


class _SharedClient:
    """Mixin for kombu's Redis channels: change 1 and 2 above."""

    _shared_client: Any = None
    connection: Any
    pool: Any

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the consumer's own BRPOP client: kombu caches it already
            return super()._create_client(asynchronous=True)  # type: ignore[misc]
        client = self._shared_client
        if getattr(self.connection, "client", None) is None:  # this channel's connection was dropped
            if client is None:
                raise redis.ConnectionError("the broker connection of this channel was closed")
            return client
        if client is None or client.connection_pool is not self.pool:  # the pool is rebuilt on reconnect
            client = self._shared_client = super()._create_client()  # type: ignore[misc]
        return client


class QoS(kombu_redis.QoS):
    """kombu's Redis ack emulation with change 3 above."""

    def append(self, message: Any, delivery_tag: Any) -> None:
        delivery = message.delivery_info
        with self.channel.conn_or_acquire() as client:
            pipe = client.pipeline(transaction=False)
            pipe.zadd(self.unacked_index_key, {delivery_tag: time()})
            record = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
            pipe.hset(self.unacked_key, delivery_tag, record)
            pipe.execute()
        virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag: Any) -> None:
        self._forget(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        if requeue:
            self.restore_by_tag(delivery_tag, leftmost=True)
        else:
            self._forget(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def _forget(self, delivery_tag: Any) -> None:
        """The message first, then its index entry: cut in half, an ack leaves only an index entry (harmless)."""
        with self.channel.conn_or_acquire() as client:
            pipe = client.pipeline(transaction=False)
            pipe.hdel(self.unacked_key, delivery_tag)
            pipe.zrem(self.unacked_index_key, delivery_tag)
            pipe.execute()


_UNAVAILABLE = tuple(e for e in UNAVAILABLE_ERRORS if not issubclass(e, kombu_redis.Transport.connection_errors))


class Channel(_SharedClient, kombu_redis.Channel):
    QoS = QoS


class Transport(kombu_redis.Transport):
    Channel = Channel
    connection_errors = kombu_redis.Transport.connection_errors + _UNAVAILABLE


class SentinelChannel(_SharedClient, kombu_redis.SentinelChannel):
    QoS = QoS


class SentinelTransport(kombu_redis.SentinelTransport):
    """kombu's Sentinel transport: the master named in the transport options, found again after a failover."""

    Channel = SentinelChannel
    connection_errors = kombu_redis.SentinelTransport.connection_errors + _UNAVAILABLE
