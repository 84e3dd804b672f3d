"""Local fleets: a private redis-server, the simulator, workers and supervisors as child processes.

Every process runs the real CLI (``python -m toolbag.cli ...``) and logs to ``<log_dir>/<name>.log``; stopping
asks gently (SIGTERM, a warm shutdown) and kills what has not exited after a grace period. ``toolbag dev``, the
integration tests and the benchmarks all start their fleets here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from toolbag.client import Client
from toolbag.config import Config
from toolbag.errors import ToolbagError

LOCALHOST = "127.0.0.1"
REDIS_INSTALL_HINT = "Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis"


class HarnessError(ToolbagError):
    """A local fleet's process is missing, did not come up in time, or exited early."""


def free_port() -> int:
    """A TCP port nobody listens on right now (for a child process to bind)."""
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def port_free(port: int) -> bool:
    """Nothing accepts connections on ``127.0.0.1:port``."""
    with socket.socket() as sock:
        return sock.connect_ex((LOCALHOST, port)) != 0


def next_free_port(port: int) -> int:
    """``port`` if free, else the next free one above it."""
    while not port_free(port):
        port += 1
    return port


def redis_answers(url: str) -> bool:
    """A Redis at ``url`` answers PING."""
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def redis_pid(url: str) -> int | None:
    """The process id of the redis-server answering at ``url``, or None when none answers."""
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2) as client:
            return int(client.info("server")["process_id"])
    except (redis.RedisError, KeyError, ValueError):
        return None


def _own_answer(proc: subprocess.Popen[bytes], url: str, pid_at: Callable[[str], int | None], what: str,
                timeout_s: float) -> bool:
    """Until the server answering at ``url`` is ``proc`` itself (``pid_at`` names the process that answers): True; False
    when ``proc`` exited first (it lost its port: something else took it after it was found free, and may be
    answering there); HarnessError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            return False
        if pid_at(url) == proc.pid:
            return True
        if time.monotonic() > deadline:
            raise HarnessError(f"{what} did not answer within {timeout_s:g} s")
        time.sleep(0.05)


PORT_TRIES = 5  # a child given a free port may lose it to another process before it binds: try another


def wait_redis(url: str, timeout_s: float = 10.0) -> None:
    """Until a Redis at ``url`` answers PING; HarnessError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not redis_answers(url):
        if time.monotonic() > deadline:
            raise HarnessError(f"no Redis answered at {url} within {timeout_s:g} s")
        time.sleep(0.05)


def wait_http(url: str, timeout_s: float = 30.0) -> None:
    """Until ``url`` answers (any HTTP status counts); HarnessError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise HarnessError(f"{url} did not answer within {timeout_s:g} s") from None
            time.sleep(0.05)


def reap(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """Wait for a process already asked to stop; kill it if it has not exited within ``grace_s``."""
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def terminate(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM (a warm shutdown for toolbag's processes), then :func:`reap`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    reap(proc, grace_s)


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def delete_keys(client: redis.Redis, prefix: str, batch: int = 1000) -> int:
    """Delete every key that starts with ``prefix`` (SCAN, then UNLINK in batches); how many were deleted."""
    deleted = 0
    found: list[bytes] = []
    for key in client.scan_iter(match=f"{_glob_escape(prefix)}*", count=batch):
        found.append(key)
        if len(found) >= batch:
            deleted += int(client.unlink(*found))
            found.clear()
    if found:
        deleted += int(client.unlink(*found))
    return deleted


@dataclass
class RedisServer:
    """A redis-server of our own on ``127.0.0.1``: no persistence, noeviction, files in a temporary directory."""

    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path

    @property
    def url(self) -> str:
        """The server's URL, naming no database (clients use database 0; append ``/N`` for another)."""
        return f"redis://{LOCALHOST}:{self.port}"

    def stop(self) -> None:
        terminate(self.proc, grace_s=10)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_redis(port: int | None = None, *, databases: int = 16, timeout_s: float = 10.0) -> RedisServer:
    """``redis-server`` on ``port`` (a free one when None), answering PING when this returns. The server that
    answers is checked to be the one started (its process id), never another Redis on that port."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise HarnessError(f"redis-server is not installed ({REDIS_INSTALL_HINT})")
    for _ in range(PORT_TRIES if port is None else 1):
        chosen = free_port() if port is None else port
        workdir = Path(tempfile.mkdtemp(prefix="toolbag-redis-"))
        proc = subprocess.Popen(
            [binary, "--port", str(chosen), "--bind", LOCALHOST, "--save", "", "--appendonly", "no",
             "--dir", str(workdir), "--databases", str(databases), "--maxmemory-policy", "noeviction"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        server = RedisServer(chosen, proc, workdir)
        try:
            if _own_answer(proc, server.url, redis_pid, f"redis-server on port {chosen}", timeout_s):
                return server
        except HarnessError:
            server.stop()
            raise HarnessError(f"redis-server did not start on port {chosen}") from None
        server.stop()
    raise HarnessError(f"redis-server did not start on port {chosen} (is the port taken?)")


@contextmanager
def private_redis(port: int | None = None, *, databases: int = 16) -> Iterator[RedisServer]:
    """:func:`start_redis`, stopped (its data gone) on exit."""
    server = start_redis(port, databases=databases)
    try:
        yield server
    finally:
        server.stop()


class Processes:
    """Named child processes running ``python -m toolbag.cli <args>``, each logging to ``<log_dir>/<name>.log``.

    ``own_session`` puts each child in a session of its own, so a Ctrl-C in the terminal reaches only the
    parent, which then stops the children in order.
    """

    def __init__(self, log_dir: Path, env: Mapping[str, str] | None = None, *, cwd: Path | None = None,
                 own_session: bool = False) -> None:
        self.log_dir = log_dir
        self.env: dict[str, str] = {**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"}
        self.cwd = cwd
        self.own_session = own_session
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with open(self.log_dir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "toolbag.cli", *args], env=self.env, cwd=self.cwd,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=self.own_session)
        self.procs[name] = proc
        return proc

    def exited(self) -> str | None:
        """The name of a process that has exited, if any."""
        return next((name for name, proc in self.procs.items() if proc.poll() is not None), None)

    def log(self, name: str, tail_chars: int = 4000) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-tail_chars:] if path.exists() else ""

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` and wait for the process to exit."""
        proc = self.procs[name]
        proc.send_signal(sig)
        proc.wait(timeout=30)

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM every running process, then kill those still running after ``grace_s``."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in self.procs.values():
            reap(proc, max(0.1, deadline - time.monotonic()))


