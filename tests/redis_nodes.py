"""Redis processes a test can crash and restart — a server with its append-only file, a replica of it,
Sentinels watching them, all on loopback on free ports — and a steady load of jobs to run through them."""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.fleet import pointer_report
from toolbag.client import Client
from toolbag.devfleet.harness import free_port
from toolbag.jobs import JobStatus, ResultTimeout
from toolbag.store import JobStore
from toolbag.store.connection import RedisUnavailable

LOOPBACK = "127.0.0.1"


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/install-test-tools.sh (Debian package {name})")
    return path


class RedisNode:
    """One ``redis-server`` with AOF (fsync on every write, so a SIGKILL loses nothing it acknowledged);
    ``start`` again after a kill reloads the same folder."""

    def __init__(self, workdir: Path, *, replica_of: int | None = None, port: int | None = None) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.replica_of = replica_of
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=5, socket_connect_timeout=2)

    def start(self, timeout_s: float = 20.0) -> None:
        args = [binary("redis-server"), "--port", str(self.port), "--bind", LOOPBACK, "--dir", str(self.workdir),
                "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--maxmemory-policy", "noeviction",
                "--repl-diskless-sync-delay", "0"]
        if self.replica_of is not None:
            args += ["--replicaof", LOOPBACK, str(self.replica_of)]
        with open(self.workdir / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with self.client() as client:
                    if client.ping():
                        return
            except (redis.ConnectionError, redis.exceptions.BusyLoadingError, redis.TimeoutError):
                pass
            if time.monotonic() > deadline:
                log = (self.workdir / "redis.log").read_text()
                pytest.fail(f"redis-server on port {self.port} did not start: {log[-2000:]}")
            time.sleep(0.05)

    def wait_replicas(self, count: int, timeout_s: float = 30.0) -> None:
        """Until ``count`` replicas are in sync with this master (``state=online``)."""
        deadline = time.monotonic() + timeout_s
        with self.client() as client:
            while True:
                info = client.info("replication")
                online = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
                          and v.get("state") == "online"]
                if len(online) >= count:
                    return
                assert time.monotonic() < deadline, f"replicas not in sync: {info}"
                time.sleep(0.1)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


class SentinelNode:
    """One ``redis-sentinel`` watching ``master_name`` at ``master_port`` (quorum 2, down after 1 s)."""

    def __init__(self, workdir: Path, master_name: str, master_port: int) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        conf = self.workdir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind {LOOPBACK}\ndir {self.workdir}\n"
            f"sentinel monitor {master_name} {LOOPBACK} {master_port} 2\n"
            f"sentinel down-after-milliseconds {master_name} 1000\n"
            f"sentinel failover-timeout {master_name} 10000\n"
            f"sentinel parallel-syncs {master_name} 1\n"
        )
        with open(self.workdir / "sentinel.log", "ab") as log:
            self.proc = subprocess.Popen([binary("redis-sentinel"), str(conf)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                with redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=2) as client:
                    if client.ping():
                        return
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"redis-sentinel did not start: {(self.workdir / 'sentinel.log').read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)


class SteadyLoad:
    """A producer thread submitting one job every ``every_s`` with an idempotency key of its own, retrying a
    refused submission (Redis unavailable) with the same key until it is acknowledged. ``acknowledged`` holds
    the job ids the fleet acknowledged; ``refusals`` counts the retryable errors seen."""

    def __init__(self, client: Client, capability: str, every_s: float = 0.05) -> None:
        self.client = client
        self.capability = capability
        self.every_s = every_s
        self.acknowledged: list[str] = []
        self.refusals = 0
        self.other_errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-load", daemon=True)

    def __enter__(self) -> SteadyLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            key = f"steady-{i}"
            while not self._stop.is_set():
                try:
                    job = self.client.submit(self.capability, input={"text": f"steady job {i}"}, caller="steady",
                                             idempotency_key=key)
                except RedisUnavailable:
                    self.refusals += 1
                    time.sleep(0.1)
                    continue
                except Exception as err:  # noqa: BLE001 - reported by the test, never swallowed
                    self.other_errors.append(f"{type(err).__name__}: {err}")
                    time.sleep(0.1)
                    continue
                self.acknowledged.append(job.id)
                break
            i += 1
            self._stop.wait(self.every_s)


def completions(store: JobStore) -> collections.Counter[str]:
    """How many times each job completed, from the audit ledger."""
    counts: collections.Counter[str] = collections.Counter()
    last = "-"
    while True:
        batch: Any = store.redis.xrange(store.keys.audit, min=f"({last}" if last != "-" else "-", count=5000)
        if not batch:
            return counts
        for _entry_id, fields in batch:
            if fields.get(b"kind") == b"completed":
                counts[fields[b"job"].decode()] += 1
        last = batch[-1][0].decode()


def assert_each_ended_once(client: Client, job_ids: list[str], timeout_s: float) -> None:
    """Every job is terminal within ``timeout_s``; a succeeded one completed exactly once, any other never."""
    deadline = time.monotonic() + timeout_s
    results = {}
    for job_id in job_ids:
        try:
            results[job_id] = client.result(job_id, timeout_s=max(0.1, deadline - time.monotonic()))
        except ResultTimeout:
            pytest.fail(f"job {job_id} never ended: {pointer_report(client.store, job_id)}")
    counted = completions(client.store)
    for job_id, result in results.items():
        expected = 1 if result.status is JobStatus.SUCCEEDED else 0
        assert counted[job_id] == expected, (job_id, result.status, counted[job_id])
