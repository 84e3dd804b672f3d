"""Shared fixtures: a private redis-server for the whole run, and a clean database per test.

Fleets (``tests.fleet.running_fleet``) share the server's database 0, each under a key prefix of its own;
``redis_url`` hands each test one of databases 1-23, flushed before and after.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest
import redis

from tests.mcp_process import mcp_http_server
from toolbag.devfleet.harness import HarnessError, free_port, start_redis
from toolbag.simulator.server import SimulatorServer

__all__ = ["free_port", "mcp_http_server"]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A redis-server of our own on a free port (or ``TOOLBAG_TEST_REDIS_URL`` when given), naming no database."""
    given = os.environ.get("TOOLBAG_TEST_REDIS_URL")
    if given:
        yield given.rsplit("/", 1)[0] if given.count("/") > 2 else given
        return
    try:
        server = start_redis(databases=32)
    except HarnessError as err:
        pytest.fail(f"{err}; or point TOOLBAG_TEST_REDIS_URL at a Redis")
    try:
        yield server.url
    finally:
        server.stop()


_next_db = itertools.cycle(range(1, 24))


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """A Redis URL on a database of its own for this test (1-23); flushed before and after."""
    db = next(_next_db)
    url = f"{redis_server}/{db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    """The vendor simulator for one test module, without a fault plan (modules needing a plan define their own)."""
    with SimulatorServer() as server:
        yield server
