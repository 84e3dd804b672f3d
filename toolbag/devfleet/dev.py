"""``toolbag dev``: the whole fleet on one machine, on the embedded defaults, until Ctrl-C."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from rich.console import Console, RenderableType
from rich.text import Text

from toolbag.cli.tables import Column, legible_table
from toolbag.config import load_config
from toolbag.devfleet.harness import (
    PORT_TRIES,
    HarnessError,
    LocalFleet,
    RedisServer,
    SimulatorProcess,
    free_port,
    next_free_port,
    port_free,
    redis_answers,
    start_redis,
    start_simulator,
    terminate,
)
from toolbag.errors import ToolbagError

console = Console(soft_wrap=True, highlight=False, markup=False, emoji=False)  # paths, URLs, job text: data

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


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")



class DevFleetError(ToolbagError):
    """``toolbag dev`` cannot start the fleet: one line saying why and what to do."""

def choose_redis(asked: str | None) -> tuple[str, RedisServer | None]:
    """The Redis the dev fleet uses, and the redis-server started for it if any.

    ``asked`` (a URL) is used if it answers; if it names a free local port, redis-server is started on exactly
    that port. With nothing asked, a private redis-server on a free port: never a Redis nobody named.
    """
    if asked is None:
        server = _start_redis(None, "no TOOLBAG_REDIS_URL given")
        console.print(f"started a private redis-server at {server.url}/0 (no TOOLBAG_REDIS_URL given)")
        return f"{server.url}/0", server
    if redis_answers(asked):
        console.print(f"using the Redis at {asked}")
        return asked, None
    port = _startable_port(asked)
    if port is None:
        raise DevFleetError(
            f"No Redis answers at {asked}, and it does not name a free local port to start one on; "
            "start that Redis, point TOOLBAG_REDIS_URL (or --redis-url) elsewhere, or unset it for a private "
            "redis-server"
        )
    server = _start_redis(port, f"no Redis answers at {asked}")
    console.print(f"started redis-server on port {port} for {asked}")
    return asked, server


def _startable_port(url: str) -> int | None:
    """The local port ``url`` names, if nothing listens there and the URL carries no credentials."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "redis" or parts.hostname not in LOCAL_HOSTS or parts.username or parts.password:
        return None
    port = parts.port or 6379
    return port if port_free(port) else None


def _start_redis(port: int | None, why: str) -> RedisServer:
    try:
        return start_redis(port)
    except HarnessError as err:
        raise DevFleetError(
            f"{why}, and {err}; point TOOLBAG_REDIS_URL at a Redis you have, or run the fleet with "
            "`docker compose up`"
        ) from None


class _MetricsPorts:
    """Hands out free ``/metrics`` ports, never the same one twice (a child may not have bound its port yet)."""

    def __init__(self) -> None:
        self.taken: set[int] = set()

    def next_from(self, port: int) -> int:
        port = next_free_port(port)
        while port in self.taken:
            port = next_free_port(port + 1)
        self.taken.add(port)
        return port


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run_dev(*, demo: bool = True, exit_after_demo: bool = False, redis_url: str | None = None,
            simulator_port: int | None = None, metrics_port: int | None = None, logs_dir: Path | None = None) -> int:
    """Run the fleet until Ctrl-C (or the demo's end with ``exit_after_demo``); the exit code.

    ``redis_url``: the Redis to use, default ``$TOOLBAG_REDIS_URL`` (see :func:`choose_redis`).
    ``simulator_port``: default 8900, else a free port. ``metrics_port``: the first ``/metrics`` port, each
    process taking the next free one (default: the simulator from 9102, workers and supervisor from 9100).
    ``logs_dir``: where the processes log, kept; default a temporary folder, removed on exit unless something
    failed (then its path is printed).
    """
    signal.signal(signal.SIGTERM, _interrupt)  # stop the children on SIGTERM as on Ctrl-C
    config = load_config()
    metrics_ports = _MetricsPorts()
    url, redis_server = choose_redis(redis_url or os.environ.get("TOOLBAG_REDIS_URL"))
    if logs_dir is not None:
        logs_dir.mkdir(parents=True, exist_ok=True)
    workdir = logs_dir or Path(tempfile.mkdtemp(prefix="toolbag-dev-"))
    fleet = LocalFleet(config, url, workdir, env=os.environ, own_session=True)
    endpoints: list[tuple[str, str]] = []
    code = 1
    try:
        sim = _start_simulator(fleet, simulator_port, metrics_ports.next_from(metrics_port or 9102))
        sim_url = sim.url
        fleet.env["TOOLBAG_SIMULATOR_URL"] = sim_url
        endpoints.append(("simulator", sim.url))
        endpoints.append(("simulator metrics", f"http://127.0.0.1:{sim.metrics_port}/metrics"))
        for provider in config.providers:
            port = metrics_ports.next_from(metrics_port or 9100)
            fleet.worker(provider, 50, metrics_port=port)
            endpoints.append((f"worker {provider}", f"http://127.0.0.1:{port}/metrics"))
        port = metrics_ports.next_from(metrics_port or 9100)
        fleet.supervisor(metrics_port=port)
        endpoints.append(("supervisor", f"http://127.0.0.1:{port}/metrics"))
        api_url, api_key = _start_api(fleet, workdir)
        endpoints.append(("api", f"{api_url} (OpenAI SDKs: base_url {api_url}/v1)"))
        endpoints.append(("redis", url))
        endpoints.append(("logs", str(workdir)))
        console.print(legible_table([Column("process"), Column("endpoint")], endpoints, console.width,
                                    title="toolbag dev fleet"))
        console.print(f"api {api_url} key (caller dev): {api_key}")
        if demo:
            ok = _run_demo(fleet, sim_url)
            if exit_after_demo:
                code = 0 if ok else 1
                return code
        console.print(Text.assemble(("fleet running", "bold green"), "; Ctrl-C stops everything. In another shell:"))
        console.print(how_to_submit(url))
        while True:
            dead = fleet.exited()
            if dead:
                console.print(f"{dead} exited; see {workdir / (dead + '.log')}", style="red")
                return code
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("stopping…")
        code = 0
        return code
    finally:
        fleet.stop()
        if redis_server is not None:
            redis_server.stop()
        if logs_dir is None and code == 0:
            shutil.rmtree(workdir, ignore_errors=True)
        elif logs_dir is None:
            console.print(f"the processes' logs are kept in {workdir}")


