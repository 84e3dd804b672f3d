"""The two Celery task names. Each is a thin pointer handler: the work lives in the runtime."""

from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task(name="toolbag.attempt", bind=True, ignore_result=True, acks_late=True)
def attempt(self: Any, job_id: str, token: str) -> None:
    """Run one attempt of a job (provider workers): on this thread, or handed to the worker's event loop."""
    from workers.runtime import current

    info = self.request.delivery_info or {}
    current().attempt(job_id, str(token), str(info.get("routing_key") or ""))


@shared_task(name="toolbag.decide", bind=True, ignore_result=True, acks_late=True)
def decide(self: Any, job_id: str, token: str) -> None:
    """Decide what happens after a non-ok outcome (supervisor)."""
    from workers.runtime import current

    current().supervisor.decide(job_id, str(token))
