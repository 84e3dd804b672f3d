"""What an attempt task reports to Celery when task events are on: its true outcome, not always SUCCESS.

The attempt runner records the outcome in the job store; with events on, the task reads it back (one Redis
read) and returns ``ok`` (task-succeeded) or raises :class:`AttemptFailed` naming the outcome (task-failed),
so Flower and event exporters show what the fleet's metrics count. An expected failure: Celery logs it
without a traceback, and the message is acknowledged as for any ending attempt.
"""

from __future__ import annotations

from typing import Any

from toolbag.errors import ToolbagError
from toolbag.jobs import JobNotFound, JobStatus
from toolbag.store import JobStore


class AttemptFailed(ToolbagError):
    """An attempt ended with a failure outcome (the supervisor decides what happens next)."""


def attempt_outcome(store: JobStore, job_id: str, token: str, worker: str) -> str:
    """``ok``, a failure outcome (``rate_limited``, ``timeout`` …), or what became of the message instead."""
    try:
        record, history = store.snapshot(job_id)
    except JobNotFound:
        return "gone"
    if record.token == token:
        if record.status is JobStatus.SUCCEEDED:
            return "ok"
        if record.status is JobStatus.DECIDING:
            return record.outcome or "failed"
        return record.status.value
    last: dict[str, Any] = history[-1] if history else {}
    if last.get("type") == "attempt" and last.get("worker") == worker:
        return str(last.get("outcome") or "failed")
    if last.get("type") == "decision" and last.get("action") in ("throttle", "spill"):
        return f"handed back ({last['action']})"
    return "superseded"


def report(store: JobStore, job_id: str, token: str, worker: str) -> str:
    """The attempt's outcome as the task's result; :class:`AttemptFailed` when it failed."""
    outcome = attempt_outcome(store, job_id, token, worker)
    if outcome in ("ok", "superseded", "gone") or outcome.startswith("handed back"):
        return outcome
    raise AttemptFailed(outcome)