def _start_simulator(fleet: LocalFleet, asked_port: int | None, metrics_port: int) -> SimulatorProcess:
    """The simulator on ``asked_port``; none asked: on 8900 when it is free, else (or when 8900 is taken before
    the simulator binds it) on any free port."""
    tries: list[int | None] = [asked_port] if asked_port is not None else [*([8900] if port_free(8900) else []), None]
    for port in tries:
        try:
            return start_simulator(fleet, port=port, timeout_s=20, metrics_port=metrics_port)
        except HarnessError:
            continue
    raise DevFleetError(f"the simulator did not start; see {fleet.log_dir / 'simulator.log'}")


def _start_api(fleet: LocalFleet, workdir: Path, preferred_port: int = 8080) -> tuple[str, str]:
    """``toolbag api`` on ``preferred_port`` when it is free, else (or when it is taken before the api binds it)
    on a free port; up, and a fresh key for the caller ``dev`` that it accepts, which also shows the api answering
    is this fleet's and not another one on that port."""
    from toolbag.api.keys import KeyStore

    _, secret = KeyStore(fleet.client.store.redis, fleet.client.store.keys).create("dev")
    ports = [*([preferred_port] if port_free(preferred_port) else []), *(free_port() for _ in range(PORT_TRIES))]
    for port in ports:
        url = f"http://127.0.0.1:{port}"
        proc = fleet.start("api", "api", "--port", str(port))
        if _accepts(proc, url, secret, timeout_s=30):
            return url, secret
    raise DevFleetError(f"the api did not start; see {workdir / 'api.log'}")


def _accepts(proc: subprocess.Popen[bytes], url: str, secret: str, timeout_s: float) -> bool:
    """Until the api at ``url`` accepts ``secret``: True; False when ``proc`` exited first (its port was taken)
    or did not answer within ``timeout_s`` (then it is stopped)."""
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(f"{url}/v1/models", headers={"Authorization": f"Bearer {secret}"})
    while proc.poll() is None:
        try:
            with urllib.request.urlopen(request, timeout=2):
                return True
        except OSError:  # not up yet, or another server on the port refusing the key (HTTPError)
            pass
        if time.monotonic() > deadline:
            terminate(proc, grace_s=5)
            return False
        time.sleep(0.1)
    return False


def how_to_submit(redis_url: str) -> str:
    """The commands that use this fleet from another shell, naming the ``toolbag`` this process runs from."""
    script = Path(sys.executable).parent / "toolbag"
    found = shutil.which("toolbag")
    on_path = found is not None and Path(found).resolve() == script.resolve()
    command = "toolbag" if on_path or not script.exists() else str(script)
    activate = Path(sys.prefix) / "bin" / "activate"
    lines = [f"  export TOOLBAG_REDIS_URL={shlex.quote(redis_url)}",
             f"  {shlex.quote(command)} submit summarize --input '{{\"text\": \"hi\"}}' --wait"]
    if command != "toolbag" and activate.exists():
        lines.append(f"  (or `source {activate}` once, then type just `toolbag`)")
    return "\n".join(lines)


def _preview(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def demo_table(rows: list[tuple[str, str, str, str, str, str, str]], width: int) -> RenderableType:
    """The demo's jobs at ``width``: short fields whole, attempts and output wrapped or on lines of their own."""
    columns = [Column("capability"), Column("tier"), Column("status"), Column("served by"),
               Column("attempts", whole=False), Column("latency"), Column("output", whole=False)]
    return legible_table(columns, rows, width, title="demo workload")


def _run_demo(fleet: LocalFleet, sim_url: str) -> bool:
    from toolbag.client import JobRequest

    os.environ["TOOLBAG_SIMULATOR_URL"] = sim_url
    client = fleet.client
    try:
        fleet.wait_workers(len(fleet.config.providers), timeout_s=60, max_age_s=30)
    except HarnessError as err:
        console.print(f"workers did not come up: {err}", style="red")
        return False
    jobs = client.submit_many([JobRequest(capability=c, tier=t, input=i, caller="demo") for c, t, i in DEMO])
    rows = []
    all_ok = True
    for (capability, tier, _), job in zip(DEMO, jobs, strict=True):
        result = job.result(timeout_s=60)
        all_ok &= result.ok
        last: dict[str, Any] = next((a for a in reversed(result.attempts) if a.get("type") == "attempt"), {})
        output = result.output if isinstance(result.output, str) else json.dumps(result.output)
        tries = " → ".join(f"{a['model']}:{a['outcome']}" for a in result.attempts if a.get("type") == "attempt")
        rows.append((capability, tier, result.status.value, str(result.model), tries,
                     f"{last.get('latency_s', 0):.3f}s", _preview(output or result.error or "")))
    console.print(demo_table(rows, console.width))
    return all_ok
