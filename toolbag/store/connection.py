"""Every Redis connection the fleet makes, from one URL: the only place that parses it.

Two forms:

* ``redis://[:password@]host:port/db`` (or ``rediss://``, ``unix://``): one Redis.
* ``redis+sentinel://[:password@]host:port,host:port,.../master-name/db``: the master Sentinel names
  ``master-name``. Every client follows a failover: a command that meets the old master (gone, or now a
  read-only replica) fails with a connection error, and the next one asks the sentinels for the new master.
  Lua scripts reload themselves on ``NOSCRIPT`` (redis-py's ``Script``), so a fresh master needs nothing.
  The password, when given, is the data nodes'; the sentinels are reached without one.

:func:`redis_client` builds the library's clients; :func:`celery_broker` the same address for kombu (its
own Sentinel transport). A URL with a password is never logged or shown whole: :func:`describe`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio as redis_async
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.sentinel import Sentinel

from toolbag.errors import ToolbagError

SENTINEL_SCHEME = "redis+sentinel"
DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
REDIS_START_WAIT_S = 60.0  # how long a worker or supervisor started while Redis is away waits for it
# Errors that mean "Redis is away, read-only, loading or full: try again": what a caller may retry.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError, redis.TimeoutError, redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError, redis.exceptions.OutOfMemoryError, redis.exceptions.TryAgainError,
    redis.exceptions.MasterDownError,
)


class RedisUrlError(ToolbagError):
    """A Redis URL the fleet cannot use (one line naming the problem, never the password)."""


class RedisUnavailable(ToolbagError):
    """Redis is away, loading, read-only (a failover in progress) or full: the request was not done;
    retry it (with the same idempotency key, when it was a submission)."""

    retryable = True


@dataclass(frozen=True)
class RedisAddress:
    """A parsed Redis URL. ``sentinels`` empty: one Redis at ``url``."""

    url: str = field(repr=False)
    sentinels: tuple[tuple[str, int], ...] = ()
    master_name: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def is_sentinel(self) -> bool:
        return bool(self.sentinels)


def parse_redis_url(url: str) -> RedisAddress:
    """Check and split ``url``; :class:`RedisUrlError` names what is wrong."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("redis", "rediss", "unix"):
        try:
            redis.connection.parse_url(url)  # type: ignore[no-untyped-call]
        except ValueError as err:
            raise RedisUrlError(f"redis url {describe(url)}: {err}") from None
        db = urlsplit(url).path.strip("/")
        if scheme != "unix" and db and not db.isdigit():
            raise RedisUrlError(f"redis url {describe(url)}: the path must be a database number, got {db!r}")
        return RedisAddress(url)
    if scheme != SENTINEL_SCHEME:
        raise RedisUrlError(f"redis url {describe(url)}: the scheme must be redis://, rediss://, unix:// or "
                            f"{SENTINEL_SCHEME}://")
    parts = urlsplit(url)
    netloc = parts.netloc
    userinfo, _, hosts = netloc.rpartition("@")
    username, _, password = userinfo.partition(":") if userinfo else ("", "", "")
    sentinels: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
        if not host or (port and not port.isdigit()):
            raise RedisUrlError(f"redis url {describe(url)}: sentinel address {item!r} is not host:port")
        sentinels.append((host, int(port) if port else DEFAULT_SENTINEL_PORT))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise RedisUrlError(f"redis url {describe(url)}: no master name (…/<master-name>/<db>)")
    if len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise RedisUrlError(f"redis url {describe(url)}: the path must be /<master-name>[/<db number>]")
    return RedisAddress(url, tuple(sentinels), unquote(path[0]), int(path[1]) if len(path) == 2 else 0,
                        unquote(username) or None, unquote(password) or None)


