"""The audit trail of the gateway: every offer, decision and tool call, and every policy publication.

Records go to the Redis stream ``<prefix>audit`` (shared with the fleet's own job records; capped at about
``stream_maxlen`` entries, oldest trimmed) and, optionally, to a JSONL file (appended and fsynced per record),
which is the place for long retention. A sink that cannot be written raises
:class:`AuditError`; the gateway then fails the tool call closed: nothing happens that is not recorded.

Arguments are never stored: a record carries their SHA-256 digest and their names only. Every field is
bounded (:data:`~toolbag.gateway.limits.AUDIT_FIELD_MAX_CHARS`), so no decision can write a huge record.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import redis
from redis.typing import EncodableT, FieldT

from toolbag.errors import ToolbagError
from toolbag.gateway.limits import AUDIT_FIELD_MAX_CHARS, clip
from toolbag.gateway.patterns import matches
from toolbag.store import text
from toolbag.store.keys import Keys

__all__ = [
    "AUDIT_FILE_ENV",
    "AuditError",
    "AuditFilter",
    "AuditRecord",
    "AuditSink",
    "FanoutAudit",
    "JsonlAuditSink",
    "RedisAuditReader",
    "RedisAuditSink",
    "args_digest",
    "new_decision_id",
    "read_jsonl",
]

AUDIT_FILE_ENV = "TOOLBAG_AUDIT_JSONL"
_HOST = f"{socket.gethostname()}:{os.getpid()}"


class AuditError(ToolbagError):
    """An audit record could not be written. The action it describes must not proceed."""


def args_digest(arguments: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical JSON of ``arguments`` (sorted keys, no spaces)."""
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def new_decision_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class AuditRecord:
    """One audit entry. ``kind`` is ``tool`` or ``policy``; ``event`` is ``offer`` (which tools a model was
    offered), ``decision`` (a call was checked: written *before* the tool runs), ``call`` (the tool ran:
    duration and outcome) or ``publish`` (a policy version went live)."""

    kind: str
    event: str
    id: str = ""
    job_id: str = ""
    agent: str = ""
    provider: str = ""
    model: str = ""
    model_id: str = ""
    tool: str = ""
    args_digest: str = ""
    arg_names: str = ""
    decision: str = ""  # allow | deny
    grant: str = ""  # the deciding rule id (a grant, or the deny rule)
    reason: str = ""
    policy_version: int = 0
    policy_digest: str = ""
    step: int = 0
    duration_ms: float = 0.0
    outcome: str = ""  # ok | error | timeout | denied | not_found
    detail: str = ""
    host: str = _HOST
    ts_ms: int = 0

    def fields(self) -> dict[str, str]:
        """Flat string fields (empty strings dropped), stamped with the current time if unset; each at most
        ``AUDIT_FIELD_MAX_CHARS`` characters of valid UTF-8 (an unpaired surrogate is written escaped)."""
        data = asdict(self)
        if not data["ts_ms"]:
            data["ts_ms"] = int(time.time() * 1000)
        return {k: _storable(str(v)) for k, v in data.items() if v != ""}


def _storable(value: str) -> str:
    value = clip(value, AUDIT_FIELD_MAX_CHARS)
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


class AuditSink(Protocol):
    """Somewhere audit records are written. ``write`` raises :class:`AuditError` when it cannot."""

    def write(self, record: AuditRecord) -> None: ...


class RedisAuditSink:
    """Appends to the audit stream (``XADD ... MAXLEN ~ stream_maxlen``)."""

    def __init__(self, client: redis.Redis, keys: Keys, stream_maxlen: int = 100_000) -> None:
        self.client = client
        self.keys = keys
        self.stream_maxlen = stream_maxlen

    def write(self, record: AuditRecord) -> None:
        entry: dict[FieldT, EncodableT] = {name: value for name, value in record.fields().items()}
        try:
            self.client.xadd(self.keys.audit, entry, maxlen=self.stream_maxlen, approximate=True)
        except redis.RedisError as err:
            raise AuditError(f"audit stream {self.keys.audit}: {type(err).__name__}: {err}") from err


