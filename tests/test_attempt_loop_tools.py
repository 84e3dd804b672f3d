"""Tool loops on a worker's attempt loop (``toolbag.attempt.loop``, the async mode), in this process: real Redis,
the simulator, the MCP server of tests/gateway_mcp_server.py over HTTP and stdio. A local tool and an MCP tool
run through the loop; many loops wait in one slow MCP tool at once while the process's threads stay few (no
thread per attempt); the sync gateway still answers other threads while its MCP sessions live on the loop."""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from tests.mcp_process import MCP_TEST_SERVER
from toolbag.attempt.deltas import attempt_text
from toolbag.attempt.loop import STEP_THREADS, TAIL_THREADS, AttemptLoop
from toolbag.config import TIERS
from toolbag.gateway.gateway import BOOKKEEPING_THREADS
from toolbag.gateway.loop import ToolLoop
from toolbag.jobs import JobStatus
from toolbag.simulator.server import SimulatorServer
from toolbag.store.jobstore import AsyncAttemptStore
from toolbag.store.messages import envelope_pointer, queue_name
from toolbag.testing import InProcessFleet

PROVIDER, MODEL, MODEL_ID = "anthropic", "claude-haiku", "claude-haiku-5-5"
# the threads an attempt loop may add, whatever its number of attempts: its own, its small pools, the gateway's,
# asyncio's default executor (name lookups), a child watcher per stdio MCP server
EXTRA_THREADS_MAX = 1 + TAIL_THREADS + STEP_THREADS + BOOKKEEPING_THREADS + min(32, (os.cpu_count() or 1) + 4) + 2
CONCURRENT = max(40, EXTRA_THREADS_MAX + 8)  # attempts in the slow MCP tool at once
POLICY = """
version: 1
rules:
  - id: analyst-tools
    agents: ["analyst"]
    tools: ["math.eval", "web.*", "notes.*"]
"""


@pytest.fixture
def fleet(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mcp_http_server: str,
          sim: SimulatorServer) -> Iterator[InProcessFleet]:
    (tmp_path / "policy.yaml").write_text(POLICY)
    (tmp_path / "tools.yaml").write_text(
        "local:\n  - module: toolbag.gateway.builtin_tools\n"
        f"mcp:\n  web: {{transport: http, url: '{mcp_http_server}'}}\n"
        f"  notes: {{transport: stdio, command: '{sys.executable}', args: ['{MCP_TEST_SERVER}', 'stdio']}}\n"
        "loop: {max_steps: 4, tool_timeout_s: 40}\n"
    )
    monkeypatch.setenv("TOOLBAG_POLICY", str(tmp_path / "policy.yaml"))
    monkeypatch.setenv("TOOLBAG_TOOLS", str(tmp_path / "tools.yaml"))
    monkeypatch.setenv("TOOLBAG_AUDIT_JSONL", str(tmp_path / "audit.jsonl"))
    with InProcessFleet(redis_url=redis_url, providers=(PROVIDER,), simulator=sim) as made:
        yield made


def attempt_loop(fleet: InProcessFleet, redis_url: str, slots: int) -> AttemptLoop:
    return AttemptLoop(fleet.runners[PROVIDER], AsyncAttemptStore.from_url(redis_url, fleet.store.calls), slots)


def deliver(fleet: InProcessFleet, loop: AttemptLoop) -> list[Future[Any]]:
    """Hand every queued attempt of the provider to the loop, as a worker's Celery threads do."""
    futures: list[Future[Any]] = []
    for queue in (queue_name(PROVIDER, tier) for tier in TIERS):
        while (raw := fleet.store.redis.rpop(fleet.store.keys.queue(queue))) is not None:
            pointer = envelope_pointer(raw)
            assert pointer is not None
            handed = loop.hand(pointer[0], pointer[1], queue)
            assert handed is not None, f"attempt of {pointer[0]} not handed to the loop"
            futures.append(handed)
    return futures


def submit(fleet: InProcessFleet, text: str, tools: list[str]) -> Any:
    return fleet.client.submit("summarize", input={"text": text, "tools": tools}, caller="analyst",
                               tier="interactive", candidates=(MODEL,))


def test_a_local_tool_and_an_mcp_tool_run_on_the_loop(fleet: InProcessFleet, redis_url: str) -> None:
    loop = attempt_loop(fleet, redis_url, slots=4)
    try:
        local = submit(fleet, 'What is 6*7? [[sim:tool=math_eval {"expression": "6*7"}]]', ["math.eval"])
        remote = submit(fleet, 'Add. [[sim:tool=notes_add {"a": 40, "b": 2}]] [[sim:tool=web_read {"key": "k"}]]',
                        ["notes.add", "web.read"])
        for future in deliver(fleet, loop):
            future.result(timeout=60)
    finally:
        loop.stop(drain_s=5)
    assert local.result(timeout_s=5).output == f"[{MODEL_ID}] tool said: 42"
    streamed, _ = attempt_text(fleet.store.redis, fleet.store.keys.deltas(local.id), 1)
    assert streamed.endswith(f"[{MODEL_ID}] tool said: 42")  # the loop's steps streamed through the async sink
    done = remote.result(timeout_s=5)
    assert done.status is JobStatus.SUCCEEDED
    assert done.output == f"[{MODEL_ID}] tool said: 42 | note k: the meeting moved to Tuesday"
    assert [a["outcome"] for a in done.attempts] == ["ok"]


def test_many_loops_wait_in_one_mcp_tool_at_once_without_a_thread_each(fleet: InProcessFleet, redis_url: str) -> None:
    before = threading.active_count()
    loop = attempt_loop(fleet, redis_url, slots=CONCURRENT)
    peak = [before]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            peak[0] = max(peak[0], threading.active_count() - 1)  # not counting this sampler
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    key = uuid.uuid4().hex[:8]
    try:
        text = f'Meet. [[sim:tool=web_barrier {{"key": "{key}", "parties": {CONCURRENT}}}]]'
        jobs = [submit(fleet, text, ["web.barrier"]) for _ in range(CONCURRENT)]
        futures = deliver(fleet, loop)
        assert len(futures) == CONCURRENT
        for future in futures:
            future.result(timeout=90)
    finally:
        sampling.set()
        sampler.join()
        names = sorted(t.name for t in threading.enumerate())
        loop.stop(drain_s=5)
    outputs = [job.result(timeout_s=5).output for job in jobs]
    # the barrier answers only when all the calls are in the MCP server at once: every loop waited concurrently
    assert outputs == [f"[{MODEL_ID}] tool said: together: {CONCURRENT}"] * CONCURRENT, outputs[:3]
    assert peak[0] - before <= EXTRA_THREADS_MAX < CONCURRENT, (before, peak[0], names)


def test_the_sync_gateway_still_serves_other_threads_while_its_sessions_live_on_the_loop(
    fleet: InProcessFleet, redis_url: str,
) -> None:
    caller = fleet.runners[PROVIDER].caller
    assert isinstance(caller, ToolLoop)
    loop = attempt_loop(fleet, redis_url, slots=2)
    try:
        registry = caller.gateway.registry
        assert "web.add" in registry.catalog()  # listed on the attempt loop, waited for from this thread
        added = registry.call("web.add", {"a": 1, "b": 2}, timeout_s=10)
        assert (added.outcome, added.text) == ("ok", "3")
        assert registry._loop is not None and registry._loop.loop is loop.loop  # the sessions are the loop's
    finally:
        loop.stop(drain_s=5)
