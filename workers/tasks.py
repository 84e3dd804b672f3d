"""The two Celery task names. Each is a thin pointer handler: the work lives in the runtime."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from workers.outcome import AttemptFailed, report


@shared_task(name="toolbag.attempt", bind=True, ignore_result=True, acks_late=True, throws=(AttemptFailed,))
def attempt(self: Any, job_id: str, token: str) -> str | None:
    """Run one attempt of a job (provider workers): on this thread, or handed to the worker's event loop.
    With task events on, the task waits for its attempt and its outcome is the task's."""
    from workers.runtime import current

    info = self.request.delivery_info or {}
    runtime = current()
    handed = runtime.attempt(job_id, str(token), str(info.get("routing_key") or ""))
    if not self.app.conf.worker_send_task_events:
        return None
    if handed is not None:
        handed.result()
    runner = runtime.attempts
    return report(runner.store, job_id, str(token), runner.worker_name)


@shared_task(name="toolbag.decide", bind=True, ignore_result=True, acks_late=True)
def decide(self: Any, job_id: str, token: str) -> None:
    """Decide what happens after a non-ok outcome (supervisor)."""
    from workers.runtime import current

    current().supervisor.decide(job_id, str(token))
