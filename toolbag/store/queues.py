"""Queue truth: how many jobs really wait for each provider × tier, and for how long.

A job waits for a provider's tier while it is queued, reserved by a worker but not started (both in the
queue's ``waiting`` zset, scored by enqueue time), or parked in the delayed set (backoff, retry-after or a
rate-limit deferral) with that queue as its next one. The Celery list length alone misses the delayed and
the reserved ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from toolbag.config import TIERS, Tier
from toolbag.store import JobStore
from toolbag.store.messages import queue_name

DELAYED_CHUNK = 1000  # job records read per round trip while grouping the delayed set by queue


@dataclass(frozen=True)
class QueueStats:
    """One provider × tier queue."""

    provider: str
    tier: Tier
    waiting: int  # queued, or reserved by a worker and not started
    delayed: int  # in the delayed set, bound for this queue
    oldest_age_s: float  # how long the longest-waiting of them has waited for its next attempt

    @property
    def queue(self) -> str:
        return queue_name(self.provider, self.tier)

    @property
    def depth(self) -> int:
        """Every job waiting for this queue: ``waiting + delayed``."""
        return self.waiting + self.delayed


def _int(value: bytes | str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def delayed_by_queue(store: JobStore) -> dict[str, tuple[int, int]]:
    """``queue -> (delayed jobs, earliest ms their current wait began)`` over the whole delayed set.

    A delayed job's wait began when it last left a queue or an attempt: the latest of its last enqueue
    (``enqueued_ms``), its last claim (``started_ms``: a rate-limit hand-back happens right after it) and the
    end of its last attempt (``decide_ms``).
    """
    out: dict[str, tuple[int, int]] = {}
    members = store.redis.zrange(store.keys.delayed, 0, -1)
    for start in range(0, len(members), DELAYED_CHUNK):
        chunk = members[start:start + DELAYED_CHUNK]
        pipe = store.redis.pipeline(transaction=False)
        for member in chunk:
            job_id = member.decode() if isinstance(member, bytes) else str(member)
            pipe.hmget(store.keys.job(job_id), ["queue", "decide_ms", "enqueued_ms", "started_ms", "created_ms"])
        for queue_raw, decide_ms, enqueued_ms, started_ms, created_ms in pipe.execute():
            if queue_raw is None:
                continue  # the record expired; the sweeper drops the member
            queue = queue_raw.decode() if isinstance(queue_raw, bytes) else str(queue_raw)
            since_ms = max(_int(decide_ms), _int(enqueued_ms), _int(started_ms)) or _int(created_ms)
            count, oldest_ms = out.get(queue, (0, since_ms))
            out[queue] = (count + 1, min(oldest_ms, since_ms))
    return out


def queue_stats(store: JobStore, providers: Iterable[str]) -> list[QueueStats]:
    """Stats for every ``provider × tier`` queue of ``providers`` (a few round trips, plus one per
    :data:`DELAYED_CHUNK` delayed jobs)."""
    pairs = [(p, t) for p in providers for t in TIERS]
    pipe = store.redis.pipeline(transaction=False)
    for provider, tier in pairs:
        key = store.keys.waiting(queue_name(provider, tier))
        pipe.zcard(key)
        pipe.zrange(key, 0, 0, withscores=True)
    replies = pipe.execute()
    delayed = delayed_by_queue(store)
    now_ms = store.now_ms()
    out = []
    for i, (provider, tier) in enumerate(pairs):
        waiting, oldest = int(replies[2 * i]), replies[2 * i + 1]
        n_delayed, delayed_since_ms = delayed.get(queue_name(provider, tier), (0, 0))
        starts = ([oldest[0][1]] if oldest else []) + ([delayed_since_ms] if n_delayed else [])
        age_s = max(0.0, (now_ms - min(starts)) / 1000) if starts else 0.0
        out.append(QueueStats(provider, tier, waiting, n_delayed, round(age_s, 3)))
    return out
