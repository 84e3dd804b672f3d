"""Redis crashes and comes back from its append-only file, then fills up and is freed, all under a steady load
of jobs: no fleet process exits, producers get a retryable error meanwhile, the fleet carries on by itself,
and every acknowledged job ends exactly once."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.fleet import running_fleet
from tests.redis_nodes import RedisNode, SteadyLoad, assert_each_ended_once
from tests.test_fleet import probe_routes


def test_redis_crash_and_full_redis_under_load(tmp_path: Path) -> None:
    node = RedisNode(tmp_path / "redis")
    node.start()
    try:
        with running_fleet(f"{node.url}/0", tmp_path, providers=("gemini",), concurrency=8,
                           config_overrides={"routes": probe_routes()}) as fleet:
            fleet.simulator.set_faults({"latency": {"*": {"ttft_ms": 100, "tokens_per_s": 5000}}})
            with SteadyLoad(fleet.client, "probe-gemini") as load:
                time.sleep(1.5)
                node.kill(signal.SIGKILL)  # a crash: only what the AOF holds survives
                time.sleep(2.0)
                during_outage = load.refusals
                node.start()
                time.sleep(3.0)
                assert during_outage > 0, f"a submission while Redis was down was not refused: {load.other_errors[:3]}"

                admin = node.client()
                used = int(admin.info("memory")["used_memory"])
                admin.config_set("maxmemory", str(used + 64 * 1024))  # full under noeviction: writes refused
                refused_before = load.refusals
                deadline = time.monotonic() + 20
                while load.refusals == refused_before and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert load.refusals > refused_before, "a submission to a full Redis was not refused"
                time.sleep(1.5)
                admin.config_set("maxmemory", "0")
                acknowledged_before_free = len(load.acknowledged)
                time.sleep(3.0)
                assert len(load.acknowledged) > acknowledged_before_free, "submissions did not resume"
            assert not load.other_errors, load.other_errors[:3]
            assert_each_ended_once(fleet.client, load.acknowledged, timeout_s=90)
            exited = {name: proc.returncode for name, proc in fleet.procs.items() if proc.poll() is not None}
            assert not exited, f"fleet processes exited: {exited}\n{fleet.log(next(iter(exited)))[-3000:]}"
            supervisor_log = fleet.log("supervisor", 10**7)
            assert supervisor_log.count("redis is unavailable") <= 4, supervisor_log[-3000:]
            assert "redis is back" in supervisor_log
            assert "sweep failed" not in supervisor_log, supervisor_log[-3000:]
            worker_log = fleet.log("worker-gemini", 10**7)
            assert "lease renewal failed" not in worker_log, worker_log[-3000:]
            assert "Unrecoverable error" not in worker_log + supervisor_log
    finally:
        node.stop()


def test_a_live_attempt_outlives_a_redis_outage_longer_than_its_lease(tmp_path: Path) -> None:
    """Redis's clock runs on while it is down and no worker can renew: once it is back, the sweeper gives
    live workers one lease TTL to renew before it expires leases, so a running attempt is not taken as lost
    (and its vendor call paid twice)."""
    from tests.fleet import fleet_config_dict
    from toolbag.client import Client
    from toolbag.config import parse_config
    from toolbag.supervisor import Sweeper

    node = RedisNode(tmp_path / "redis")
    node.start()
    config = parse_config(fleet_config_dict("http://127.0.0.1:9", lease_ttl_s=2))
    lease_ttl_s = config.fleet.lease_ttl_s
    client = Client(config, f"{node.url}/0")
    store = client.store
    job = client.submit("summarize", input={"text": "running through the outage"})
    record = store.get(job.id)
    assert store.claim(job.id, record.token, record.queue, lease_ttl_s, "w@test") is not None
    member = f"{job.id}:{record.token}"
    sweeper = Sweeper(config, store)
    sweeper.start()
    try:
        time.sleep(0.5)
        node.kill(signal.SIGKILL)
        time.sleep(lease_ttl_s + 1)  # the lease is past its deadline by Redis's clock
        node.start()
        time.sleep(1.5)  # the sweeper has swept since (it retries every second); a worker renews now
        assert store.renew_leases([member], lease_ttl_s) == [], store.history(job.id)
        time.sleep(1.0)
        assert store.get(job.id).status.value == "running", store.history(job.id)
    finally:
        sweeper.stop()
        node.stop()
