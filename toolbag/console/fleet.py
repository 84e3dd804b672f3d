"""The fleet at a glance, read from the fleet's own Redis: no Prometheus server needed.

Queue depth per provider × tier (:func:`toolbag.store.queues.queue_stats`), the fleet-wide job counters
(``<p>stats``), circuit state and latency per model (:class:`toolbag.routing.health.HealthTracker`), rate-limit
headroom (:meth:`toolbag.ratelimit.RateLimiter.headroom`), and the last hour minute by minute from the audit
stream (every completion, terminal status and supervisor decision is one entry there), with latency, time to
first token, cost and attempt outcomes from a bounded sample of the jobs that finished in that hour.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from toolbag.config import Config
from toolbag.ratelimit import RateLimiter
from toolbag.routing.health import HealthTracker, ModelHealth
from toolbag.store import JobStore, text
from toolbag.store.queues import QueueStats, queue_stats

HOUR_MS = 3_600_000
MINUTES = 60
MAX_STREAM_ENTRIES = 20_000  # audit entries read for the hour's series (newest first)
MAX_SAMPLED_JOBS = 300  # finished jobs whose attempts are read for latency, cost and outcomes
WORKER_MAX_AGE_S = 30.0
SERIES = ("succeeded", "failed", "escalated", "rerouted")


@dataclass(frozen=True)
class ModelRow:
    name: str
    provider: str
    health: ModelHealth
    rpm_headroom: float | None
    tpm_headroom: float | None


@dataclass(frozen=True)
class Quantiles:
    p50_s: float | None
    p95_s: float | None
    count: int


@dataclass(frozen=True)
class FleetView:
    queues: list[QueueStats]
    models: list[ModelRow]
    totals: dict[str, int]  # submitted, succeeded, failed, escalated, cancelled, expired, rejected
    series: dict[str, list[int]]  # SERIES name -> per-minute counts over the last hour, oldest first
    latency: Quantiles
    first_token: Quantiles
    outcomes: dict[str, int]  # attempt outcome -> count, over the sampled jobs
    cost_usd: float  # of the sampled jobs
    sampled_jobs: int
    workers: list[str]
    escalations_waiting: int
    now_ms: int
    grafana_url: str | None = None
    per_capability: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def open_circuits(self) -> list[ModelRow]:
        return [m for m in self.models if m.health.state != "closed"]

    @property
    def finished_last_hour(self) -> int:
        return sum(self.series["succeeded"]) + sum(self.series["failed"]) + sum(self.series["escalated"])


def _quantiles(values: list[float]) -> Quantiles:
    if not values:
        return Quantiles(None, None, 0)
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return Quantiles(at(0.5), at(0.95), len(ordered))


def _totals(raw: dict[Any, Any]) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    totals: Counter[str] = Counter()
    per_capability: dict[str, Counter[str]] = {}
    for field_raw, value_raw in raw.items():
        name, value = text(field_raw), int(text(value_raw))
        kind, _, rest = name.partition("|")
        if kind == "submitted":
            _tier, _, capability = rest.partition("|")
            totals["submitted"] += value
            per_capability.setdefault(capability, Counter())["submitted"] += value
        elif kind == "finished":
            _tier, _, rest = rest.partition("|")
            status, _, capability = rest.partition("|")
            totals[status] += value
            per_capability.setdefault(capability, Counter())[status] += value
        elif kind == "rejected":
            totals["rejected"] += value
    return dict(totals), {k: dict(v) for k, v in sorted(per_capability.items())}


def _series(store: JobStore, now_ms: int) -> tuple[dict[str, list[int]], list[str]]:
    """Per-minute counts of the last hour, and the ids of jobs that finished in it (newest first)."""
    start_ms = now_ms - HOUR_MS
    counts = {name: [0] * MINUTES for name in SERIES}
    finished: list[str] = []
    entries: Any = store.redis.xrevrange(store.keys.audit, max="+", min=f"{start_ms}-0", count=MAX_STREAM_ENTRIES)
    for raw_id, raw in entries or []:
        entry = {text(k): text(v) for k, v in raw.items()}
        minute = min(MINUTES - 1, max(0, (int(text(raw_id).split("-")[0]) - start_ms) // 60_000))
        kind = entry.get("kind", "")
        if kind == "completed":
            counts["succeeded"][minute] += 1
            finished.append(entry.get("job", ""))
        elif kind in ("failed", "expired"):
            counts["failed"][minute] += 1
            finished.append(entry.get("job", ""))
        elif kind == "escalated":
            counts["escalated"][minute] += 1
            finished.append(entry.get("job", ""))
        elif kind == "decision":
            try:
                action = json.loads(entry.get("record", "{}")).get("action", "")
            except (ValueError, AttributeError):
                action = ""
            if action == "reroute":
                counts["rerouted"][minute] += 1
    return counts, [job for job in finished if job]


def fleet_view(config: Config, store: JobStore, grafana_url: str | None = None) -> FleetView:
    """One consistent-enough look at the fleet (a few pipelined reads)."""
    now_ms = store.now_ms()
    health = HealthTracker(store.redis, store.keys, config)
    headroom = RateLimiter(config, store.redis, store.keys).headroom()
    models = [ModelRow(name, m.provider, health.snapshot(name), headroom.get((name, "rpm")),
                       headroom.get((name, "tpm"))) for name, m in sorted(config.models.items())]
    totals, per_capability = _totals(store.redis.hgetall(store.keys.stats))
    series, finished = _series(store, now_ms)
    latencies: list[float] = []
    first_tokens: list[float] = []
    outcomes: Counter[str] = Counter()
    cost = 0.0
    sampled = [s for s in store.snapshot_many(finished[:MAX_SAMPLED_JOBS]) if s is not None]
    for record, history in sampled:
        cost += float(record.result_value().get("cost_usd", 0.0) or 0.0)
        for entry in history:
            if entry.get("type") != "attempt":
                continue
            outcomes[str(entry.get("outcome", ""))] += 1
            if entry.get("outcome") == "ok":
                latencies.append(float(entry.get("latency_s") or 0.0))
                if entry.get("time_to_first_token_s") is not None:
                    first_tokens.append(float(entry["time_to_first_token_s"]))
    return FleetView(
        queues=queue_stats(store, sorted(config.providers)), models=models, totals=totals, series=series,
        latency=_quantiles(latencies), first_token=_quantiles(first_tokens), outcomes=dict(outcomes.most_common()),
        cost_usd=round(cost, 6), sampled_jobs=len(sampled), workers=sorted(store.live_workers(WORKER_MAX_AGE_S)),
        escalations_waiting=int(store.redis.zcard(store.keys.escalations)), now_ms=now_ms,
        grafana_url=grafana_url, per_capability=per_capability,
    )
