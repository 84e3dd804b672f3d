"""The Celery application: queues, and the settings the fleet's correctness needs.

JSON only (never pickle), late acks, prefetch 1, strict tier order when consuming, a visibility timeout
above the longest attempt, fast restore of unacked messages (kombu 5.7), no ETA/countdown anywhere (delays
live in the store's delayed set). Every queue has a direct exchange of its own name, bound by its own name.

``celery -A workers.app inspect …`` (and ``control``, ``events``, Flower) load :data:`app`, built on first use
from the same configuration ``toolbag`` reads (``TOOLBAG_CONFIG``, ``TOOLBAG_REDIS_URL``). A Celery worker
started that way, without toolbag's runtime, refuses to start (one line, exit 2) rather than take attempts it
cannot run: workers are started with ``toolbag worker`` and ``toolbag supervisor``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from celery import Celery, bootsteps
from celery.signals import celeryd_init
from kombu.entity import Exchange, Queue

from toolbag.config import TIERS, Config
from toolbag.store.connection import celery_broker
from toolbag.store.messages import SUPERVISOR_QUEUE, queue_name

NO_RUNTIME = ("a Celery worker started without toolbag's runtime cannot run attempts or decisions; start "
              "workers with `toolbag worker --provider NAME` or `toolbag supervisor` (`celery -A workers.app` "
              "is for inspect, control and events)")


def worker_queues(provider: str) -> list[str]:
    """A provider worker's queues, most urgent first (consumed in this strict order)."""
    return [queue_name(provider, tier) for tier in TIERS]


def visibility_timeout_s(config: Config) -> int:
    longest_attempt_s = max(t.total_timeout_s for t in config.tiers.values())
    return int(max(config.fleet.visibility_timeout_s, 2 * longest_attempt_s + 60))


def own_queue(name: str) -> Queue:
    """A queue bound to a direct exchange of its own name by its own name: a publish reaches this queue only."""
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def _refuse_without_runtime(**_: Any) -> None:
    """``celeryd_init``: before a worker consumes, stop it (exit 2) if no toolbag runtime was started."""
    from workers.runtime import current

    try:
        current()
    except RuntimeError:
        print(f"error: {NO_RUNTIME}", file=sys.stderr)
        raise SystemExit(2) from None


ALIVE_EVERY_S = 5.0


def touch(path: Path) -> None:
    try:
        path.touch()
    except OSError:
        pass  # the probe sees the file age and says so; the worker goes on


class ConsumerAlive(bootsteps.StartStopStep):  # type: ignore[misc]
    """Touches the alive file (``toolbag worker --alive-file``) every few seconds from the consumer's own event
    loop (its timer fires only while the loop turns), so the file ages when the consumer is wedged even though
    the process, its threads and ``/metrics`` are fine. ``toolbag alive`` reads its age."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        self.tref: Any = None
        super().__init__(parent, **kwargs)

    def start(self, parent: Any) -> None:
        name = parent.app.conf.get("toolbag_alive_file")
        if not name:
            return
        path = Path(name)
        touch(path)
        self.tref = parent.timer.call_repeatedly(ALIVE_EVERY_S, touch, (path,))

    def stop(self, parent: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None


def make_app(config: Config, broker_url: str, *, task_events: bool = False, alive_file: Path | None = None) -> Celery:
    """The fleet's Celery app. ``task_events`` makes its workers send task events (Flower, exporters);
    ``alive_file`` is touched by the consumer's loop (:class:`ConsumerAlive`)."""
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
    queues = [own_queue(queue_name(p, t)) for p in config.providers for t in TIERS] + [own_queue(SUPERVISOR_QUEUE)]
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
        task_default_exchange=SUPERVISOR_QUEUE,
        task_default_routing_key=SUPERVISOR_QUEUE,
        task_create_missing_queues=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=task_events,
        task_send_sent_event=False,
        worker_enable_remote_control=True,
        broker_pool_limit=64,
        toolbag_alive_file=str(alive_file) if alive_file else None,
    )
    app.steps["consumer"].add(ConsumerAlive)
    import workers.tasks  # noqa: F401  registers the task names on this app
    from workers import signals

    signals.connect()
    celeryd_init.connect(_refuse_without_runtime, weak=False, dispatch_uid="toolbag.refuse_without_runtime")
    return app


_app: Celery | None = None


def __getattr__(name: str) -> Any:
    """``workers.app.app``: the app for ``celery -A workers.app``, built once, on first use."""
    global _app
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _app is None:
        from toolbag.config import ConfigError, load_config, redis_url

        try:
            config = load_config()
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        _app = make_app(config, redis_url())
    return _app