class JsonlAuditSink:
    """Appends one JSON line per record to ``path`` and fsyncs it (``fsync=False`` only flushes)."""

    def __init__(self, path: str | Path, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._lock = threading.Lock()

    def write(self, record: AuditRecord) -> None:
        line = (json.dumps(record.fields(), ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
        try:
            with self._lock:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                try:
                    os.write(fd, line)
                    if self.fsync:
                        os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as err:
            raise AuditError(f"audit file {self.path}: {err.strerror or err}") from err


class FanoutAudit:
    """Writes every record to every sink; any failure raises (after trying them all)."""

    def __init__(self, sinks: Sequence[AuditSink]) -> None:
        self.sinks = tuple(sinks)

    def write(self, record: AuditRecord) -> None:
        errors: list[str] = []
        for sink in self.sinks:
            try:
                sink.write(record)
            except AuditError as err:
                errors.append(str(err))
        if errors:
            raise AuditError("; ".join(errors))


# ------------------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class AuditFilter:
    """Which records a query wants. ``agent`` and ``tool`` are globs; ``kinds`` any of (the stream also
    holds the fleet's own records, e.g. ``decision`` and ``completed``); the rest exact; empty = any."""

    agent: str = ""
    tool: str = ""
    decision: str = ""
    job_id: str = ""
    event: str = ""
    kinds: tuple[str, ...] = ()
    since_ms: int = 0
    until_ms: int = 0

    def accepts(self, entry: Mapping[str, str]) -> bool:
        if self.kinds and entry.get("kind", "") not in self.kinds:
            return False
        if self.agent and not matches(entry.get("agent", ""), self.agent):
            return False
        if self.tool and not matches(entry.get("tool", ""), self.tool):
            return False
        if self.job_id and self.job_id not in (entry.get("job_id", ""), entry.get("job", "")):
            return False
        for name in ("decision", "event"):
            wanted = getattr(self, name)
            if wanted and entry.get(name, "") != wanted:
                return False
        ts = int(entry.get("ts_ms", "0") or 0)
        if self.since_ms and ts < self.since_ms:
            return False
        return not (self.until_ms and ts > self.until_ms)


def _decode(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {text(k): text(v) for k, v in raw.items()}


class RedisAuditReader:
    """Reads the audit stream: the newest entries, a follow, or a filtered scan (newest first)."""

    PAGE = 1000

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def tail(self, count: int, flt: AuditFilter | None = None) -> list[tuple[str, dict[str, str]]]:
        """The newest ``count`` matching entries, oldest first."""
        found = list(self.query(flt or AuditFilter(), limit=count))
        found.reverse()
        return found

    def query(self, flt: AuditFilter, limit: int = 100) -> Iterator[tuple[str, dict[str, str]]]:
        """Matching entries, newest first, at most ``limit``; scans only the time window of ``flt``."""
        upper = f"{flt.until_ms}-18446744073709551615" if flt.until_ms else "+"
        lower = f"{flt.since_ms}-0" if flt.since_ms else "-"
        yielded = 0
        while yielded < limit:
            page: Any = self.client.xrevrange(self.keys.audit, max=upper, min=lower, count=self.PAGE)
            if not page:
                return
            for raw_id, raw in page:
                entry_id = text(raw_id)
                entry = _decode(raw)
                if flt.accepts(entry):
                    yield entry_id, entry
                    yielded += 1
                    if yielded >= limit:
                        return
            last_id = text(page[-1][0])
            ms, seq = (int(x) for x in last_id.split("-"))
            if seq > 0:
                upper = f"{ms}-{seq - 1}"
            elif ms > 0:
                upper = f"{ms - 1}-18446744073709551615"
            else:
                return
            if len(page) < self.PAGE:
                return

    def follow(self, after_id: str, block_ms: int = 1000) -> list[tuple[str, dict[str, str]]]:
        """Entries newer than ``after_id`` (``$`` = from now), waiting up to ``block_ms`` for one."""
        reply = self.client.xread({self.keys.audit: after_id}, block=block_ms, count=500)
        out: list[tuple[str, dict[str, str]]] = []
        streams: Any = reply or []
        for _stream, entries in streams:
            for raw_id, raw in entries:
                out.append((text(raw_id), _decode(raw)))
        return out

    def last_id(self) -> str:
        newest: Any = self.client.xrevrange(self.keys.audit, count=1)
        if not newest:
            return "0-0"
        return text(newest[0][0])


def read_jsonl(path: str | Path, flt: AuditFilter, limit: int = 100) -> list[dict[str, str]]:
    """The newest ``limit`` matching records of a JSONL audit file, newest first."""
    matches: list[dict[str, str]] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and flt.accepts(entry):
                matches.append({k: str(v) for k, v in entry.items()})
    matches.reverse()
    return matches[:limit]
