"""The simulated vendors' prompt caches: a stable prefix (the system block) seen again within the cache's
lifetime is read from the cache; the first time it is written. What marks a prefix cacheable, and what each
vendor reports, follows the vendor: Anthropic caches a block marked ``cache_control`` (reporting writes and
reads), OpenAI a prompt sent with ``prompt_cache_key`` (``cache_write_tokens``, ``cached_tokens``), Gemini any
repeated system instruction by itself (implicit caching: reads only)."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time

from .generate import Reply, count_tokens
from .request import SimRequest

CACHE_TTL_S = 300.0  # a cached prefix lives this long after its last use
MIN_CACHED_TOKENS = 64  # the simulator's threshold (vendors ask for 1,024 tokens or more)
MAX_ENTRIES = 10_000


class PromptCache:
    """Prefixes cached per vendor and model. Thread-safe."""

    def __init__(self) -> None:
        self._expires: dict[str, float] = {}
        self._lock = threading.Lock()

    def apply(self, req: SimRequest, reply: Reply) -> Reply:
        """``reply`` with the cache reads and writes of ``req`` (a part of its input tokens)."""
        if not req.cache_prefix:
            return reply
        tokens = min(count_tokens(req.cache_prefix), reply.input_tokens)
        if tokens < MIN_CACHED_TOKENS:
            return reply
        key = hashlib.sha256(f"{req.vendor}\0{req.model}\0{req.cache_prefix}".encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            hit = self._expires.get(key, 0.0) > now
            if len(self._expires) >= MAX_ENTRIES:
                self._expires = {k: t for k, t in self._expires.items() if t > now}
            self._expires[key] = now + CACHE_TTL_S
        if hit:
            return dataclasses.replace(reply, cache_read_tokens=tokens)
        if req.vendor == "gemini":  # implicit caching reports no writes
            return reply
        return dataclasses.replace(reply, cache_write_tokens=tokens)

    def clear(self) -> None:
        with self._lock:
            self._expires.clear()
