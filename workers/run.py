"""Run a Celery worker and keep its exit code.

``Celery.worker_main`` runs the ``celery worker`` command in click's non-standalone mode and drops the code
it ends with, so a worker that died of an unrecoverable error exited 0, and a restart-on-failure manager
left it dead. :func:`run_worker` returns the code instead.
"""

from __future__ import annotations

from celery import Celery
from celery.bin.celery import celery as celery_command
from click.exceptions import Exit


def run_worker(app: Celery, argv: list[str]) -> int:
    """``celery worker`` with ``argv`` (starting with ``"worker"``) on ``app``; the worker's exit code."""
    celery_command.params[0].default = app
    try:
        code = celery_command.main(args=argv, standalone_mode=False)
    except Exit as err:
        code = err.exit_code
    finally:
        celery_command.params[0].default = None
    return code if isinstance(code, int) else 0
