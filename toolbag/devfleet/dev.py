"""``toolbag dev``: the whole fleet on one machine, on the embedded defaults, until Ctrl-C."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.table import Table

from toolbag.config import load_config, redis_url

console = Console()

DEMO = [
    ("summarize", "interactive", {"text": "toolbag routes capability jobs across vendors."}),
    ("classify", "interactive", {"text": "My invoice was charged twice, please help."}),
    ("extract", "standard", {"text": "Invoice 42 from ACME, total 99.50 EUR, due 2026-12-01."}),
    ("translate", "standard", {"text": "Good morning, fleet."}),
    ("answer", "standard", {"text": "Why do fleets need supervisors?"}),
    ("code-review", "batch", {"text": "def add(a, b): return a - b"}),
    ("chat", "batch", {"text": "Hello from the batch tier."}),
    ("summarize", "batch", {"text": "A long report about queues, leases and fencing tokens."}),
    # The simulator's Claude refuses this one: watch the supervisor reroute it to another vendor.
    ("summarize", "interactive", {"text": "[[sim:refusal@claude-*]] A text one model will not touch."}),
]


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redis_ok(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def ensure_redis(url: str, workdir: Path) -> tuple[str, subprocess.Popen[bytes] | None]:
    """Reuse a reachable Redis, else start ``redis-server`` on a free port, else explain what to do."""
    if _redis_ok(url):
        return url, None
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit(
            f"No Redis at {url} and no redis-server installed.\n"
            "  Install one (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis),\n"
            "  point TOOLBAG_REDIS_URL at a Redis you have, or run the fleet with `docker compose up`."
        )
    port = 6379 if _port_free(6379) else _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--maxmemory-policy", "noeviction"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    started = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not _redis_ok(started):
        if time.monotonic() > deadline:
            proc.terminate()
            raise SystemExit(f"redis-server did not start on port {port}")
        time.sleep(0.05)
    console.print(f"started redis-server on port {port} (nothing was listening at {url})")
    return started, proc


class Fleet:
    """Child processes of one dev fleet; stopped together, gently first."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115 - owned by the child for its lifetime
        proc = subprocess.Popen([sys.executable, "-m", "toolbag.cli", *args], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((name, proc))

    def check(self) -> str | None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                return name
        return None

    def stop(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_http(url: str, timeout_s: float) -> bool:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run_dev(*, demo: bool = True, exit_after_demo: bool = False) -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # stop the children on SIGTERM as on Ctrl-C
    config = load_config()
    workdir = Path(tempfile.mkdtemp(prefix="toolbag-dev-"))
    url, redis_proc = ensure_redis(redis_url(), workdir)
    sim_port = 8900 if _port_free(8900) else _free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    env = {**os.environ, "TOOLBAG_REDIS_URL": url, "TOOLBAG_SIMULATOR_URL": sim_url}
    fleet = Fleet()
    endpoints: list[tuple[str, str]] = []
    try:
        sim_metrics_port = _next_free(9102)
        fleet.spawn("simulator", ["simulator", "--port", str(sim_port), "--metrics-port", str(sim_metrics_port)],
                    env, workdir)
        if not _wait_http(f"{sim_url}/_sim/health", 20):
            raise SystemExit(f"the simulator did not start; see {workdir / 'simulator.log'}")
        endpoints.append(("simulator", sim_url))
        endpoints.append(("simulator metrics", f"http://127.0.0.1:{sim_metrics_port}/metrics"))
        port = 9100
        for provider in config.providers:
            port = _next_free(port)
            fleet.spawn(f"worker-{provider}", ["worker", "--provider", provider, "--concurrency", "50",
                                               "--metrics-port", str(port)], env, workdir)
            endpoints.append((f"worker {provider}", f"http://127.0.0.1:{port}/metrics"))
            port += 1
        port = _next_free(port)
        fleet.spawn("supervisor", ["supervisor", "--metrics-port", str(port)], env, workdir)
        endpoints.append(("supervisor", f"http://127.0.0.1:{port}/metrics"))
        table = Table("process", "endpoint", title="toolbag dev fleet")
        for name, endpoint in endpoints:
            table.add_row(name, endpoint)
        table.add_row("redis", url)
        table.add_row("logs", str(workdir))
        console.print(table)
        if demo:
            ok = _run_demo(url, sim_url)
            if exit_after_demo:
                return 0 if ok else 1
        console.print("[bold green]fleet running[/] — submit with `toolbag submit summarize --input "
                      "'{\"text\": \"hi\"}' --wait` (with TOOLBAG_REDIS_URL=" + url + "). Ctrl-C stops everything.")
        while True:
            dead = fleet.check()
            if dead:
                console.print(f"[red]{dead} exited; see {workdir / (dead + '.log')}[/]")
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("stopping…")
        return 0
    finally:
        fleet.stop()
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(timeout=10)


def _next_free(port: int) -> int:
    while not _port_free(port):
        port += 1
    return port


def _run_demo(url: str, sim_url: str) -> bool:
    from toolbag.client import Client, JobRequest

    os.environ["TOOLBAG_SIMULATOR_URL"] = sim_url
    config = load_config()
    client = Client(config, url)
    deadline = time.monotonic() + 60
    while len({m.split("|")[0] for m in client.store.live_workers(30)}) < len(config.providers):
        if time.monotonic() > deadline:
            console.print("[red]workers did not come up within 60s; see the logs[/]")
            return False
        time.sleep(0.2)
    jobs = client.submit_many([JobRequest(capability=c, tier=t, input=i, caller="demo") for c, t, i in DEMO])
    table = Table(title="demo workload")
    for name in ("capability", "tier", "status", "served by", "attempts", "latency"):
        table.add_column(name, no_wrap=True)
    table.add_column("output", no_wrap=True, overflow="ellipsis", max_width=40)
    all_ok = True
    for (capability, tier, _), job in zip(DEMO, jobs, strict=True):
        result = job.result(timeout_s=60)
        all_ok &= result.ok
        last: dict[str, Any] = next((a for a in reversed(result.attempts) if a.get("type") == "attempt"), {})
        output = result.output if isinstance(result.output, str) else str(result.output)
        tries = " → ".join(f"{a['model']}:{a['outcome']}" for a in result.attempts if a.get("type") == "attempt")
        table.add_row(capability, tier, result.status.value, str(result.model), tries,
                      f"{last.get('latency_s', 0):.3f}s", (output or result.error or "").strip()[:60])
    console.print(table)
    return all_ok