def describe(url: str) -> str:
    """``url`` with any password replaced by ``***``: the form logs and errors show."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    userinfo, at, hosts = rest.rpartition("@")
    if not at:
        return url
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}{sep}{user}{':***' if colon else ''}@{hosts}"


def redis_client(url: str, *, socket_timeout_s: float | None = 10.0, socket_connect_timeout_s: float = 5.0,
                 **options: Any) -> redis.Redis:
    """A redis-py client for ``url`` (either form); ``options`` go to the connection pool (e.g.
    ``max_connections``, ``health_check_interval``). Raises :class:`RedisUrlError` for a bad URL."""
    address = parse_redis_url(url)
    connection = {"socket_timeout": socket_timeout_s, "socket_connect_timeout": socket_connect_timeout_s,
                  **options}
    if not address.is_sentinel:
        return redis.Redis.from_url(url, **connection)
    sentinel = Sentinel(
        list(address.sentinels),
        sentinel_kwargs={"socket_timeout": min(socket_connect_timeout_s, 2.0),
                         "socket_connect_timeout": min(socket_connect_timeout_s, 2.0)},
        **connection,
    )
    client: redis.Redis = sentinel.master_for(address.master_name, db=address.db, username=address.username,
                                              password=address.password)
    return client


def async_redis_client(url: str, *, max_connections: int, socket_timeout_s: float | None = 30.0,
                       socket_connect_timeout_s: float = 5.0, **options: Any) -> redis_async.Redis:
    """A ``redis.asyncio`` client for ``url`` (either form) over at most ``max_connections`` connections. On a
    plain Redis a call waits (up to 30 s) for a free connection rather than failing; on Sentinel it follows the
    master as :func:`redis_client` does."""
    address = parse_redis_url(url)
    connection = {"socket_timeout": socket_timeout_s, "socket_connect_timeout": socket_connect_timeout_s,
                  "health_check_interval": 25, **options}
    if not address.is_sentinel:
        pool = redis_async.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=30,
                                                           **connection)
        return redis_async.Redis(connection_pool=pool)
    sentinel = AsyncSentinel(
        list(address.sentinels),
        sentinel_kwargs={"socket_timeout": min(socket_connect_timeout_s, 2.0),
                         "socket_connect_timeout": min(socket_connect_timeout_s, 2.0)},
        **connection,
    )
    client: redis_async.Redis = sentinel.master_for(address.master_name, db=address.db, username=address.username,
                                                    password=address.password, max_connections=max_connections)
    return client


def celery_broker(url: str) -> tuple[str, dict[str, Any]]:
    """``(broker URL, transport options)`` for kombu: a plain URL as it is, a Sentinel URL in kombu's own
    form (``sentinel://host:port;sentinel://…``, with the master name in the transport options)."""
    address = parse_redis_url(url)
    if not address.is_sentinel:
        return url, {}
    auth = ""
    if address.password is not None:
        auth = f"{address.username or ''}:{address.password}@"
    hosts = ";".join(f"sentinel://{auth}{host}:{port}/{address.db}" for host, port in address.sentinels)
    return hosts, {"master_name": address.master_name,
                   "sentinel_kwargs": {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}}


class OutageLog:
    """Says once that Redis is unavailable and once that it is back, for a loop that retries on its own
    (instead of a traceback every tick). Not thread-safe: one per loop."""

    def __init__(self, logger: logging.Logger, who: str) -> None:
        self.logger = logger
        self.who = who
        self.since: float | None = None  # monotonic time the outage began

    def failed(self, err: Exception) -> None:
        if self.since is None:
            self.since = time.monotonic()
            self.logger.warning("%s: redis is unavailable (%s: %s); retrying until it is back",
                                self.who, type(err).__name__, err)

    def ok(self) -> bool:
        """Note a success; True when it ends an outage."""
        if self.since is None:
            return False
        self.logger.warning("%s: redis is back after %.1fs", self.who, time.monotonic() - self.since)
        self.since = None
        return True

    @property
    def away(self) -> bool:
        return self.since is not None


def wait_until_reachable(client: redis.Redis, give_up_after_s: float, outage: OutageLog) -> bool:
    """Ping ``client`` until it answers (True) or ``give_up_after_s`` passes (False), logging through
    ``outage`` once each way."""
    deadline = time.monotonic() + give_up_after_s
    while True:
        try:
            client.ping()
        except UNAVAILABLE_ERRORS as err:
            outage.failed(err)
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            continue
        outage.ok()
        return True
