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


def _calls(raw: redis.Redis) -> dict[str, int]:
    stats = raw.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def test_a_delivery_and_its_ack_are_two_commands_each_without_multi(redis_url: str) -> None:
    config = load_config()
    app = make_app(config, redis_url)
    unacked = config.fleet.key_prefix + "unacked"
    raw = redis.Redis.from_url(redis_url)
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue("transport-cost")
        queue.put({"n": 1})
        raw.config_resetstat()
        message = queue.get(timeout=5)
        recorded = _calls(raw)
        assert raw.hlen(unacked) == 1 and raw.zcard(unacked + "_index") == 1
        raw.config_resetstat()
        message.ack()
        acked = _calls(raw)
        assert raw.hlen(unacked) == 0 and raw.zcard(unacked + "_index") == 0
        queue.close()
    assert "multi" not in recorded and "exec" not in recorded
    assert recorded.get("zadd") == 1 and recorded.get("hset") == 1
    assert "multi" not in acked and "exec" not in acked
    assert acked.get("hdel") == 1 and acked.get("zrem") == 1


def test_a_rejected_message_is_restored_to_its_queue_and_forgotten(redis_url: str) -> None:
    config = load_config()
    app = make_app(config, redis_url)
    unacked = config.fleet.key_prefix + "unacked"
    raw = redis.Redis.from_url(redis_url)
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue("transport-reject")
        queue.put({"n": 2})
        queue.get(timeout=5).reject(requeue=True)
        assert raw.hlen(unacked) == 0 and raw.zcard(unacked + "_index") == 0
        again = queue.get(timeout=5)
        assert again.payload == {"n": 2}
        again.reject()
        assert raw.hlen(unacked) == 0 and raw.zcard(unacked + "_index") == 0
        queue.close()
