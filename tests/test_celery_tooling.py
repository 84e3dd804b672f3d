"""Celery's own tooling against a real fleet: ``celery -A workers.app inspect``, a plain ``celery worker`` that
refuses to start, queues that route by their own names, task events that name each attempt and its outcome,
and ``toolbag alive``, the liveness check that reads what the consumer's loop touches."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fleet import REPO, Fleet, running_fleet
from toolbag.config import TIERS

ROUTES = {"probe-openai": {tier: {"candidates": ["gpt-luna"]} for tier in TIERS},
          "probe-gemini": {tier: {"candidates": ["gemini-flash"]} for tier in TIERS}}


@pytest.fixture(scope="module")
def fleet(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    import yaml

    from toolbag.config import DEFAULT_CONFIG_PATH

    routes = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())["routes"] | ROUTES
    with running_fleet(redis_server, tmp_path_factory.mktemp("celery"), providers=("anthropic",), concurrency=4,
                       config_overrides={"routes": routes}) as f:
        f.start("worker-openai", "worker", "--provider", "openai", "--concurrency", "4", "--events",
                "--alive-file", str(f.tmp / "openai.alive"))
        f.wait_workers(2)
        yield f


def celery(fleet: Fleet, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "celery", "-A", "workers.app", *args], env=fleet.env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout_s)


def test_inspect_commands_reach_every_worker(fleet: Fleet) -> None:
    ping = celery(fleet, "inspect", "ping", "--timeout", "3", "--json")
    assert ping.returncode == 0, ping.stderr
    nodes = sorted(json.loads(ping.stdout.strip().splitlines()[-1]))
    assert [n.split("@")[0] for n in nodes] == ["anthropic", "openai", "supervisor"], nodes
    every = ["-d", ",".join(nodes), "--timeout", "10"]  # with destinations, each call returns once all replied
    queues = celery(fleet, "inspect", "active_queues", *every, "--json")
    assert queues.returncode == 0, queues.stderr
    by_worker: dict[str, Any] = json.loads(queues.stdout.strip().splitlines()[-1])
    consumed = {q["name"]: q for qs in by_worker.values() for q in qs}
    assert {"anthropic.interactive", "anthropic.standard", "anthropic.batch", "toolbag.supervisor"} <= set(consumed)
    for name, queue in consumed.items():  # each queue is bound to an exchange of its own name, by its own name
        assert queue["exchange"]["name"] == name and queue["routing_key"] == name, queue
    for command in ("active", "stats"):
        done = celery(fleet, "inspect", command, *every)
        assert done.returncode == 0 and "anthropic@" in done.stdout, (command, done.stdout, done.stderr)


def test_bindings_hold_each_queue_under_its_own_name(fleet: Fleet) -> None:
    """A publish to one queue's exchange reaches that queue only (kombu keeps bindings in Redis sets)."""
    redis, prefix = fleet.client.store.redis, fleet.config.fleet.key_prefix
    for name in ("anthropic.standard", "openai.batch", "toolbag.supervisor"):
        members = redis.smembers(f"{prefix}_kombu.binding.{name}")
        assert {m.decode().split("\x06\x16")[2] for m in members} == {name}, members


def test_a_plain_celery_worker_refuses_to_start_and_takes_nothing(fleet: Fleet) -> None:
    """No toolbag worker consumes gemini.standard: a job waits there; a plain Celery worker for that queue exits
    2 with one line before consuming, and the job's message is still on the queue, its attempt untouched."""
    job = fleet.client.submit("probe-gemini", input={"text": "wait for a real worker"}, tier="standard")
    record = fleet.client.store.get(job.id)
    queue = record.queue
    started = time.monotonic()
    done = celery(fleet, "worker", "-Q", queue, "-P", "threads", "-c", "2", "--without-gossip", "--without-mingle")
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "toolbag worker --provider" in lines[0], lines
    assert time.monotonic() - started < 60
    after = fleet.client.store.get(job.id)
    assert (after.status.value, after.token, after.attempt) == ("queued", record.token, record.attempt)
    assert fleet.client.store.redis.llen(fleet.client.store.keys.queue(queue)) == 1


