"""``toolbag dev``: the whole fleet on one machine, on the embedded defaults, until Ctrl-C."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from toolbag.config import load_config, redis_url
from toolbag.devfleet.harness import (
    HarnessError,
    LocalFleet,
    RedisServer,
    free_port,
    next_free_port,
    port_free,
    redis_answers,
    start_redis,
    start_simulator,
)

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


def ensure_redis(url: str) -> tuple[str, RedisServer | None]:
    """Reuse a reachable Redis, else start ``redis-server`` on a free port, else explain what to do."""
    if redis_answers(url):
        return url, None
    try:
        server = start_redis(6379 if port_free(6379) else None)
    except HarnessError as err:
        raise SystemExit(
            f"No Redis at {url}, and {err}.\n"
            "  Point TOOLBAG_REDIS_URL at a Redis you have, or run the fleet with `docker compose up`."
        ) from None
    console.print(f"started redis-server on port {server.port} (nothing was listening at {url})")
    return f"{server.url}/0", server


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run_dev(*, demo: bool = True, exit_after_demo: bool = False) -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # stop the children on SIGTERM as on Ctrl-C
    config = load_config()
    workdir = Path(tempfile.mkdtemp(prefix="toolbag-dev-"))
    url, redis_server = ensure_redis(redis_url())
    sim_port = 8900 if port_free(8900) else free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    env = {**os.environ, "TOOLBAG_REDIS_URL": url, "TOOLBAG_SIMULATOR_URL": sim_url}
    fleet = LocalFleet(config, url, workdir, env=env, own_session=True)
    endpoints: list[tuple[str, str]] = []
    try:
        try:
            sim = start_simulator(fleet, port=sim_port, metrics_port=next_free_port(9102), timeout_s=20)
        except HarnessError:
            raise SystemExit(f"the simulator did not start; see {workdir / 'simulator.log'}") from None
        endpoints.append(("simulator", sim.url))
        endpoints.append(("simulator metrics", f"http://127.0.0.1:{sim.metrics_port}/metrics"))
        port = 9100
        for provider in config.providers:
            port = next_free_port(port)
            fleet.worker(provider, 50, metrics_port=port)
            endpoints.append((f"worker {provider}", f"http://127.0.0.1:{port}/metrics"))
            port += 1
        port = next_free_port(port)
        fleet.supervisor(metrics_port=port)
        endpoints.append(("supervisor", f"http://127.0.0.1:{port}/metrics"))
        table = Table("process", "endpoint", title="toolbag dev fleet")
        for name, endpoint in endpoints:
            table.add_row(name, endpoint)
        table.add_row("redis", url)
        table.add_row("logs", str(workdir))
        console.print(table)
        if demo:
            ok = _run_demo(fleet, sim_url)
            if exit_after_demo:
                return 0 if ok else 1
        console.print("[bold green]fleet running[/] — submit with `toolbag submit summarize --input "
                      "'{\"text\": \"hi\"}' --wait` (with TOOLBAG_REDIS_URL=" + url + "). Ctrl-C stops everything.")
        while True:
            dead = fleet.exited()
            if dead:
                console.print(f"[red]{dead} exited; see {workdir / (dead + '.log')}[/]")
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("stopping…")
        return 0
    finally:
        fleet.stop()
        if redis_server is not None:
            redis_server.stop()


def _run_demo(fleet: LocalFleet, sim_url: str) -> bool:
    from toolbag.client import JobRequest

    os.environ["TOOLBAG_SIMULATOR_URL"] = sim_url
    client = fleet.client
    try:
        fleet.wait_workers(len(fleet.config.providers), timeout_s=60, max_age_s=30)
    except HarnessError as err:
        console.print(f"workers did not come up: {err}", style="red", highlight=False, markup=False)
        return False
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
