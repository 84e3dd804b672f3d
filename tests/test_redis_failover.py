"""Sentinel failover under load: a master, two replicas and three Sentinels on loopback, the whole fleet on one
``redis+sentinel://`` URL in the replicated mode. The master is SIGKILLed; the fleet resumes on the promoted
replica by itself, and every job acknowledged before, during and after ends exactly once.

Two replicas, not one: the replicated mode waits for a replica on every submission, so the promoted master
needs a replica of its own (the other one, re-pointed by the Sentinels) to take new jobs."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import yaml

from tests.fleet import running_fleet
from tests.redis_nodes import RedisNode, SentinelNode, SteadyLoad, assert_each_ended_once
from tests.test_fleet import probe_routes
from toolbag.config import DEFAULT_CONFIG_PATH
from toolbag.store.connection import RedisUnavailable

MASTER_NAME = "toolbag-test"
RESUME_BOUND_S = 15.0


@pytest.mark.soak
@pytest.mark.slow
def test_sentinel_failover_under_load_loses_no_acknowledged_job(tmp_path: Path) -> None:
    master = RedisNode(tmp_path / "master")
    master.start()
    replicas = [RedisNode(tmp_path / f"replica-{n}", replica_of=master.port) for n in (1, 2)]
    sentinels: list[SentinelNode] = []
    try:
        for replica in replicas:
            replica.start()
        master.wait_replicas(2)
        sentinels = [SentinelNode(tmp_path / f"sentinel-{n}", MASTER_NAME, master.port) for n in (1, 2, 3)]
        url = "redis+sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in sentinels) + f"/{MASTER_NAME}/0"
        fleet_settings = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())["fleet"]
        fleet_settings.update({"lease_ttl_s": 2, "unclaimed_delivery_s": 5, "key_prefix": "failover:",
                               "redis_durability": "replicated", "replica_ack_timeout_ms": 1000})
        with running_fleet(url, tmp_path, providers=("gemini",), concurrency=8,
                           config_overrides={"routes": probe_routes(), "fleet": fleet_settings}) as fleet:
            fleet.simulator.set_faults({"latency": {"*": {"ttft_ms": 100, "tokens_per_s": 5000}}})
            with SteadyLoad(fleet.client, "probe-gemini") as load:
                time.sleep(3.0)
                master.kill(signal.SIGKILL)
                killed_at = time.monotonic()
                while True:  # a new job, submitted and finished on the promoted replica
                    try:
                        probe = fleet.client.submit("probe-gemini", input={"text": "after the failover"},
                                                    idempotency_key="probe-after-failover")
                        result = probe.result(timeout_s=max(0.1, RESUME_BOUND_S + 15 - (time.monotonic() - killed_at)))
                        break
                    except RedisUnavailable:
                        assert time.monotonic() - killed_at < RESUME_BOUND_S + 15, "the fleet never resumed"
                        time.sleep(0.2)
                resumed_s = time.monotonic() - killed_at
                print(f"resumed {resumed_s:.1f}s after the master was killed")
                assert result.ok, result
                assert resumed_s <= RESUME_BOUND_S, f"the fleet resumed only after {resumed_s:.1f}s"
                time.sleep(3.0)
            assert not load.other_errors, load.other_errors[:3]
            assert_each_ended_once(fleet.client, [*load.acknowledged, probe.id], timeout_s=120)
            exited = {name: proc.returncode for name, proc in fleet.procs.items() if proc.poll() is not None}
            assert not exited, f"fleet processes exited: {exited}"
    finally:
        for sentinel in sentinels:
            sentinel.stop()
        for node in (master, *replicas):
            node.stop()
