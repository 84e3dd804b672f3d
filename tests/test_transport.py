"""The workers' kombu transport: kombu's Redis transport with one client object per pool (real Redis)."""

from __future__ import annotations

import redis

from toolbag.config import load_config
from workers.app import make_app
from workers.transport import Transport


def test_workers_use_the_transport_and_acks_still_clear_unacked(redis_url: str) -> None:
    config = load_config()
    app = make_app(config, redis_url)
    unacked = config.fleet.key_prefix + "unacked"
    with app.connection_for_read() as conn:
        assert isinstance(conn.transport, Transport)
        channel = conn.default_channel
        first = channel._create_client()
        assert channel._create_client() is first, "one client object, not one per ack"
        assert channel._create_client(asynchronous=True) is not first  # the consumer's BRPOP client stays apart
        queue = conn.SimpleQueue("transport-test")
        queue.put({"n": 1})
        message = queue.get(timeout=5)
        raw = redis.Redis.from_url(redis_url)
        assert raw.hlen(unacked) == 1, "the delivery is recorded through the shared client"
        message.ack()
        assert raw.hlen(unacked) == 0 and raw.zcard(unacked + "_index") == 0
        queue.close()
        channel._pool = None  # what kombu does when it reconnects: a new pool, so a new client on it
        assert channel._create_client() is not first
        assert channel._create_client().connection_pool is channel.pool
