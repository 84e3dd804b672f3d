"""Decision messages orphaned by a supervisor that died holding them: found in kombu's ``unacked`` hash and put
back on the supervisor queue within seconds, instead of kombu restoring them after its visibility timeout
(an hour). Attempt messages have their own fenced path (:meth:`JobStore.orphaned_deliveries`).
"""

from __future__ import annotations

from typing import Any

from toolbag.jobs import JobStatus
from toolbag.store.jobstore import JobStore, text
from toolbag.store.messages import DECIDE_TASK, decide_message, unacked_pointer


def orphaned_decisions(store: JobStore, older_than_s: float, limit: int = 200) -> list[tuple[str, str, str]]:
    """(delivery tag, job id, token) of decision messages delivered more than ``older_than_s`` ago and still
    unacked. As with attempts, the delivery time is the consuming supervisor's clock (kombu's stamp)."""
    cutoff = store.now_ms() / 1000 - older_than_s
    tags: list[Any] = list(store.redis.zrangebyscore(store.keys.kombu_unacked_index, "-inf", cutoff,
                                                     start=0, num=limit))
    if not tags:
        return []
    out = []
    for tag, raw in zip(tags, store.redis.hmget(store.keys.kombu_unacked, tags), strict=True):
        delivered = unacked_pointer(raw, DECIDE_TASK)
        if delivered is not None:
            out.append((text(tag), delivered[1], delivered[2]))
    return out


def reclaim_decision(store: JobStore, tag: str, job_id: str, token: str) -> bool:
    """Drop the orphaned delivery ``tag`` and, if the job still waits for that decision, push the decision
    message again (True). A supervisor that was merely slow and still decides is harmless: decisions are
    fenced by token, so the second one finds the job moved on."""
    status, current = store.redis.hmget(store.keys.job(job_id), ["status", "token"])
    again = status is not None and text(status) == JobStatus.DECIDING.value and text(current) == token
    pipe = store.redis.pipeline(transaction=True)
    pipe.zrem(store.keys.kombu_unacked_index, tag)
    pipe.hdel(store.keys.kombu_unacked, tag)
    if again:
        pipe.lpush(store.keys.supervisor_queue, decide_message(job_id, token))
    removed = pipe.execute()[0]
    return again and bool(removed)
