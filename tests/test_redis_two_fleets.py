"""Past one Redis: two fleets, each on a Redis of its own with a key prefix of its own (split by provider
group), and one producer process holding a client per fleet. Each fleet runs its jobs; neither Redis holds a
key of the other fleet."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fleet import running_fleet
from tests.redis_nodes import RedisNode
from tests.test_fleet import probe_routes


@pytest.mark.soak
@pytest.mark.slow
def test_one_fleet_per_redis_behind_one_producer(tmp_path: Path) -> None:
    nodes = {group: RedisNode(tmp_path / f"redis-{group}") for group in ("gemini", "openai")}
    for node in nodes.values():
        node.start()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    try:
        with running_fleet(f"{nodes['gemini'].url}/0", tmp_path / "a", providers=("gemini",), concurrency=4,
                           config_overrides={"routes": probe_routes()}) as a, \
                running_fleet(f"{nodes['openai'].url}/0", tmp_path / "b", providers=("openai",), concurrency=4,
                              config_overrides={"routes": probe_routes()}) as b:
            clients = {"probe-gemini": a.client, "probe-openai": b.client}  # the producer's routing table
            jobs = [(capability, clients[capability].submit(capability, input={"text": f"job {i}"}))
                    for i in range(10) for capability in clients]
            for capability, job in jobs:
                result = job.result(60)
                assert result.ok and result.provider == capability.removeprefix("probe-"), result
            for group, fleet, other in (("gemini", a, b), ("openai", b, a)):
                with nodes[group].client() as client:
                    keys = [k.decode() for k in client.scan_iter(count=1000)]
                assert any(k.startswith(fleet.config.fleet.key_prefix) for k in keys)
                assert not any(k.startswith(other.config.fleet.key_prefix) for k in keys), group
    finally:
        for node in nodes.values():
            node.stop()
