"""What the benchmarks share: their config, their fleet (on :mod:`toolbag.devfleet.harness`), percentiles.

Every benchmark measures its baseline in the same run and prints a ratio: absolute times on a shared
machine drift, ratios hold.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from toolbag.config import DEFAULT_CONFIG_PATH, TIERS, load_config
from toolbag.devfleet.harness import LocalFleet, RedisServer, SimulatorProcess, private_redis, simulator_process

REPO = Path(__file__).resolve().parent.parent


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary_ms(values_s: list[float]) -> str:
    ms = [v * 1000 for v in values_s]
    return f"p50 {percentile(ms, 0.5):7.2f} ms  p99 {percentile(ms, 0.99):7.2f} ms  mean {statistics.mean(ms):7.2f} ms"


def scratch_dir(name: str) -> Path:
    """A fresh directory for one run's config and logs."""
    return Path(tempfile.mkdtemp(prefix=f"tb-bench-{name}-"))


def write_faults(tmp: Path, plan: dict[str, Any]) -> Path:
    """A simulator fault plan file (``toolbag simulator --faults``)."""
    path = tmp / "faults.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def flat_latency(latency_ms: int) -> dict[str, Any]:
    """A fault plan's latency section: every model's first token after ``latency_ms``, the rest at once."""
    return {"*": {"ttft_ms": latency_ms, "tokens_per_s": 1_000_000}}


@contextmanager
def ground(name: str, latency: dict[str, Any] | None = None) -> Iterator[tuple[Path, RedisServer, SimulatorProcess]]:
    """What every fleet benchmark stands on: a fresh scratch folder, a private Redis and a simulator process
    (answering with ``latency``, a fault plan's latency section, when given); all stopped on exit."""
    tmp = scratch_dir(name)
    faults = write_faults(tmp, {"latency": latency}) if latency is not None else None
    with private_redis() as server, simulator_process(tmp, faults=faults, cwd=REPO) as sim:
        yield tmp, server, sim


def bench_config(simulator_url: str, tmp: Path, *, stream: bool = False, limits: bool = True,
                 window_s: float = 60.0) -> Path:
    data: dict[str, Any] = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["simulator_url"] = simulator_url
    data["fleet"]["key_prefix"] = f"b{uuid.uuid4().hex[:6]}:"
    for tier in data["tiers"].values():
        tier["stream"] = stream
    data["routes"]["bench"] = {t: {"candidates": ["gpt-luna"]} for t in TIERS}
    # Limits far above what any benchmark here reaches: the limiter still runs on every attempt (its cost is
    # part of what is measured), but it never decides the result. bench.ratelimit measures the limiter itself.
    # ``limits`` false: no limit of any kind (the limiter still keeps each model's usage for the headroom gauge).
    # ``window_s``: the limits' window; a run longer than it sees the call log's steady state (old calls pruned).
    for model in data["models"].values():
        model["limits"] = {"rpm": 10_000_000, "tpm": 10_000_000_000, "concurrency": 100_000,
                           "window_s": window_s} if limits else {}
    path = tmp / "toolbag.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@contextmanager
def fleet(redis_url: str, config_path: Path, workers: Sequence[tuple[str, int]], *,
          supervisor: bool = True, mode: str = "async") -> Iterator[LocalFleet]:
    """A worker process per ``(provider, slots)`` and a supervisor, on the config at ``config_path`` (the
    simulator it names, never ``$TOOLBAG_SIMULATOR_URL``); logs beside the config. ``mode`` is the workers'
    ``--attempt-loop``."""
    env = {k: v for k, v in os.environ.items() if k != "TOOLBAG_SIMULATOR_URL"}
    env["TOOLBAG_ATTEMPT_LOOP"] = mode
    procs = LocalFleet(load_config(config_path), redis_url, config_path.parent, config_path=config_path, env=env,
                       cwd=REPO)
    try:
        for n, (provider, threads) in enumerate(workers):
            procs.worker(provider, threads, name=f"worker-{provider}-{n}")
        if supervisor:
            procs.supervisor()
        procs.wait_workers(len(workers), timeout_s=300)
        yield procs
    finally:
        procs.stop()
