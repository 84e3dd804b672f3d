"""Front-door API keys: created, listed and revoked here, stored in Redis by the sha256 of their secret.

A key names its caller (whose limits, permissions and audit apply) and optionally a default tier. Only the
hash is stored; the secret is shown once, at creation. Every replica looks a key up on every request, so a
revoked key fails on its next request everywhere.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from toolbag.config import TIERS
from toolbag.errors import ToolbagError
from toolbag.store.keys import Keys

__all__ = ["ApiKey", "ApiKeyError", "KeyStore", "key_digest"]

KEY_PREFIX = "tbk-"
_CALLER_RE = re.compile(r"^[A-Za-z0-9._@/+-]{1,128}$")
_KEY_ID_RE = re.compile(r"^[0-9a-f]{12}$")


class ApiKeyError(ToolbagError):
    """A key operation that cannot be done; the message says why."""


@dataclass(frozen=True)
class ApiKey:
    """A stored key, without its secret. ``id`` is the first 12 hex digits of the secret's sha256."""

    id: str
    caller: str
    tier: str | None
    created_ms: int


def key_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    """The fleet's front-door keys in Redis (``Keys.api_key``, ``Keys.api_keys``)."""

    def __init__(self, client: Any, keys: Keys) -> None:
        self._redis = client
        self._keys = keys

    def create(self, caller: str, tier: str | None = None) -> tuple[ApiKey, str]:
        """A new key for ``caller``: the stored record and the secret (shown once, never stored)."""
        if not _CALLER_RE.match(caller):
            raise ApiKeyError("caller must be 1-128 characters of letters, digits and . _ @ / + -")
        if tier is not None and tier not in TIERS:
            raise ApiKeyError(f"unknown tier {tier!r}; one of {', '.join(TIERS)}")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        digest = key_digest(secret)
        key = ApiKey(digest[:12], caller, tier, int(time.time() * 1000))
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(self._keys.api_key(digest),
                  mapping={"id": key.id, "caller": caller, "tier": tier or "", "created_ms": key.created_ms})
        pipe.hset(self._keys.api_keys, key.id, digest)
        pipe.execute()
        return key, secret

    def lookup(self, secret: str) -> ApiKey | None:
        """The live key with this secret, or None (unknown or revoked)."""
        if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
            return None
        fields = self._redis.hgetall(self._keys.api_key(key_digest(secret)))
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
        if not _KEY_ID_RE.match(key_id):
            raise ApiKeyError("a key id is 12 hex digits (see `toolbag keys list`)")
        digest = self._redis.hget(self._keys.api_keys, key_id)
        if digest is None:
            raise ApiKeyError(f"no key with id {key_id}")
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(self._keys.api_key(_text(digest)))
        pipe.hdel(self._keys.api_keys, key_id)
        pipe.execute()


def _record(fields: dict[Any, Any]) -> ApiKey:
    values = {_text(k): _text(v) for k, v in fields.items()}
    return ApiKey(values["id"], values["caller"], values["tier"] or None, int(values["created_ms"]))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
