"""Celery signal receivers every toolbag Celery process needs, connected once by :func:`workers.app.make_app`."""

from __future__ import annotations

import os
from typing import Any

from celery.signals import setup_logging, worker_process_shutdown

from toolbag.telemetry import metrics


def _keep_logging(**_: Any) -> None:
    """With a receiver on ``setup_logging``, Celery leaves logging as toolbag configured it (no second handler)."""
    return None


def _child_exit(pid: int | None = None, **_: Any) -> None:
    metrics.mark_dead(pid or os.getpid())


def connect() -> None:
    """Keep toolbag's logging, and forget a dead prefork child's live gauges (multiprocess metrics)."""
    setup_logging.connect(_keep_logging, weak=False)
    if metrics.multiprocess():
        worker_process_shutdown.connect(_child_exit, weak=False)
