"""Front-door API keys: created, listed, rotated and revoked here, stored in Redis by the sha256 of their secret.

A key names its caller (whose limits, permissions and audit apply to every job made with it), optionally a
default tier, the tiers it may use (all when none are named), a requests-per-minute limit counted
fleet-wide in Redis, and whether it may offer the model tools of its own (``caller_tools``, by default yes:
toolbag never runs them, the caller does). Only the hash is stored; the secret is shown once, at creation or
rotation. Every replica looks a key up on every request, so a revoked key fails on its next request everywhere.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from toolbag.config import TIERS, Tier
from toolbag.errors import ToolbagError
from toolbag.jobs import as_tier
from toolbag.store.keys import Keys

__all__ = ["ApiKey", "ApiKeyError", "KeyStore", "key_digest"]

KEY_PREFIX = "tbk-"
MAX_RPM = 1_000_000
_CALLER_RE = re.compile(r"^[A-Za-z0-9._@/+-]{1,128}$")
_KEY_ID_RE = re.compile(r"^[0-9a-f]{12}$")


class ApiKeyError(ToolbagError):
    """A key operation that cannot be done; the message says why."""


@dataclass(frozen=True)
class ApiKey:
    """A stored key, without its secret. ``id`` is the first 12 hex digits of the secret's sha256.

    ``tiers``: the tiers it may use (empty: all); ``rpm``: requests per minute, fleet-wide (None: unlimited);
    ``inbox``: it may act on the escalation inbox and read any caller's jobs; ``caller_tools``: it may offer
    the model tools it defines and runs itself."""

    id: str
    caller: str
    tier: Tier | None
    created_ms: int
    tiers: tuple[Tier, ...] = ()
    rpm: int | None = None
    inbox: bool = False
    caller_tools: bool = True

    def allows(self, tier: str) -> bool:
        return not self.tiers or tier in self.tiers

    def public(self) -> dict[str, Any]:
        """What ``keys list`` shows: everything but the secret (which is never stored)."""
        return {"id": self.id, "caller": self.caller, "tier": self.tier, "tiers": list(self.tiers),
                "rpm": self.rpm, "inbox": self.inbox, "caller_tools": self.caller_tools,
                "created_ms": self.created_ms}


def key_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _check(
    caller: str, tier: str | None, tiers: tuple[str, ...], rpm: int | None
) -> tuple[Tier | None, tuple[Tier, ...]]:
    """The key's default tier and tiers, typed; :class:`ApiKeyError` naming what is wrong."""
    if not _CALLER_RE.match(caller):
        raise ApiKeyError("caller must be 1-128 characters of letters, digits and . _ @ / + -")
    for name in (tier, *tiers):
        if name is not None and name not in TIERS:
            raise ApiKeyError(f"unknown tier {name!r}; one of {', '.join(TIERS)}")
    if tier is not None and tiers and tier not in tiers:
        raise ApiKeyError(f"default tier {tier!r} is not among the key's tiers ({', '.join(tiers)})")
    if rpm is not None and not 0 < rpm <= MAX_RPM:
        raise ApiKeyError(f"rpm must be between 1 and {MAX_RPM}")
    return (None if tier is None else as_tier(tier)), tuple(as_tier(name) for name in tiers)


