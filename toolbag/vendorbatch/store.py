"""The Redis side of the vendor-batch path: holding an attempt, taking a pending collection into a batch
record, moving a record's state, resolving and closing. Job transitions themselves (complete, end an
attempt) stay with :class:`~toolbag.store.JobStore`; these scripts only move attempts between the places a
vendor batch keeps them (key names: :mod:`toolbag.store.keys`, ``vb:*``)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import redis

from toolbag.lua import source as lua_source
from toolbag.providers.base import ModelRequest
from toolbag.providers.request_json import request_from_dict, request_to_dict
from toolbag.store.jobstore import text
from toolbag.store.keys import Keys

__all__ = ["BatchRecord", "BatchStore", "HeldAttempt", "Taken"]


@dataclass(frozen=True)
class HeldAttempt:
    """An attempt a vendor batch holds: the job, its fencing token, and the request its worker built."""

    custom_id: str
    job_id: str
    token: str
    request: ModelRequest

    def to_json(self) -> str:
        return json.dumps({"job": self.job_id, "token": self.token, "request": request_to_dict(self.request)},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, custom_id: str, raw: str) -> HeldAttempt:
        data = json.loads(raw)
        return cls(custom_id, str(data["job"]), str(data["token"]), request_from_dict(data["request"]))

    @property
    def member(self) -> str:
        """Its member in the held zset (as in the leases zset)."""
        return f"{self.job_id}:{self.token}"


@dataclass(frozen=True)
class Taken:
    """What :meth:`BatchStore.take` took: a new batch record's id and items, and how many it dropped."""

    batch_id: str
    items: list[HeldAttempt]
    dropped: int


@dataclass(frozen=True)
class BatchRecord:
    """One batch of ours (``vb:batch:<id>``)."""

    batch_id: str
    state: str  # creating (taken, vendor call not recorded), submitted, abandoned
    provider: str
    model: str
    vendor_id: str
    created_ms: int
    changed_ms: int
    items: int


@dataclass(frozen=True)
class Pending:
    """A pending collection's size: attempts, request bytes, and when its oldest was held (ms; 0: empty)."""

    count: int
    bytes: int
    oldest_ms: int


class BatchStore:
    """The ``vb:*`` keys; thread-safe as the redis client is."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys
        self._hold = client.register_script(lua_source("vb_hold"))
        self._take = client.register_script(lua_source("vb_take"))
        self._state = client.register_script(lua_source("vb_state"))

    # -- the worker --------------------------------------------------------------------------------

    def hold(self, provider: str, model: str, job_id: str, token: str, request: ModelRequest) -> bool:
        """Move a claimed attempt from its worker's lease into the pending collection of ``provider`` × ``model``;
        False when it is no longer current (then nothing is written)."""
        k = self.keys
        held = HeldAttempt(uuid.uuid4().hex, job_id, token, request)
        reply = self._hold(
            keys=[k.job(job_id), k.leases, k.vb_held, k.vb_pending(provider, model), k.vb_order(provider, model),
                  k.vb_bytes],
            args=[token, held.custom_id, held.to_json(), f"{provider}:{model}", f"vendor-batch:{provider}"],
        )
        return int(reply[0]) == 1

    # -- the poller --------------------------------------------------------------------------------

    def pending(self, provider: str, model: str) -> Pending:
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(k.vb_order(provider, model))
        pipe.hget(k.vb_bytes, f"{provider}:{model}")
        pipe.zrange(k.vb_order(provider, model), 0, 0, withscores=True)
        count, size, oldest = pipe.execute()
        return Pending(int(count), int(size or 0), int(oldest[0][1]) if oldest else 0)

    def take(self, provider: str, model: str, max_requests: int, max_bytes: int) -> Taken:
        """The oldest pending attempts (at most ``max_requests`` and ``max_bytes``, at least one) into a new batch
        record in state ``creating``; attempts whose job moved on are dropped (counted in ``dropped``)."""
        k = self.keys
        batch_id = uuid.uuid4().hex
        reply = self._take(
            keys=[k.vb_pending(provider, model), k.vb_order(provider, model), k.vb_bytes, k.vb_batch(batch_id),
                  k.vb_items(batch_id), k.vb_open(provider), k.vb_held],
            args=[max_requests, max_bytes, f"{provider}:{model}", k.job(""), provider, model, batch_id],
        )
        flat = [text(x) for x in reply[1:]]
        items = [HeldAttempt.from_json(cid, raw) for cid, raw in zip(flat[0::2], flat[1::2], strict=True)]
        return Taken(batch_id, items, int(reply[0]))

    def move(self, batch_id: str, expected: str, new: str, **fields: str | int) -> bool:
        """Compare-and-set the record's state (``changed_ms`` becomes Redis's now)."""
        args: list[Any] = [expected, new]
        for name, value in fields.items():
            args += [name, value]
        return int(self._state(keys=[self.keys.vb_batch(batch_id)], args=args)) == 1

    def due(self, provider: str, now_ms: int, limit: int = 100) -> list[str]:
        """The provider's open batches due for a look."""
        found = self.redis.zrangebyscore(self.keys.vb_open(provider), "-inf", now_ms, start=0, num=limit)
        return [text(x) for x in found]

    def open_ages_s(self, provider: str, now_ms: int) -> list[float]:
        """How long ago each of the provider's batches submitted to its vendor and not ended was submitted."""
        ids = self.redis.zrange(self.keys.vb_open(provider), 0, -1)
        pipe = self.redis.pipeline(transaction=False)
        for batch_id in ids:
            pipe.hmget(self.keys.vb_batch(text(batch_id)), ["state", "changed_ms"])
        return [max(0.0, (now_ms - int(changed)) / 1000) for state, changed in pipe.execute()
                if state is not None and text(state) == "submitted" and changed is not None]

    def later(self, provider: str, batch_id: str, due_ms: int) -> None:
        self.redis.zadd(self.keys.vb_open(provider), {batch_id: due_ms}, xx=True)

    def record(self, batch_id: str) -> BatchRecord | None:
        raw = {text(k): text(v) for k, v in self.redis.hgetall(self.keys.vb_batch(batch_id)).items()}
        if not raw:
            return None
        return BatchRecord(batch_id, raw.get("state", ""), raw.get("provider", ""), raw.get("model", ""),
                           raw.get("vendor_id", ""), int(raw.get("created_ms", 0)), int(raw.get("changed_ms", 0)),
                           int(raw.get("items", 0)))

    def item(self, batch_id: str, custom_id: str) -> HeldAttempt | None:
        raw = self.redis.hget(self.keys.vb_items(batch_id), custom_id)
        return None if raw is None else HeldAttempt.from_json(custom_id, text(raw))

    def items(self, batch_id: str) -> list[HeldAttempt]:
        raw = self.redis.hgetall(self.keys.vb_items(batch_id))
        return [HeldAttempt.from_json(text(cid), text(value)) for cid, value in raw.items()]

    def resolved(self, batch_id: str, held: HeldAttempt) -> None:
        """The item's job transition is written (or was stale): it leaves the batch and the held set."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hdel(self.keys.vb_items(batch_id), held.custom_id)
        pipe.zrem(self.keys.vb_held, held.member)
        pipe.execute()

    def close(self, provider: str, batch_id: str) -> None:
        """Forget a batch whose every item is resolved."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(self.keys.vb_batch(batch_id), self.keys.vb_items(batch_id))
        pipe.zrem(self.keys.vb_open(provider), batch_id)
        pipe.execute()

    def held_count(self) -> int:
        """Attempts the vendor-batch path holds now (pending or in a batch)."""
        return int(self.redis.zcard(self.keys.vb_held))
