"""Console actions in the audit stream: who did what, through which library call, and how it ended."""

from __future__ import annotations

from toolbag.gateway.audit import AuditError, AuditRecord, RedisAuditSink
from toolbag.store import JobStore

KIND = "console"


def record(store: JobStore, who: str, action: str, *, job_id: str = "", outcome: str = "ok",
           detail: str = "") -> None:
    """Append ``action`` by the console user ``who`` to the audit stream (kind ``console``)."""
    RedisAuditSink(store.redis, store.keys).write(
        AuditRecord(kind=KIND, event=action, agent=who, job_id=job_id, outcome=outcome, detail=detail))


__all__ = ["KIND", "AuditError", "record"]
