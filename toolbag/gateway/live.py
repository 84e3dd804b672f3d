"""The fleet's live policy: ``policy.yaml`` published to Redis with a version, checked on every tool call.

How a revocation reaches every worker on its next tool call, without a restart:

1. Edit ``policy.yaml`` (bump ``version``), review, then ``toolbag permissions publish`` — or just deploy the
   file: a worker that sees its local file change (or starts with a newer one) publishes it too.
2. Publishing is one Lua script: the Redis hash ``<prefix>policy`` gets the new version, digest and text,
   and a ``publish`` record goes to the audit stream. Lower versions are refused (a stale host cannot roll a
   revoke back); the same version with other text is refused (bump it); ``--force`` rolls back on purpose.
3. Before every tool call a worker reads the live digest (one ``HGET``); when it differs from the one it
   holds, it loads and parses the new text. Offering tools to a model may use a copy up to a second old —
   the call itself is always checked against the live digest.

If Redis cannot be read, :meth:`LivePolicy.current` raises :class:`PolicyError` and the call is denied.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from toolbag.gateway.policy import Policy, PolicyError, load_policy_file, parse_policy
from toolbag.lua import script as lua_script
from toolbag.store import text as _s
from toolbag.store.keys import Keys

__all__ = ["LivePolicy", "PolicyStore", "PublishResult"]

log = logging.getLogger("toolbag.gateway")


@dataclass(frozen=True)
class PublishResult:
    """``status``: ``published``, ``unchanged``, ``older`` (refused) or ``conflict`` (refused)."""

    status: str
    live_version: int
    live_digest: str

    @property
    def ok(self) -> bool:
        return self.status in ("published", "unchanged")


class PolicyStore:
    """The Redis copy of the policy (hash ``<prefix>policy``)."""

    def __init__(self, client: redis.Redis, keys: Keys, audit_maxlen: int = 100_000) -> None:
        self.client = client
        self.keys = keys
        self.audit_maxlen = audit_maxlen
        self._publish = client.register_script(lua_script("policy_publish"))

    def publish(self, policy: Policy, *, force: bool = False, who: str | None = None) -> PublishResult:
        """Make ``policy`` live (see the module docstring for the version rules)."""
        if not policy.text:
            raise PolicyError("refusing to publish an empty policy (write a policy.yaml with version and rules)")
        author = who or f"{os.environ.get('USER', '?')}@{socket.gethostname()}:{os.getpid()}"
        reply = self._publish(
            keys=[self.keys.policy, self.keys.audit],
            args=[policy.version, policy.digest, policy.text, policy.source, "1" if force else "0",
                  self.audit_maxlen, author],
        )
        status, version, digest = reply
        return PublishResult(_s(status), int(version), _s(digest))

    def digest(self) -> str | None:
        """The live digest (one round trip), or None when nothing was published."""
        raw = self.client.hget(self.keys.policy, "digest")
        return None if raw is None else _s(raw)

    def load(self) -> Policy | None:
        """The live policy, or None when nothing was published."""
        raw = self.client.hmget(self.keys.policy, ["digest", "text", "source"])
        digest, text, source = raw
        if digest is None or text is None:
            return None
        policy = parse_policy(_s(text), f"redis:{self.keys.policy} (from {_s(source) if source else '?'})")
        if policy.digest != _s(digest):
            raise PolicyError(f"redis:{self.keys.policy}: text and digest disagree; publish the policy again")
        return policy

    def info(self) -> dict[str, str]:
        """The live policy's metadata (no text)."""
        raw = self.client.hgetall(self.keys.policy)
        return {_s(k): _s(v) for k, v in raw.items() if _s(k) != "text"}


class LivePolicy:
    """The policy to decide with, now. Thread-safe; one per process.

    With a ``store``, Redis holds the live policy and ``path`` (if any) is watched and published when it
    changes. Without a store (a CLI on a laptop), the file alone is the policy, re-read when it changes.
    No policy anywhere means the empty policy: everything denied.
    """

    def __init__(self, store: PolicyStore | None, path: Path | None) -> None:
        self.store = store
        self.path = path
        self._lock = threading.Lock()
        self._policy: Policy | None = None
        self._checked_at = 0.0
        self._file_stamp: tuple[int, int, int] | None = None
        self._file_policy: Policy | None = None
        self._warned: set[str] = set()

    def _file_changed(self) -> bool:
        if self.path is None:
            return False
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = (0, 0, 0)
        if stamp == self._file_stamp:
            return False
        self._file_stamp = stamp
        return True

    def _reload_file(self, strict: bool = False) -> None:
        assert self.path is not None
        try:
            self._file_policy = load_policy_file(self.path)
        except PolicyError as err:
            if strict or (self._file_policy is None and self.store is None):
                raise
            log.error("policy file not used (the live policy still applies): %s", err)
            return
        if self.store is None:
            return
        result = self.store.publish(self._file_policy, who=f"worker@{socket.gethostname()}:{os.getpid()}")
        if result.status == "published":
            log.warning("published %s (version %d) as the fleet's live policy", self.path, self._file_policy.version)
        elif not result.ok and self._file_policy.digest not in self._warned:
            self._warned.add(self._file_policy.digest)
            log.warning(
                "local %s (version %d) not published: %s; live is version %d",
                self.path, self._file_policy.version, result.status, result.live_version,
            )

    def sync_file(self) -> None:
        """Read the local file now (and publish it if newer). Raises :class:`PolicyError` if it is missing
        or invalid (a process refuses to start on a bad policy file)."""
        with self._lock:
            if self.path is not None:
                self._file_stamp = None
                self._file_changed()
                if self._file_stamp != (0, 0, 0):
                    self._reload_file(strict=True)
                else:
                    raise PolicyError(f"{self.path}: no such policy file")

    def current(self, max_age_s: float = 0.0) -> Policy:
        """The live policy; ``max_age_s > 0`` accepts a copy checked that recently. Raises
        :class:`PolicyError` when it cannot be known (Redis unreachable, bad live text)."""
        with self._lock:
            try:
                if self._file_changed():
                    self._reload_file()
                now = time.monotonic()
                if self._policy is not None and max_age_s > 0 and now - self._checked_at < max_age_s:
                    return self._policy
                if self.store is None:
                    self._policy = self._file_policy or Policy.empty(str(self.path or "<no policy file>"))
                else:
                    digest = self.store.digest()
                    if digest is None:
                        self._policy = Policy.empty("<no policy published>")
                    elif self._policy is None or self._policy.digest != digest:
                        loaded = self.store.load()
                        self._policy = loaded or Policy.empty("<no policy published>")
                self._checked_at = now
                return self._policy
            except redis.RedisError as err:
                raise PolicyError(f"live policy unavailable: {type(err).__name__}: {err}") from err
