"""Tool loops in a real async worker (``toolbag worker``, ``--attempt-loop async``: attempts on the process's event
loop, MCP sessions opened on it): a local tool, an MCP tool over stdio (tests/gateway_mcp_server.py), and an MCP
server that dies in the middle of a loop: the loop goes on with the tool's error, the attempt still ends with its
outcome, the supervisor decides on it as on any attempt, and the session is opened again for the next call."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fleet import Fleet, running_fleet
from tests.mcp_process import MCP_TEST_SERVER
from toolbag.config import TIERS
from toolbag.gateway.audit import AuditFilter, RedisAuditReader
from toolbag.jobs import JobStatus

MODEL = "gemini-flash"
POLICY = """
version: 1
rules:
  - id: analyst-tools
    agents: ["analyst"]
    tools: ["math.eval", "notes.*", "test.again"]
"""
TOOLS = f"""
local:
  - module: toolbag.gateway.builtin_tools
  - module: tests.gateway_tools
mcp:
  notes: {{transport: stdio, command: '{sys.executable}', args: ['{MCP_TEST_SERVER}', 'stdio']}}
loop: {{max_steps: 3, tool_timeout_s: 15}}
"""


@pytest.fixture(scope="module")
def fleet(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("loopfleet")
    (tmp / "policy.yaml").write_text(POLICY)
    (tmp / "tools.yaml").write_text(TOOLS)
    routes = {"tools": {tier: {"candidates": [MODEL]} for tier in TIERS}}
    env = {"TOOLBAG_POLICY": str(tmp / "policy.yaml"), "TOOLBAG_TOOLS": str(tmp / "tools.yaml"),
           "TOOLBAG_AUDIT_JSONL": str(tmp / "audit.jsonl"), "TOOLBAG_ATTEMPT_LOOP": "async"}
    with running_fleet(redis_server, tmp, providers=("gemini",), config_overrides={"routes": routes}, env=env) as f:
        yield f


def submit(fleet: Fleet, text: str, tools: list[str]) -> Any:
    return fleet.client.submit("tools", input={"text": text, "tools": tools}, caller="analyst", tier="interactive")


def tool_calls(fleet: Fleet, job_id: str) -> list[tuple[str, str]]:
    store = fleet.client.store
    found = RedisAuditReader(store.redis, store.keys).query(AuditFilter(job_id=job_id, event="call"), 100)
    return sorted((e["tool"], e["outcome"]) for _, e in found)


def test_a_local_tool_and_an_mcp_tool_in_an_async_worker(fleet: Fleet) -> None:
    model_id = fleet.config.models[MODEL].model_id
    local = submit(fleet, 'What is 6*7? [[sim:tool=math_eval {"expression": "6*7"}]]', ["math.eval"])
    remote = submit(fleet, 'Add. [[sim:tool=notes_add {"a": 40, "b": 2}]]', ["notes.add"])
    for job in (local, remote):
        result = job.result(timeout_s=60)
        assert result.status is JobStatus.SUCCEEDED, (result, fleet.log("worker-gemini"))
        assert result.output == f"[{model_id}] tool said: 42", result.output
        assert [a.get("outcome") for a in result.attempts] == ["ok"], result.attempts
    assert tool_calls(fleet, remote.id) == [("notes.add", "ok")]


def test_an_mcp_server_lost_mid_loop_ends_the_attempt_and_the_job_is_decided(fleet: Fleet) -> None:
    # step 1: notes.crash kills the server mid-call (its session is lost) while test.again asks for another step;
    # the model keeps asking until the loop's limit: the attempt fails (invalid_output) and the supervisor decides
    text = "Go. [[sim:tool=notes_crash {}]] [[sim:tool=test_again {}]]"
    job = submit(fleet, text, ["notes.crash", "test.again"])
    result = job.result(timeout_s=90)
    assert result.status is JobStatus.ESCALATED, (result, fleet.log("worker-gemini"))
    attempts = [a for a in result.attempts if a["type"] == "attempt"]
    decisions = [a["action"] for a in result.attempts if a["type"] == "decision"]
    # every attempt ended once, with the loop's outcome; each was decided on once (a retry, then no candidate left)
    assert [a["outcome"] for a in attempts] == ["invalid_output", "invalid_output"], result.attempts
    assert all("after 3 steps" in a["reason"] for a in attempts)
    assert decisions == ["retry", "escalate"], result.attempts
    # each attempt's crash call reached a server (a session opened again after the loss) and came back failed
    crashes = [outcome for tool, outcome in tool_calls(fleet, job.id) if tool == "notes.crash"]
    assert len(crashes) == len(attempts) and set(crashes) <= {"error", "timeout"}, crashes
    # the next job's MCP call opens the session again
    again = submit(fleet, 'Add. [[sim:tool=notes_add {"a": 1, "b": 1}]]', ["notes.add"]).result(timeout_s=60)
    assert again.status is JobStatus.SUCCEEDED and again.output.endswith("tool said: 2"), again
