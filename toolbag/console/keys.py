"""Console keys: a person's sign-in secret with a role, stored in Redis by the sha256 of the secret.

Same scheme as the front door's API keys (:func:`toolbag.api.keys.key_digest`): only the hash is stored, the
secret is shown once at creation, and a revoked key fails on its next request (every request looks it up).
Keys: ``<p>consolekey:<sha256>`` (hash: id, name, role, created_ms) and ``<p>consolekeys`` (id -> sha256).
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

from toolbag.api.keys import key_digest
from toolbag.errors import ToolbagError
from toolbag.store import text
from toolbag.store.keys import Keys

__all__ = ["KEY_PREFIX", "ROLES", "ConsoleKey", "ConsoleKeyError", "ConsoleKeyStore", "Role", "may"]

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")
KEY_PREFIX = "tbc-"
_NAME_RE = re.compile(r"^[A-Za-z0-9._@+-]{1,64}$")
_KEY_ID_RE = re.compile(r"^[0-9a-f]{12}$")


class ConsoleKeyError(ToolbagError):
    """A console-key operation that cannot be done; the message says why."""


@dataclass(frozen=True)
class ConsoleKey:
    """A stored console key, without its secret. ``id`` is the first 12 hex digits of the secret's sha256."""

    id: str
    name: str
    role: Role
    created_ms: int


def may(role: str, needed: Role) -> bool:
    """Whether ``role`` includes ``needed`` (viewer < operator < admin)."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def record_key(keys: Keys, digest: str) -> str:
    return keys.console_key(digest)


def index_key(keys: Keys) -> str:
    return keys.console_keys


class ConsoleKeyStore:
    """The fleet's console keys in Redis."""

    def __init__(self, client: Any, keys: Keys) -> None:
        self._redis = client
        self._keys = keys

    def create(self, name: str, role: str) -> tuple[ConsoleKey, str]:
        """A new key for the person ``name``: the stored record and the secret (shown once, never stored)."""
        if not _NAME_RE.match(name):
            raise ConsoleKeyError("name must be 1-64 characters of letters, digits and . _ @ + -")
        if role not in ROLES:
            raise ConsoleKeyError(f"role: unknown role {role!r}; one of {', '.join(ROLES)}")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        digest = key_digest(secret)
        key = ConsoleKey(digest[:12], name, role, int(time.time() * 1000))
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(record_key(self._keys, digest),
                  mapping={"id": key.id, "name": name, "role": role, "created_ms": key.created_ms})
        pipe.hset(index_key(self._keys), key.id, digest)
        pipe.execute()
        return key, secret

    def lookup(self, secret: str) -> ConsoleKey | None:
        """The live key with this secret, or None (unknown or revoked)."""
        if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
            return None
        return self.by_digest(key_digest(secret))

    def by_digest(self, digest: str) -> ConsoleKey | None:
        fields = self._redis.hgetall(record_key(self._keys, digest))
        return _record(fields) if fields else None

    def list(self) -> list[ConsoleKey]:
        found = []
        for digest in self._redis.hgetall(index_key(self._keys)).values():
            key = self.by_digest(text(digest))
            if key is not None:
                found.append(key)
        return sorted(found, key=lambda k: k.created_ms)

    def revoke(self, key_id: str) -> ConsoleKey:
        if not _KEY_ID_RE.match(key_id):
            raise ConsoleKeyError("a key id is 12 hex digits (see `toolbag console-keys list`)")
        digest = self._redis.hget(index_key(self._keys), key_id)
        if digest is None:
            raise ConsoleKeyError(f"no console key with id {key_id}")
        key = self.by_digest(text(digest))
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(record_key(self._keys, text(digest)))
        pipe.hdel(index_key(self._keys), key_id)
        pipe.execute()
        if key is None:
            raise ConsoleKeyError(f"no console key with id {key_id}")
        return key


def _record(fields: dict[Any, Any]) -> ConsoleKey:
    values = {text(k): text(v) for k, v in fields.items()}
    role = values.get("role", "viewer")
    return ConsoleKey(values["id"], values["name"], role if role in ROLES else "viewer",
                      int(values["created_ms"]))
