"""What the replicated mode costs: one job's submit, its completion and a result's replication barrier with
``redis_durability: replicated`` (WAIT for one replica) against the fast mode, on a master and one replica on
loopback started here. Rounds alternate the modes; the ratio is what to read (absolute times drift on a
shared machine, and a replica across a network adds its round trip)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from bench._common import summary_ms
from toolbag.client import Client
from toolbag.config import DEFAULT_CONFIG_PATH, parse_config
from toolbag.devfleet.harness import free_port
from toolbag.jobs import AttemptRecord
from toolbag.store.replication import Replication, barrier

ROUNDS = 10
PER_ROUND = 200


def _server(workdir: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
                             "--save", "", "--appendonly", "yes", "--appendfsync", "everysec", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            if redis.Redis(port=port).ping():
                return proc
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main() -> None:
    import yaml

    tmp = Path(tempfile.mkdtemp(prefix="tb-bench-durability-"))
    master_port, replica_port = free_port(), free_port()
    (tmp / "m").mkdir()
    (tmp / "r").mkdir()
    procs = [_server(tmp / "m", master_port), _server(tmp / "r", replica_port, "--replicaof", "127.0.0.1",
                                                       str(master_port))]
    try:
        while redis.Redis(port=master_port).info("replication").get("slave0", {}).get("state") != "online":
            time.sleep(0.05)
        data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
        data["fleet"]["key_prefix"] = "bench-durability:"
        client = Client(parse_config(data), f"redis://127.0.0.1:{master_port}/0")
        modes = {"fast": Replication(), "replicated": Replication(1, 1000)}
        submit_s: dict[str, list[float]] = {m: [] for m in modes}
        barrier_s: dict[str, list[float]] = {m: [] for m in modes}
        complete_s: dict[str, list[float]] = {m: [] for m in modes}
        store = client.store
        for n in range(ROUNDS):
            for mode, replication in modes.items():
                client.store.replication = replication
                for i in range(PER_ROUND):
                    started = time.perf_counter()
                    job = client.submit("summarize", input={"text": f"durability {n} {i}"}, caller="bench")
                    submit_s[mode].append(time.perf_counter() - started)
                    record = store.get(job.id)
                    store.claim(job.id, record.token, record.queue, 30, "bench")
                    attempt = AttemptRecord(n=1, model=record.model, provider=record.provider, outcome="ok")
                    started = time.perf_counter()
                    done = store.complete(job.id, record.token, "out", {"model": record.model}, attempt.to_json())
                    complete_s[mode].append(time.perf_counter() - started)
                    assert done.ok, done
                    started = time.perf_counter()
                    barrier(client.store.redis, client.store.keys.replication_barrier, replication)
                    barrier_s[mode].append(time.perf_counter() - started)
        for mode in modes:
            print(f"submit   {mode:10s} {summary_ms(submit_s[mode])}")
        for mode in modes:
            print(f"complete {mode:10s} {summary_ms(complete_s[mode])}")
        for mode in modes:
            print(f"barrier  {mode:10s} {summary_ms(barrier_s[mode])}")
        for name, samples in (("submit", submit_s), ("complete", complete_s)):
            fast, replicated = sorted(samples["fast"]), sorted(samples["replicated"])
            print(f"replicated/fast {name} p50 ratio: {replicated[len(replicated) // 2] / fast[len(fast) // 2]:.2f}")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