@dataclass
class SimulatorProcess:
    """``toolbag simulator`` in its own process, as production runs it."""

    url: str
    metrics_port: int
    proc: subprocess.Popen[bytes]


def _simulator_pid(url: str) -> int | None:
    try:
        with urllib.request.urlopen(f"{url}/_sim/health", timeout=2) as answer:
            pid = json.loads(answer.read()).get("pid")
    except (OSError, ValueError, AttributeError):
        return None
    return pid if isinstance(pid, int) else None


def start_simulator(processes: Processes, *, name: str = "simulator", port: int | None = None,
                    metrics_port: int | None = None, faults: Path | None = None,
                    timeout_s: float = 30.0) -> SimulatorProcess:
    """The simulator as one of ``processes`` (free ports when None), answering when this returns. The simulator
    that answers is checked to be the one started (``/_sim/health`` names its process), never another on that
    port; a free port lost before the simulator bound it is replaced by another."""
    for _ in range(PORT_TRIES if port is None else 1):
        chosen = free_port() if port is None else port
        metrics_chosen = free_port() if metrics_port is None else metrics_port
        args = ["simulator", "--port", str(chosen), "--metrics-port", str(metrics_chosen)]
        if faults is not None:
            args += ["--faults", str(faults)]
        proc = processes.start(name, *args)
        url = f"http://{LOCALHOST}:{chosen}"
        try:
            if _own_answer(proc, url, _simulator_pid, f"the simulator at {url}", timeout_s):
                return SimulatorProcess(url, metrics_chosen, proc)
        except HarnessError as err:
            terminate(proc, grace_s=5)
            raise HarnessError(f"the simulator did not start: {err}\n{processes.log(name)}") from None
    raise HarnessError(f"the simulator did not start: it exited (is port {chosen} taken?)\n{processes.log(name)}")


@contextmanager
def simulator_process(log_dir: Path, *, port: int | None = None, metrics_port: int | None = None,
                      faults: Path | None = None, cwd: Path | None = None) -> Iterator[SimulatorProcess]:
    """:func:`start_simulator` on its own, stopped on exit."""
    processes = Processes(log_dir, cwd=cwd)
    try:
        yield start_simulator(processes, port=port, metrics_port=metrics_port, faults=faults)
    finally:
        processes.stop()


class LocalFleet(Processes):
    """Workers and supervisors of one fleet on one Redis, and a client for it.

    ``config`` is what this process reads (its key prefix names the fleet's keys); the children read
    ``config_path`` when given, else whatever ``env`` makes them find. ``env`` defaults to this process's.
    Processes get no ``/metrics`` port unless one is given (``TOOLBAG_METRICS_PORT=0``).
    """

    def __init__(self, config: Config, redis_url: str, log_dir: Path, *, config_path: Path | None = None,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None, own_session: bool = False) -> None:
        super().__init__(log_dir, env, cwd=cwd, own_session=own_session)
        self.env.update({"TOOLBAG_REDIS_URL": redis_url, "TOOLBAG_METRICS_PORT": "0"})
        if config_path is not None:
            self.env["TOOLBAG_CONFIG"] = str(config_path)
        self.config = config
        self.config_path = config_path
        self.redis_url = redis_url
        self.client = Client(config, redis_url)
        self.metrics_ports: dict[str, int] = {}

    def worker(self, provider: str, concurrency: int | None = 20, name: str | None = None,
               metrics_port: int | None = None) -> subprocess.Popen[bytes]:
        """A worker for ``provider`` with ``concurrency`` slots (None: the provider's configured number)."""
        name = name or f"worker-{provider}"
        slots = [] if concurrency is None else ["--concurrency", str(concurrency)]
        return self.start(name, "worker", "--provider", provider, *slots, *self._metrics_args(name, metrics_port))

    def supervisor(self, name: str = "supervisor", metrics_port: int | None = None) -> subprocess.Popen[bytes]:
        return self.start(name, "supervisor", *self._metrics_args(name, metrics_port))

    def _metrics_args(self, name: str, port: int | None) -> list[str]:
        if port is None:
            return []
        self.metrics_ports[name] = port
        return ["--metrics-port", str(port)]

    def wait_workers(self, count: int, timeout_s: float = 120.0, max_age_s: float = 60.0) -> None:
        """Until ``count`` worker processes announce that they consume their queues; HarnessError with the log
        of a worker that exited, or after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while len(live := self.client.store.live_workers(max_age_s)) < count:
            for name, proc in self.procs.items():
                if name.startswith("worker") and proc.poll() is not None:
                    raise HarnessError(f"{name} exited early:\n{self.log(name)}")
            if time.monotonic() > deadline:
                raise HarnessError(f"only {live} of {count} workers came up within {timeout_s:g} s; logs in "
                                   f"{self.log_dir}")
            time.sleep(0.05)
