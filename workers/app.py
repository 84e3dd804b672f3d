"""The Celery application: queues, and the settings the fleet's correctness needs.

JSON only (never pickle), late acks, prefetch 1, strict tier order when consuming, a visibility timeout
above the longest attempt, fast restore of unacked messages (kombu 5.7), no ETA/countdown anywhere (delays
live in the store's delayed set).
"""

from __future__ import annotations

from celery import Celery
from kombu.entity import Queue

from toolbag.config import TIERS, Config
from toolbag.store.connection import celery_broker
from toolbag.store.messages import SUPERVISOR_QUEUE, queue_name


def worker_queues(provider: str) -> list[str]:
    """A provider worker's queues, most urgent first (consumed in this strict order)."""
    return [queue_name(provider, tier) for tier in TIERS]


def visibility_timeout_s(config: Config) -> int:
    longest_attempt_s = max(t.total_timeout_s for t in config.tiers.values())
    return int(max(config.fleet.visibility_timeout_s, 2 * longest_attempt_s + 60))


def make_app(config: Config, broker_url: str) -> Celery:
    broker, sentinel_options = celery_broker(broker_url)  # a Sentinel URL: kombu's Sentinel transport
    app = Celery("toolbag", broker=broker, set_as_current=True)
    vt_s = visibility_timeout_s(config)
    transport_options = {
        "visibility_timeout": vt_s,
        "queue_order_strategy": "priority",
        "unacked_restore_interval": 2,
        "unacked_restore_throttle": 1,
        "socket_timeout": 30,
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
        "health_check_interval": 25,
        "max_connections": 1024,
        "global_keyprefix": config.fleet.key_prefix,  # queues and kombu's bookkeeping live under the fleet's prefix
        **sentinel_options,
    }
    queues = [Queue(queue_name(p, t)) for p in config.providers for t in TIERS] + [Queue(SUPERVISOR_QUEUE)]
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_acks_on_failure_or_timeout=True,
        task_reject_on_worker_lost=False,
        worker_prefetch_multiplier=1,
        # kombu's Redis transports, sharing one client object and riding out a Redis restart or failover
        broker_transport="workers.transport:" + ("SentinelTransport" if sentinel_options else "Transport"),
        broker_channel_error_retry=True,  # Redis full or read-only for a while: reconnect, don't exit
        broker_transport_options=transport_options,
        visibility_timeout=vt_s,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_queues=queues,
        task_default_queue=SUPERVISOR_QUEUE,
        task_create_missing_queues=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_enable_remote_control=True,
        broker_pool_limit=64,
    )
    import workers.tasks  # noqa: F401  registers the task names on this app
    from workers import signals

    signals.connect()

    return app