class KeyStore:
    """The fleet's front-door keys in Redis (``Keys.api_key``, ``Keys.api_keys``, ``Keys.api_rate``)."""

    def __init__(self, client: Any, keys: Keys) -> None:
        self._redis = client
        self._keys = keys

    def create(self, caller: str, tier: str | None = None, *, tiers: tuple[str, ...] = (),
               rpm: int | None = None, inbox: bool = False, caller_tools: bool = True) -> tuple[ApiKey, str]:
        """A new key for ``caller``: the stored record and the secret (shown once, never stored)."""
        default_tier, allowed = _check(caller, tier, tiers, rpm)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        digest = key_digest(secret)
        key = ApiKey(digest[:12], caller, default_tier, int(time.time() * 1000), allowed, rpm, inbox, caller_tools)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(self._keys.api_key(digest), mapping=_fields(key))
        pipe.hset(self._keys.api_keys, key.id, digest)
        pipe.execute()
        return key, secret

    def lookup(self, secret: str) -> ApiKey | None:
        """The live key with this secret, or None (unknown or revoked)."""
        if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
            return None
        fields = self._redis.hgetall(self._keys.api_key(key_digest(secret)))
        return _record(fields) if fields else None

    async def alookup(self, aredis: Any, secret: str) -> ApiKey | None:
        """:meth:`lookup` on an asyncio Redis client (the front door's request path holds no thread)."""
        if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
            return None
        fields = await aredis.hgetall(self._keys.api_key(key_digest(secret)))
        return _record(fields) if fields else None

    def list(self) -> list[ApiKey]:
        digests = self._redis.hgetall(self._keys.api_keys)
        found = []
        for digest in digests.values():
            fields = self._redis.hgetall(self._keys.api_key(_text(digest)))
            if fields:
                found.append(_record(fields))
        return sorted(found, key=lambda k: k.created_ms)

    def revoke(self, key_id: str) -> None:
        digest = self._digest_of(key_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(self._keys.api_key(digest))
        pipe.hdel(self._keys.api_keys, key_id)
        pipe.execute()

    def rotate(self, key_id: str) -> tuple[ApiKey, str]:
        """A new secret for the key's caller, tiers and limits; the old secret fails from its next request."""
        digest = self._digest_of(key_id)
        fields = self._redis.hgetall(self._keys.api_key(digest))
        if not fields:
            raise ApiKeyError(f"no key with id {key_id}")
        old = _record(fields)
        key, secret = self.create(old.caller, old.tier, tiers=old.tiers, rpm=old.rpm, inbox=old.inbox,
                                  caller_tools=old.caller_tools)
        self.revoke(key_id)
        return key, secret

    def count_request(self, key: ApiKey, now_s: float | None = None) -> float | None:
        """Count one request against the key's rpm, fleet-wide. Returns None when it is within the limit,
        else the seconds until the current minute ends."""
        if key.rpm is None:
            return None
        now_s = time.time() if now_s is None else now_s
        minute = int(now_s // 60)
        counter = self._keys.api_rate(key.id, minute)
        pipe = self._redis.pipeline(transaction=False)
        pipe.incr(counter)
        pipe.expire(counter, 120)
        made, _ = pipe.execute()
        if int(made) <= key.rpm:
            return None
        return max(1.0, (minute + 1) * 60 - now_s)

    def _digest_of(self, key_id: str) -> str:
        if not _KEY_ID_RE.match(key_id):
            raise ApiKeyError("a key id is 12 hex digits (see `toolbag keys list`)")
        digest = self._redis.hget(self._keys.api_keys, key_id)
        if digest is None:
            raise ApiKeyError(f"no key with id {key_id}")
        return _text(digest)


def _fields(key: ApiKey) -> dict[str, Any]:
    return {"id": key.id, "caller": key.caller, "tier": key.tier or "", "created_ms": key.created_ms,
            "tiers": ",".join(key.tiers), "rpm": "" if key.rpm is None else key.rpm, "inbox": int(key.inbox),
            "caller_tools": int(key.caller_tools)}


def _record(fields: dict[Any, Any]) -> ApiKey:
    values = {_text(k): _text(v) for k, v in fields.items()}
    tiers = tuple(as_tier(t) for t in values.get("tiers", "").split(",") if t)
    rpm = values.get("rpm", "")
    tier = as_tier(values["tier"]) if values["tier"] else None
    return ApiKey(values["id"], values["caller"], tier, int(values["created_ms"]), tiers,
                  int(rpm) if rpm else None, values.get("inbox") == "1",
                  values.get("caller_tools", "1") == "1")  # a key from before the field: allowed, as then


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
