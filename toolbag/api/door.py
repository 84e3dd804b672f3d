"""What every front-door endpoint shares: the key, the admission checks, the body, the submit, the job's feed.

A request is admitted in this order: a live key (401), a tier the key may use (403), the key's requests per
minute, counted fleet-wide in Redis (429 with ``retry-after``), the tier's queue depth (429 with
``retry-after``, counted in ``toolbag_api_overload_total``). Only then is a job written. The key's caller is
the caller of every job it submits (its limits, permissions and audit records).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, replace
from typing import Any

import redis
import redis.asyncio as aioredis
from pydantic import BaseModel, ValidationError
from redis.sentinel import SentinelConnectionPool
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from toolbag.api.errors import ApiError
from toolbag.api.keys import ApiKey, KeyStore
from toolbag.api.stream import JobFeed
from toolbag.api.wire import field_path
from toolbag.attempt.request import CALLER_TOOLS_FIELD
from toolbag.client import Client, Job, JobRequest
from toolbag.config import TIERS, ConfigError, RoutePolicy, Tier, TierConfig
from toolbag.jobs import JobResult, SubmitError, as_tier
from toolbag.store import NewJob
from toolbag.store.connection import async_redis_client
from toolbag.store.messages import queue_name
from toolbag.telemetry import metrics

__all__ = ["TIER_HEADER", "Door", "Submitted"]

TIER_HEADER = "x-toolbag-tier"
MAX_BODY_BYTES_OVER_INPUT = 64 * 1024  # envelope allowance on top of fleet.max_input_bytes
DRAIN_FACTOR = 8  # an oversized body is read and dropped up to this many times the limit before the 413
MAX_REDIS_CONNECTIONS = 4096  # each open stream holds one during its XREAD BLOCK; past this, reads queue up
QUEUE_RETRY_AFTER_S = 5.0  # what a 429 for a full queue tells the caller to wait

log = logging.getLogger("toolbag.api")


@dataclass(frozen=True)
class Submitted:
    """A job the front door submitted, with what the endpoints need about it."""

    job: Job
    capability: str
    tier: Tier
    tier_config: TierConfig
    policy: RoutePolicy  # the route's (what the supervisor does after a failed attempt)


_SSL_OPTIONS = ("ssl_keyfile", "ssl_certfile", "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_data", "ssl_check_hostname")


def async_redis(client: redis.Redis) -> aioredis.Redis:
    """An asyncio client to the same Redis as ``client`` (the relay's blocking reads hold no thread), for a
    store made from a plain client rather than a URL."""
    sync_pool = client.connection_pool
    if isinstance(sync_pool, SentinelConnectionPool):
        raise ConfigError("the front door needs a store made with JobStore.from_url to follow Sentinel")
    kwargs = sync_pool.connection_kwargs
    options: dict[str, Any] = {k: kwargs[k] for k in ("host", "port", "db", "username", "password") if k in kwargs}
    if "path" in kwargs:
        options = {"connection_class": aioredis.UnixDomainSocketConnection, "path": kwargs["path"],
                   "db": kwargs.get("db", 0), "username": kwargs.get("username"), "password": kwargs.get("password")}
    if issubclass(sync_pool.connection_class, redis.SSLConnection):
        options["connection_class"] = aioredis.SSLConnection
        options.update({k: kwargs[k] for k in _SSL_OPTIONS if k in kwargs})
    pool = aioredis.BlockingConnectionPool(max_connections=MAX_REDIS_CONNECTIONS, timeout=30,
                                           socket_connect_timeout=5, health_check_interval=25, **options)
    return aioredis.Redis(connection_pool=pool)


class Door:
    """The front door's shared state: one :class:`Client` (config, store, skills) and an asyncio Redis."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.config = client.config
        self.keys = KeyStore(client.store.redis, client.store.keys)
        url = client.store.url
        self.aredis = (async_redis_client(url, max_connections=MAX_REDIS_CONNECTIONS, socket_timeout_s=None)
                       if url else async_redis(client.store.redis))
        self._batch_client = Client(client.config, store=client.store)
        self._batch_lock = threading.Lock()
        self.max_body_bytes = self.config.fleet.max_input_bytes + MAX_BODY_BYTES_OVER_INPUT

    # -- keys and admission ---------------------------------------------------------------------------

    async def authenticate(self, request: Request) -> ApiKey:
        header = request.headers.get("authorization", "")
        secret = header[7:].strip() if header[:7].lower() == "bearer " else request.headers.get("x-api-key", "")
        if not secret:
            raise ApiError(401, "no API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`")
        key = await self.keys.alookup(self.aredis, secret)
        if key is None:
            raise ApiError(401, "invalid API key (unknown or revoked)")
        return key

    def tier_for(self, key: ApiKey, asked: str | None, field: str = TIER_HEADER) -> str | None:
        """The tier a request runs on (``asked``, else the key's default, else the skill's or standard), and
        403 when the key may not use it."""
        tier = asked or key.tier
        if tier is not None and tier not in TIERS:
            raise ApiError(400, f"{field}: unknown tier {tier!r}; one of {', '.join(TIERS)}", param=field)
        effective = tier or "standard"
        if not key.allows(effective):
            raise ApiError(403, f"{field}: this key may not use the {effective} tier (allowed: "
                                f"{', '.join(key.tiers)})", param=field)
        return tier

    @staticmethod
    def check_caller_tools(key: ApiKey, job_input: Any, field: str) -> None:
        """403 naming ``field`` when the input offers the model the caller's own tools and the key may not."""
        if not key.caller_tools and isinstance(job_input, dict) and job_input.get(CALLER_TOOLS_FIELD):
            raise ApiError(403, f"{field}: this key may not offer the model tools of its own (a key made with "
                                "`toolbag keys create --caller-tools` may)", param=field)

    def admit(self, key: ApiKey, tier: str) -> None:
        """The key's rpm and the tier's queue depth, fleet-wide; 429 with ``retry-after`` past either."""
        wait_s = self.keys.count_request(key)
        if wait_s is not None:
            metrics.API_OVERLOAD.labels(tier, "rpm").inc()
            raise ApiError(429, f"rate limit: this key allows {key.rpm} requests per minute", retry_after_s=wait_s)
        limit = self.config.tiers[tier].max_queue_depth
        if limit is None:
            return
        store = self.client.store
        pipe = store.redis.pipeline(transaction=False)
        for provider in self.config.providers:
            pipe.zcard(store.keys.waiting(queue_name(provider, tier)))
        depth = sum(int(n) for n in pipe.execute())
        if depth >= limit:
            metrics.API_OVERLOAD.labels(tier, "queue_depth").inc()
            raise ApiError(429, f"the {tier} tier is overloaded: {depth} jobs waiting (limit {limit}); retry later",
                           retry_after_s=QUEUE_RETRY_AFTER_S)

    # -- bodies -----------------------------------------------------------------------------------------

    async def body(self, request: Request, model: type[BaseModel], invalid_status: int = 400) -> Any:
        """The body as ``model``: 413 past the size limit, 400 for malformed JSON, ``invalid_status`` (with the
        field's path) for a body that does not fit."""
        raw = await self._read_bounded(request)
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as err:
            raise ApiError(400, f"the body is not valid JSON: {err}") from None
        try:
            return model.model_validate(data)
        except ValidationError as err:
            first = err.errors()[0]
            path = field_path(tuple(first["loc"]))
            raise ApiError(invalid_status, f"{path or 'body'}: {first['msg']}", param=path or None) from None

    async def _read_bounded(self, request: Request) -> bytes:
        """The body, or 413 past ``max_body_bytes``. An oversized body is read on (and dropped) up to
        :data:`DRAIN_FACTOR` times the limit, so the client finishes sending and reads the 413."""
        declared = request.headers.get("content-length", "")
        oversized = declared.isdigit() and int(declared) > self.max_body_bytes
        parts: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            oversized = oversized or size > self.max_body_bytes
            if size > self.max_body_bytes * DRAIN_FACTOR:
                break
            if not oversized:
                parts.append(chunk)
        if oversized:
            raise ApiError(413, f"request body exceeds {self.max_body_bytes} bytes")
        return b"".join(parts)

    # -- jobs -------------------------------------------------------------------------------------------

    def submit(self, key: ApiKey, request: JobRequest, *, tier_field: str = "tier", field_prefix: str = "",
               invalid_status: int = 400, tools_field: str = f"input.{CALLER_TOOLS_FIELD}") -> Submitted:
        """Admit and submit one job for ``key`` (its caller, tiers, caller tools, rpm); ``invalid_status``
        naming the field it refuses (``field_prefix`` before the name, e.g. ``jobs[3].``)."""
        self.check_caller_tools(key, request.input, field_prefix + tools_field)
        tier = self.tier_for(key, request.tier, field_prefix + tier_field)
        effective = tier or self._default_tier(request)
        self.admit(key, effective)
        try:
            job = self.client.submit(
                request.capability, input=request.input, skill=request.skill, tier=tier, caller=key.caller,
                idempotency_key=request.idempotency_key, deadline_s=request.deadline_s,
                candidates=request.candidates,
            )
        except SubmitError as err:
            raise ApiError(invalid_status, f"{field_prefix}{err}", param=f"{field_prefix}{err.field}") from None
        store = self.client.store
        capability, job_tier = (_text(v) for v in store.redis.hmget(store.keys.job(job.id), ["capability", "tier"]))
        tier = as_tier(job_tier)
        policy = self.config.route(capability, tier).policy
        return Submitted(job, capability, tier, self.config.tiers[tier], policy)

    def submit_batch(self, key: ApiKey, requests: list[JobRequest]) -> list[Job]:
        """Check every job first, then write them all in one pipelined round trip; the first refusal (422,
        ``jobs[i].field``) writes none. Batches run one at a time on a client of their own (its routing
        cache is per batch)."""
        with self._batch_lock:
            prepared = self._batch_client.prepare_each([replace(r, caller=key.caller) for r in requests])
            jobs: list[NewJob] = []
            for index, request in enumerate(requests):
                self.check_caller_tools(key, request.input, f"jobs[{index}].input.{CALLER_TOOLS_FIELD}")
            for index, outcome in enumerate(prepared):
                if isinstance(outcome, SubmitError):
                    raise ApiError(422, f"jobs[{index}].{outcome}", param=f"jobs[{index}].{outcome.field}")
                jobs.append(outcome)
            for tier in sorted({str(job.fields["tier"]) for job in jobs}):
                self.admit(key, tier)
            return self._batch_client.submit_prepared(jobs)

    def _default_tier(self, request: JobRequest) -> str:
        if request.skill is not None:
            try:
                skill = self.client.skill(request.skill)
            except SubmitError:
                return "standard"
            return skill.default_tier or "standard"
        return "standard"

    def feed(self, job_id: str) -> JobFeed:
        """The async view of one job the relay reads."""
        keys = self.client.store.keys

        async def terminal_result() -> JobResult:
            return await run_in_threadpool(self.client.result, job_id, 0)

        async def cancel() -> bool:
            return await run_in_threadpool(self.client.cancel, job_id)

        return JobFeed(self.aredis, keys.deltas(job_id), keys.job(job_id), keys.notify(job_id), terminal_result,
                       cancel)


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
