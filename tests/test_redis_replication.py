"""The replicated mode against a real master and replica: a submission is acknowledged only once the replica
has it, and refused as retryable when the replica cannot confirm within the bound; a result is handed out
only once the replica has what was read. The fast mode never waits."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fleet import fleet_config_dict
from tests.redis_nodes import RedisNode
from toolbag.client import Client
from toolbag.config import parse_config
from toolbag.store.connection import RedisUnavailable
from toolbag.store.replication import NotReplicated, Replication, barrier


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[RedisNode, RedisNode]]:
    master = RedisNode(tmp_path / "master")
    master.start()
    replica = RedisNode(tmp_path / "replica", replica_of=master.port)
    try:
        replica.start()
        master.wait_replicas(1)
        yield master, replica
    finally:
        if replica.proc is not None and replica.proc.poll() is None:
            os.kill(replica.proc.pid, signal.SIGCONT)
        replica.stop()
        master.stop()


def _client(url: str, durability: str) -> Client:
    # 1 s: a replica on a loaded machine may take a few hundred ms to confirm; the refusal still comes well
    # within the 5 s the test allows.
    config = fleet_config_dict("http://127.0.0.1:9", redis_durability=durability, replica_ack_timeout_ms=1000)
    return Client(parse_config(config), url)


def test_replicated_submit_waits_for_the_replica(pair: tuple[RedisNode, RedisNode]) -> None:
    master, replica = pair
    client = _client(f"{master.url}/0", "replicated")
    assert client.store.replication == Replication(1, 1000)
    job = client.submit("summarize", input={"text": "kept by the replica"}, idempotency_key="k1")
    with replica.client() as on_replica:
        assert on_replica.exists(client.store.keys.job(job.id)), "acknowledged before the replica had it"

    assert replica.proc is not None
    os.kill(replica.proc.pid, signal.SIGSTOP)  # the replica stops confirming
    try:
        started = time.monotonic()
        with pytest.raises(RedisUnavailable, match="no replica confirmed"):
            client.submit("summarize", input={"text": "not confirmed"}, idempotency_key="k2")
        assert time.monotonic() - started < 5, "the refusal did not come at the bound"
        with pytest.raises(NotReplicated):
            barrier(client.store.redis, client.store.keys.replication_barrier, client.store.replication)
        fast = _client(f"{master.url}/0", "fast")
        fast.submit("summarize", input={"text": "the fast mode does not wait"})
    finally:
        os.kill(replica.proc.pid, signal.SIGCONT)
    retried = client.submit("summarize", input={"text": "not confirmed"}, idempotency_key="k2")
    assert not retried.created, "the retry with the same key found the job the refused submission wrote"
    barrier(client.store.redis, client.store.keys.replication_barrier, client.store.replication)
