"""A real fleet for integration tests: simulator, worker and supervisor processes, one Redis database.

Workers are separate OS processes started with the real CLI (``python -m toolbag.cli worker``), so a test
can SIGKILL one mid-attempt exactly as production would lose it.
"""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import yaml

from toolbag.client import Client
from toolbag.config import DEFAULT_CONFIG_PATH, Config, parse_config
from toolbag.simulator.server import SimulatorServer

REPO = Path(__file__).resolve().parent.parent


def reap(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """Wait for a process already asked to stop; kill it if it has not within ``grace_s``."""
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def terminate(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM (a warm shutdown for our processes), then :func:`reap`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    reap(proc, grace_s)


def free_port() -> int:
    """A TCP port nobody listens on right now (for a child process to bind)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout_s: float = 30.0) -> None:
    """Until ``url`` answers (any HTTP status counts), or AssertionError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer within {timeout_s}s") from None
            time.sleep(0.05)


@dataclass
class CliSimulator:
    """The simulator as its own process (``toolbag simulator``), as production runs it."""

    url: str
    metrics_port: int
    proc: subprocess.Popen[bytes]


@contextmanager
def cli_simulator(tmp: Path, faults: Path | None = None) -> Iterator[CliSimulator]:
    """``toolbag simulator`` on free ports (vendor API and ``/metrics``), stopped on exit."""
    port, metrics_port = free_port(), free_port()
    args = [sys.executable, "-m", "toolbag.cli", "simulator", "--port", str(port), "--metrics-port", str(metrics_port)]
    if faults is not None:
        args += ["--faults", str(faults)]
    log = open(tmp / "simulator.log", "ab")  # noqa: SIM115 - closed when the process is reaped
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    sim = CliSimulator(f"http://127.0.0.1:{port}", metrics_port, proc)
    try:
        wait_http(f"{sim.url}/_sim/health")
        yield sim
    finally:
        terminate(proc)
        log.close()


def fleet_config_dict(simulator_url: str, **fleet_overrides: Any) -> dict[str, Any]:
    """The embedded defaults, pointed at a test simulator, with short leases and timeouts."""
    data: dict[str, Any] = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data = copy.deepcopy(data)
    data["simulator_url"] = simulator_url
    data["fleet"].update({"lease_ttl_s": 2, "unclaimed_delivery_s": 5, "key_prefix": f"t{uuid.uuid4().hex[:6]}:"})
    data["fleet"].update(fleet_overrides)
    for tier in data["tiers"].values():
        tier.update({"connect_timeout_s": 2, "first_token_timeout_s": 3, "total_timeout_s": 10})
    return data


class Fleet:
    """Processes of one test fleet. Use :func:`running_fleet`."""

    def __init__(self, redis_url: str, tmp: Path, config: dict[str, Any], simulator: Any) -> None:
        self.redis_url = redis_url
        self.tmp = tmp
        self.simulator = simulator
        self.config_path = tmp / "toolbag.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.config: Config = parse_config(config)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.metrics_ports: dict[str, int] = {}  # process name -> its /metrics port, when chosen by the test
        self.env = {
            **os.environ,
            "TOOLBAG_CONFIG": str(self.config_path),
            "TOOLBAG_REDIS_URL": redis_url,
            "TOOLBAG_SKILLS_DIR": str(REPO / "skills"),
            "TOOLBAG_METRICS_PORT": "0",
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("TOOLBAG_SIMULATOR_URL", None)
        self.client = Client(self.config, redis_url)

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - closed when the process is reaped
        proc = subprocess.Popen([sys.executable, "-m", "toolbag.cli", *args], env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, cwd=REPO)
        self.procs[name] = proc
        return proc

    def worker(self, provider: str, concurrency: int = 20, name: str | None = None,
               metrics_port: int | None = None) -> subprocess.Popen[bytes]:
        name = name or f"worker-{provider}"
        return self.start(name, "worker", "--provider", provider, "--concurrency", str(concurrency),
                          *self._metrics_args(name, metrics_port))

    def supervisor(self, name: str = "supervisor", metrics_port: int | None = None) -> subprocess.Popen[bytes]:
        return self.start(name, "supervisor", *self._metrics_args(name, metrics_port))

    def _metrics_args(self, name: str, port: int | None) -> list[str]:
        if port is None:
            return []
        self.metrics_ports[name] = port
        return ["--metrics-port", str(port)]

    def wait_workers(self, count: int, timeout_s: float = 120.0) -> None:
        """Until ``count`` worker processes announce that they consume their queues."""
        deadline = time.monotonic() + timeout_s
        while len(self.client.store.live_workers(60)) < count:
            for name, proc in self.procs.items():
                if proc.poll() is not None and name.startswith("worker"):
                    raise AssertionError(f"{name} exited early:\n{self.log(name)}")
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.client.store.live_workers(60)} workers came up")
            time.sleep(0.05)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        proc.send_signal(sig)
        proc.wait(timeout=30)

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            reap(proc)


@contextmanager
def running_fleet(
    redis_url: str,
    tmp: Path,
    *,
    providers: tuple[str, ...] = ("anthropic", "openai", "gemini", "local"),
    concurrency: int = 20,
    supervisor: bool = True,
    config_overrides: dict[str, Any] | None = None,
    metrics_ports: bool = False,
    simulator: Any = None,
    env: dict[str, str] | None = None,
) -> Iterator[Fleet]:
    """``metrics_ports``: give every process a free ``/metrics`` port (``fleet.metrics_ports``).
    ``simulator``: use this one (anything with ``.url``, e.g. :func:`cli_simulator`) instead of an in-process one.
    ``env``: extra environment variables for every process."""
    with contextlib.nullcontext(simulator) if simulator is not None else SimulatorServer() as sim:
        config = fleet_config_dict(sim.url)
        for key, value in (config_overrides or {}).items():
            config[key] = value
        fleet = Fleet(redis_url, tmp, config, sim)
        fleet.env.update(env or {})
        try:
            for provider in providers:
                fleet.worker(provider, concurrency, metrics_port=free_port() if metrics_ports else None)
            if supervisor:
                fleet.supervisor(metrics_port=free_port() if metrics_ports else None)
            fleet.wait_workers(len(providers))
            yield fleet
        finally:
            fleet.stop()
            redis.Redis.from_url(redis_url).flushdb()


def pointer_report(store: Any, job_id: str) -> dict[str, Any]:
    """Where a job's Celery pointer messages are (queue lists, kombu's unacked hash), with its record and
    history: what a test prints when a job never finishes."""
    from toolbag.store.messages import envelope_pointer, unacked_pointer

    found: list[str] = []
    for key in store.redis.scan_iter(match="*", count=1000):
        if store.redis.type(key) == b"list":
            for raw in store.redis.lrange(key, 0, -1):
                ptr = envelope_pointer(raw)
                if ptr and ptr[0] == job_id:
                    found.append(f"list {key.decode()} token {ptr[1]}")
    for tag, raw in store.redis.hgetall(store.keys.kombu_unacked).items():
        delivered = unacked_pointer(raw)
        if delivered and delivered[1] == job_id:
            score = store.redis.zscore(store.keys.kombu_unacked_index, tag)
            found.append(f"unacked {tag.decode()} token {delivered[2]} delivered {score}")
    record, history = store.snapshot(job_id)
    return {"record": record, "history": history, "pointers": found, "now": time.time()}
