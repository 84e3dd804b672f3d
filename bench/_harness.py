"""Shared pieces for the benchmarks: a private Redis, a simulator process, fleet processes, stats.

Every benchmark measures its baseline in the same run and prints a ratio: absolute times on a shared
machine drift, ratios hold.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
import yaml

from toolbag.config import DEFAULT_CONFIG_PATH, TIERS

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary_ms(values_s: list[float]) -> str:
    ms = [v * 1000 for v in values_s]
    return f"p50 {percentile(ms, 0.5):7.2f} ms  p99 {percentile(ms, 0.99):7.2f} ms  mean {statistics.mean(ms):7.2f} ms"


@contextmanager
def private_redis() -> Iterator[str]:
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="tb-bench-redis-")
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("the benchmarks need redis-server on PATH")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                             "no", "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(200):
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_http(url: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextmanager
def simulator_process(latency: dict[str, Any] | None = None) -> Iterator[str]:
    """The simulator in its own process (so it does not share a GIL with what is measured)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "toolbag.cli", "simulator", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/_sim/health")
        if latency:
            body = json.dumps({"latency": latency}).encode()
            req = urllib.request.Request(f"{url}/_sim/faults", data=body, method="POST",
                                         headers={"content-type": "application/json"})
            urllib.request.urlopen(req).close()
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def bench_config(simulator_url: str, tmp: Path, *, stream: bool = False) -> Path:
    data: dict[str, Any] = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["simulator_url"] = simulator_url
    data["fleet"]["key_prefix"] = f"b{uuid.uuid4().hex[:6]}:"
    for tier in data["tiers"].values():
        tier["stream"] = stream
    data["routes"]["bench"] = {t: {"candidates": ["gpt-luna"]} for t in TIERS}
    # Limits far above what any benchmark here reaches: the limiter still runs on every attempt (its cost is
    # part of what is measured), but it never decides the result. bench.ratelimit measures the limiter itself.
    for model in data["models"].values():
        model["limits"] = {"rpm": 10_000_000, "tpm": 10_000_000_000, "concurrency": 100_000}
    path = tmp / "toolbag.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class Processes:
    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.env, self.tmp, self.procs = env, tmp, []  # type: ignore[var-annotated]

    def start(self, name: str, *args: str) -> None:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115
        self.procs.append(subprocess.Popen([sys.executable, "-m", "toolbag.cli", *args], env=self.env,
                                           stdout=log, stderr=subprocess.STDOUT, cwd=REPO))

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


@contextmanager
def fleet(redis_url: str, simulator_url: str, *, workers: dict[str, int], supervisor: bool = True,
          stream: bool = False) -> Iterator[tuple[Path, dict[str, str]]]:
    tmp = Path(tempfile.mkdtemp(prefix="tb-bench-"))
    config_path = bench_config(simulator_url, tmp, stream=stream)
    env = {**os.environ, "TOOLBAG_CONFIG": str(config_path), "TOOLBAG_REDIS_URL": redis_url,
           "TOOLBAG_METRICS_PORT": "0"}
    procs = Processes(env, tmp)
    from toolbag.config import load_config
    from toolbag.store import JobStore
    from toolbag.store.keys import Keys

    config = load_config(config_path)
    store = JobStore.from_url(redis_url, Keys(config.fleet.key_prefix))
    try:
        n = 0
        for provider, concurrency in workers.items():
            procs.start(f"worker-{provider}-{n}", "worker", "--provider", provider, "--concurrency", str(concurrency))
            n += 1
        if supervisor:
            procs.start("supervisor", "supervisor")
        deadline = time.monotonic() + 180
        while len(store.live_workers(60)) < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"workers did not start; logs in {tmp}")
            time.sleep(0.1)
        yield config_path, env
    finally:
        procs.stop()
