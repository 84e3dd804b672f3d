"""Assembling the gateway for a process: tools from ``tools.yaml``, the live policy from Redis (seeded from
``policy.yaml``), the audit sinks; and the worker's :class:`~toolbag.gateway.loop.ToolLoop`."""

from __future__ import annotations

from pathlib import Path

import redis

from toolbag.config import Config, ConfigError
from toolbag.gateway.audit import AuditSink, FanoutAudit, JsonlAuditSink, RedisAuditSink
from toolbag.gateway.gateway import Gateway
from toolbag.gateway.live import LivePolicy, PolicyStore
from toolbag.gateway.loop import ToolLoop
from toolbag.gateway.policy import PolicyError, default_policy_path
from toolbag.gateway.registry import ToolRegistry
from toolbag.gateway.settings import GatewaySettings, load_gateway_settings
from toolbag.store import JobStore
from toolbag.store.keys import Keys

__all__ = ["audit_sink", "build_gateway", "worker_caller"]


def audit_sink(settings: GatewaySettings, client: redis.Redis, keys: Keys) -> AuditSink:
    """The Redis stream, plus the JSONL file when one is configured."""
    sinks: list[AuditSink] = [RedisAuditSink(client, keys, settings.audit.stream_maxlen)]
    path = settings.audit_file()
    if path:
        sinks.append(JsonlAuditSink(path, fsync=settings.audit.fsync))
    return sinks[0] if len(sinks) == 1 else FanoutAudit(sinks)


def build_gateway(
    client: redis.Redis,
    keys: Keys,
    *,
    settings: GatewaySettings | None = None,
    policy_path: Path | None = None,
    use_default_policy_path: bool = True,
) -> Gateway:
    """A gateway on Redis. The local policy file (``policy_path``, else ``$TOOLBAG_POLICY`` or
    ``./policy.yaml``) is read now and published if newer than the live one; an invalid file is a
    :class:`ConfigError` (fail fast at start)."""
    settings = settings or load_gateway_settings()
    path = policy_path if policy_path is not None else (default_policy_path() if use_default_policy_path else None)
    live = LivePolicy(PolicyStore(client, keys, settings.audit.stream_maxlen), path)
    try:
        live.sync_file()
    except PolicyError as err:
        raise ConfigError(str(err)) from None
    return Gateway(ToolRegistry(settings), live, audit_sink(settings, client, keys), settings.loop)


def worker_caller(config: Config, store: JobStore) -> ToolLoop:
    """The provider worker's caller: the tool loop over a gateway on the job store's Redis."""
    gateway = build_gateway(store.redis, store.keys)
    # the worker passes the job input's "tools" in AttemptContext.requested_tools: no extra Redis read
    return ToolLoop(gateway, config=config)