class Events:
    """Celery's event receiver on the fleet's app, in a thread, collecting task events."""

    def __init__(self, fleet: Fleet) -> None:
        from workers.app import make_app

        self.app = make_app(fleet.config, fleet.redis_url)
        self.seen: list[dict[str, Any]] = []
        self.ready = threading.Event()
        self.receiver: Any = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(30)

    def _run(self) -> None:
        with self.app.connection_for_read() as conn:
            self.receiver = self.app.events.Receiver(conn, handlers={"*": self._on_event})
            for _ in self.receiver.consume(limit=None, timeout=None, wakeup=False):
                self.ready.set()  # subscribed: the first drain (or its 1 s timeout) is behind us

    def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("type", "").startswith("task-"):
            self.seen.append(event)

    def stop(self) -> None:
        if self.receiver is not None:
            self.receiver.should_stop = True
        self.thread.join(10)


def test_task_events_name_the_attempt_and_carry_its_outcome(fleet: Fleet) -> None:
    events = Events(fleet)
    try:
        ok = fleet.client.submit("probe-openai", input={"text": "a fine answer"}, tier="interactive")
        bad = fleet.client.submit("probe-openai", input={"text": "[[sim:bad_request]] refuse me"}, tier="batch")
        assert ok.result(60).ok
        assert not bad.result(60).ok
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len([e for e in events.seen if e["type"] in
                                                   ("task-succeeded", "task-failed")]) < 2:
            time.sleep(0.1)
    finally:
        events.stop()
    names = {e["uuid"]: e["name"] for e in events.seen if e["type"] == "task-received"}
    assert "toolbag.attempt:probe-openai:interactive:gpt-luna" in names.values(), names
    assert "toolbag.attempt:probe-openai:batch:gpt-luna" in names.values(), names
    ended = {names.get(e["uuid"]): e for e in events.seen if e["type"] in ("task-succeeded", "task-failed")}
    good = ended["toolbag.attempt:probe-openai:interactive:gpt-luna"]
    assert good["type"] == "task-succeeded" and good["result"] == "'ok'", good
    failed = ended["toolbag.attempt:probe-openai:batch:gpt-luna"]
    assert failed["type"] == "task-failed" and "bad_request" in failed["exception"], failed
    # the anthropic worker runs without --events: none of its attempts shows up
    assert not any(str(n).endswith(("claude-haiku", "claude-sonnet")) for n in names.values())


def alive(env: dict[str, str], path: Path, max_age_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "toolbag.cli", "alive", "--file", str(path), "--max-age-s",
                           str(max_age_s)], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)


def test_alive_fails_when_the_consumer_loop_stops_and_redis_answers(fleet: Fleet) -> None:
    """Last in this module: it stops the openai worker for a while."""
    path = fleet.tmp / "openai.alive"
    deadline = time.monotonic() + 30
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    first = path.stat().st_mtime
    deadline = time.monotonic() + 15
    while path.stat().st_mtime == first and time.monotonic() < deadline:
        time.sleep(0.2)
    assert path.stat().st_mtime > first, "the consumer's loop does not touch the file"
    done = alive(fleet.env, path, 3)
    assert done.returncode == 0 and done.stdout.startswith("ok"), (done.stdout, done.stderr)
    worker = fleet.procs["worker-openai"]
    os.kill(worker.pid, signal.SIGSTOP)  # the loop stops turning (as a wedged consumer's does)
    try:
        time.sleep(4)
        wedged = alive(fleet.env, path, 3)
        assert wedged.returncode == 1, (wedged.stdout, wedged.stderr)
        assert wedged.stderr.startswith("error: the consumer's loop has not run for"), wedged.stderr
        redis_gone = alive({**fleet.env, "TOOLBAG_REDIS_URL": "redis://127.0.0.1:1/0"}, path, 3)
        assert redis_gone.returncode == 0 and "Redis is unreachable" in redis_gone.stdout, redis_gone.stdout
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    deadline = time.monotonic() + 20
    while alive(fleet.env, path, 3).returncode != 0:
        assert time.monotonic() < deadline, "the consumer did not resume touching the file"
        time.sleep(0.5)
