"""Finding jobs for the Jobs page: a bounded scan of the job records, filtered and newest first.

Job records are hashes ``<p>job:<id>`` with no index of their own, so the console scans at most
:data:`MAX_SCANNED` of them per search (the page says when it stopped early). Filters are exact matches on
capability, skill, status and caller, and a time window on ``created_ms``.
"""

from __future__ import annotations

from dataclasses import dataclass

from toolbag.config import TIERS, Tier
from toolbag.jobs import JobRecord, JobStatus, as_tier
from toolbag.store import JobStore, text

MAX_SCANNED = 5_000
SCAN_BATCH = 500
FIELDS = ("id", "status", "capability", "tier", "caller", "skill", "model", "provider", "created_ms",
          "finished_ms", "attempt", "error")


@dataclass(frozen=True)
class JobFilter:
    capability: str = ""
    skill: str = ""
    status: str = ""
    caller: str = ""
    since_ms: int = 0
    until_ms: int = 0

    def accepts(self, row: dict[str, str]) -> bool:
        for name in ("capability", "skill", "status", "caller"):
            wanted = getattr(self, name)
            if wanted and row.get(name, "") != wanted:
                return False
        created = int(row.get("created_ms") or 0)
        if self.since_ms and created < self.since_ms:
            return False
        return not (self.until_ms and created > self.until_ms)


@dataclass(frozen=True)
class JobRow:
    id: str
    status: JobStatus
    capability: str
    tier: Tier
    caller: str
    skill: str
    model: str
    created_ms: int
    finished_ms: int
    attempts: int
    error: str


@dataclass(frozen=True)
class JobSearch:
    rows: list[JobRow]
    scanned: int
    truncated: bool  # the scan stopped at MAX_SCANNED records


def search_jobs(store: JobStore, flt: JobFilter, limit: int = 100) -> JobSearch:
    """Jobs matching ``flt``, newest first, at most ``limit``."""
    pattern = store.keys.job("*")
    prefix_len = len(store.keys.job(""))
    found: list[JobRow] = []
    scanned = 0
    batch: list[str] = []
    truncated = False

    def flush() -> None:
        pipe = store.redis.pipeline(transaction=False)
        for key in batch:
            pipe.hmget(key, list(FIELDS))
        for key, values in zip(batch, pipe.execute(), strict=True):
            row = {name: text(v) for name, v in zip(FIELDS, values, strict=True) if v is not None}
            if row.get("status") not in STATUSES or row.get("tier") not in TIERS:
                continue  # not a job record
            row.setdefault("id", key[prefix_len:])
            if flt.accepts(row):
                found.append(JobRow(row["id"], JobStatus(row["status"]), row.get("capability", ""),
                                    as_tier(row["tier"]),
                                    row.get("caller", ""), row.get("skill", ""), row.get("model", ""),
                                    int(row.get("created_ms") or 0), int(row.get("finished_ms") or 0),
                                    int(row.get("attempt") or 0), row.get("error", "")))
        batch.clear()

    for raw in store.redis.scan_iter(match=pattern, count=SCAN_BATCH):
        batch.append(text(raw))
        scanned += 1
        if len(batch) >= SCAN_BATCH:
            flush()
        if scanned >= MAX_SCANNED:
            truncated = True
            break
    if batch:
        flush()
    found.sort(key=lambda r: r.created_ms, reverse=True)
    return JobSearch(found[:limit], scanned, truncated)


@dataclass(frozen=True)
class TimelineEntry:
    kind: str  # attempt | decision
    at_ms: int
    data: dict[str, object]


def timeline(record: JobRecord, history: list[dict[str, object]]) -> list[TimelineEntry]:
    """The job's history in order, each entry typed (attempts carry their start time)."""
    out = []
    for entry in history:
        kind = str(entry.get("type", "decision"))
        at = entry.get("started_ms") or entry.get("ended_ms") or 0
        out.append(TimelineEntry(kind, int(at) if isinstance(at, (int, float)) else 0, entry))
    return out


STATUSES = tuple(s.value for s in JobStatus)
