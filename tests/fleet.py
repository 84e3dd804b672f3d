"""A real fleet for integration tests, on the library's harness (:mod:`toolbag.devfleet.harness`).

Workers are separate OS processes started with the real CLI (``python -m toolbag.cli worker``), so a test
can SIGKILL one mid-attempt exactly as production would lose it. Every fleet has a key prefix of its own, so
fleets share one Redis database; on exit a fleet deletes its own keys and nothing else.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from toolbag.config import DEFAULT_CONFIG_PATH, parse_config
from toolbag.devfleet.harness import (
    LocalFleet,
    SimulatorProcess,
    delete_keys,
    free_port,
    simulator_process,
    terminate,
    wait_http,
)
from toolbag.simulator.server import SimulatorServer

__all__ = ["REPO", "CliSimulator", "Fleet", "cli_simulator", "fleet_config_dict", "free_port", "pointer_report",
           "running_fleet", "terminate", "wait_http"]

REPO = Path(__file__).resolve().parent.parent

CliSimulator = SimulatorProcess


@contextmanager
def cli_simulator(tmp: Path, faults: Path | None = None) -> Iterator[SimulatorProcess]:
    """``toolbag simulator`` as its own process on free ports (vendor API and ``/metrics``), stopped on exit."""
    with simulator_process(tmp, faults=faults, cwd=REPO) as sim:
        yield sim


def fleet_config_dict(simulator_url: str, **fleet_overrides: Any) -> dict[str, Any]:
    """The embedded defaults, pointed at a test simulator, with short leases and timeouts and a fresh prefix."""
    data: dict[str, Any] = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data = copy.deepcopy(data)
    data["simulator_url"] = simulator_url
    data["fleet"].update({"lease_ttl_s": 2, "unclaimed_delivery_s": 5, "key_prefix": f"t{uuid.uuid4().hex[:6]}:"})
    data["fleet"].update(fleet_overrides)
    for tier in data["tiers"].values():
        tier.update({"connect_timeout_s": 2, "first_token_timeout_s": 3, "total_timeout_s": 10})
    return data


class Fleet(LocalFleet):
    """Processes of one test fleet, its config file and logs in ``tmp``. Use :func:`running_fleet`."""

    def __init__(self, redis_url: str, tmp: Path, config: dict[str, Any], simulator: Any) -> None:
        self.tmp = tmp
        self.simulator = simulator
        config_path = tmp / "toolbag.yaml"
        config_path.write_text(yaml.safe_dump(config))
        env = {k: v for k, v in os.environ.items() if k != "TOOLBAG_SIMULATOR_URL"}
        env["TOOLBAG_SKILLS_DIR"] = str(REPO / "skills")
        super().__init__(parse_config(config), redis_url, tmp, config_path=config_path, env=env, cwd=REPO)


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
    """A worker per provider and a supervisor on ``redis_url``, up when this yields; on exit they stop and the
    fleet's keys (its ``key_prefix``) are deleted.

    ``metrics_ports``: give every process a free ``/metrics`` port (``fleet.metrics_ports``).
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
            delete_keys(fleet.client.store.redis, fleet.config.fleet.key_prefix)


def pointer_report(store: Any, job_id: str) -> dict[str, Any]:
    """Where a job's Celery pointer messages are (queue lists, kombu's unacked hash), with its record and
    history: what a test prints when a job never finishes."""
    from toolbag.store.messages import envelope_pointer, unacked_pointer

    found: list[str] = []
    for key in store.redis.scan_iter(match=f"{store.keys.prefix}*", count=1000):
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
