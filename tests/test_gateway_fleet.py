"""The gateway in the real fleet: a Celery worker process (wired by ``workers.runtime.start_provider``) running
tool loops through the simulator for jobs that ask for tools in their input; a revocation published with the
CLI while a loop is running in that process; the audit in Redis and in a JSONL file; the CLI commands.

Every vendor's wire format is covered in-process by tests/test_gateway_loop.py; one worker keeps this fast."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import pytest
import redis
import yaml
from typer.testing import CliRunner

from tests.fleet import Fleet, running_fleet
from toolbag.cli.app import app
from toolbag.config import TIERS
from toolbag.jobs import JobStatus

MODELS = {"gemini": "gemini-flash"}
METERED_MODEL_ID = "gemini-3.8-flash-metered"
POLICY = """
version: 1
rules:
  - id: analyst-tools
    agents: ["analyst"]
    tools: ["math.eval", "test.*"]
  - id: analyst-kv-public
    agents: ["analyst"]
    tools: ["kv.get"]
    args: {key: {prefix: "public."}}
"""
REVOKED = POLICY.replace("version: 1", "version: 2").replace('["math.eval", "test.*"]', '["math.eval"]')
TOOLS = """
local:
  - module: toolbag.gateway.builtin_tools
  - module: tests.gateway_tools
loop: {max_steps: 5, tool_timeout_s: 20}
"""


@pytest.fixture(scope="module")
def fleet(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("gwfleet")
    (tmp / "policy.yaml").write_text(POLICY)
    (tmp / "tools.yaml").write_text(TOOLS)
    routes = {f"tools-{p}": {tier: {"candidates": [m]} for tier in TIERS} for p, m in MODELS.items()}
    routes["tools-metered"] = {tier: {"candidates": ["gemini-metered"]} for tier in TIERS}
    metered = {"provider": "gemini", "model_id": METERED_MODEL_ID, "context_window": 1000000,
               "limits": {"rpm": 1000}}
    patch = pytest.MonkeyPatch()
    patch.setenv("TOOLBAG_POLICY", str(tmp / "policy.yaml"))
    patch.setenv("TOOLBAG_TOOLS", str(tmp / "tools.yaml"))
    patch.setenv("TOOLBAG_AUDIT_JSONL", str(tmp / "audit.jsonl"))
    try:
        with running_fleet(redis_server, tmp, providers=tuple(MODELS), supervisor=False,
                           config_overrides={"routes": routes, "models": {**_default_models(),
                                                                          "gemini-metered": metered}}) as f:
            yield f
    finally:
        patch.undo()


def _default_models() -> dict[str, Any]:
    from toolbag.config import DEFAULT_CONFIG_PATH

    models: dict[str, Any] = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())["models"]
    return models


def cli(fleet: Fleet, *args: str) -> Any:
    env = {"TOOLBAG_CONFIG": str(fleet.config_path), "TOOLBAG_REDIS_URL": fleet.redis_url,
           "TOOLBAG_POLICY": str(fleet.tmp / "policy.yaml"), "TOOLBAG_TOOLS": str(fleet.tmp / "tools.yaml")}
    return CliRunner().invoke(app, list(args), env=env)


def audit(fleet: Fleet, job_id: str) -> list[dict[str, str]]:
    result = cli(fleet, "audit", "query", "--job", job_id, "--json")
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]  # oldest first


@pytest.mark.parametrize("provider", sorted(MODELS))
def test_a_job_that_asks_for_tools_runs_the_loop(fleet: Fleet, provider: str) -> None:
    text = 'What is 6*7? [[sim:tool=math_eval {"expression": "6*7"}]] [[sim:tool=kv_get {"key": "private.x"}]]'
    job = fleet.client.submit(f"tools-{provider}", input={"text": text, "tools": ["math.eval", "kv.get"]},
                              caller="analyst", tier="interactive")
    result = job.result(timeout_s=60)
    assert result.status is JobStatus.SUCCEEDED, (result, fleet.log(f"worker-{provider}"))
    model_id = fleet.config.models[MODELS[provider]].model_id
    # the results in call order, as each vendor's wire carried them (Gemini wraps an error as {"error": ...})
    assert result.output.startswith(f"[{model_id}] tool said: 42 | "), result.output
    assert "permission denied: 'analyst' may not call 'kv.get'" in result.output
    records = audit(fleet, job.id)
    assert [(r["event"], r["decision"], r["tool"]) for r in records] == [
        ("offer", "allow", "kv.get,math.eval"),
        ("decision", "allow", "math.eval"), ("call", "allow", "math.eval"),
        ("decision", "deny", "kv.get"),
    ]
    assert all(r["agent"] == "analyst" and r["provider"] == provider and r["policy_version"] in ("1", "2")
               for r in records)
    jsonl = [json.loads(line) for line in (fleet.tmp / "audit.jsonl").read_text().splitlines()]
    assert [r["event"] for r in jsonl if r.get("job_id") == job.id] == [r["event"] for r in records]


def test_a_job_without_a_grant_gets_no_tools(fleet: Fleet) -> None:
    job = fleet.client.submit("tools-gemini", input={"text": "Hi [[sim:tool=math_eval]]", "tools": ["math.eval"]},
                              caller="stranger", tier="interactive")
    result = job.result(timeout_s=60)
    assert result.status is JobStatus.SUCCEEDED and "tool said" not in result.output
    assert audit(fleet, job.id) == []  # the agent has no grant on this model: its input is not even read


def test_revocation_published_with_the_cli_stops_a_running_loop(fleet: Fleet) -> None:
    key = uuid.uuid4().hex[:8]
    text = f'Wait. [[sim:tool=test_wait {{"key": "{key}", "again": true}}]]'
    job = fleet.client.submit("tools-gemini", input={"text": text, "tools": ["test.wait"]}, caller="analyst",
                              tier="interactive")
    client = redis.Redis.from_url(fleet.redis_url)
    assert client.blpop([f"gwtest:started:{key}"], timeout=60) is not None, fleet.log("worker-gemini")
    revoked = fleet.tmp / "revoked.yaml"
    revoked.write_text(REVOKED)
    published = cli(fleet, "permissions", "publish", "--file", str(revoked))
    assert published.exit_code == 0 and "version 2" in published.output, published.output
    client.rpush(f"gwtest:go:{key}", "1")
    result = job.result(timeout_s=60)
    assert result.status is JobStatus.SUCCEEDED, result
    assert "permission denied" in result.output
    assert client.llen(f"gwtest:started:{key}-again") == 0
    decisions = [(r["decision"], r["policy_version"]) for r in audit(fleet, job.id) if r["event"] == "decision"]
    assert decisions == [("allow", "1"), ("deny", "2")]
    older = cli(fleet, "permissions", "publish")  # the worker's v1 file cannot undo the revoke
    assert older.exit_code == 2 and "older" in older.output
    client.close()


def test_permissions_cli(fleet: Fleet) -> None:
    cli(fleet, "permissions", "publish", "--file", str(fleet.tmp / "policy.yaml"), "--force")
    allowed = cli(fleet, "permissions", "explain", "--agent", "analyst", "--model", "claude-haiku",
                  "--tool", "kv.get", "--args", '{"key": "public.menu"}')
    assert allowed.exit_code == 0 and "ALLOW" in allowed.output and "analyst-kv-public" in allowed.output
    denied = cli(fleet, "permissions", "explain", "--agent", "analyst", "--model", "claude-haiku",
                 "--tool", "kv.get", "--args", '{"key": "secret"}', "--json")
    body = json.loads(denied.output)
    assert denied.exit_code == 1 and body["decision"] == "deny" and "must start with 'public.'" in body["reason"]
    assert body["policy_source"].startswith("live policy in redis")
    nobody = cli(fleet, "permissions", "explain", "-a", "writer", "-m", "openai/gpt-x", "-t", "math.eval")
    assert nobody.exit_code == 1 and "default deny" in nobody.output
    listing = cli(fleet, "permissions", "list", "--agent", "analyst", "--model", "gpt-luna", "--json")
    offered = {row["tool"]: row["offered"] for row in json.loads(listing.output)}
    assert offered["math.eval"] and offered["kv.get"] and not offered["kv.set"] and offered["test.echo"]
    shown = cli(fleet, "permissions", "show", "--json")
    assert json.loads(shown.output)["live"]["version"] == "1"
    tools = json.loads(cli(fleet, "tools", "list", "--json").output)
    assert {"clock.now", "test.wait"} <= {t["name"] for t in tools}
    tail = cli(fleet, "audit", "tail", "-n", "3")
    assert tail.exit_code == 0 and "policy/publish" in tail.output and "policy=1" in tail.output
    bad = fleet.tmp / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - {id: x, tools: [a]}\n")
    invalid = cli(fleet, "permissions", "validate", "--file", str(bad))
    assert invalid.exit_code == 2 and "agents" in invalid.output


def test_parallel_jobs_share_one_gateway(fleet: Fleet) -> None:
    jobs = [fleet.client.submit(f"tools-{p}", input={"text": f'n{i} [[sim:tool=math_eval {{"expression": "{i}+1"}}]]',
                                                       "tools": ["math.*"]}, caller="analyst", tier="interactive")
            for i in range(12) for p in MODELS]
    results: list[Any] = [None] * len(jobs)

    def wait(n: int) -> None:
        results[n] = jobs[n].result(timeout_s=90)

    threads = [threading.Thread(target=wait, args=(n,)) for n in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n, r in enumerate(results):
        assert r.status is JobStatus.SUCCEEDED and r.output.endswith(f"tool said: {n // len(MODELS) + 1}"), r


def test_every_vendor_call_of_a_loop_takes_a_rate_limit_slot(fleet: Fleet) -> None:
    """The vendor counts each call of a tool loop against the model's limits; so does the fleet."""
    text = 'What is 6*7? [[sim:tool=math_eval {"expression": "6*7"}]]'
    job = fleet.client.submit("tools-metered", input={"text": text, "tools": ["math.eval"]}, caller="analyst",
                              tier="interactive")
    result = job.result(timeout_s=60)
    assert result.status is JobStatus.SUCCEEDED, (result, fleet.log("worker-gemini"))
    vendor_calls = [e for e in fleet.simulator.log() if e.get("model") == METERED_MODEL_ID]
    assert len(vendor_calls) == 2, "one call that asks for the tool, one that answers"
    store = fleet.client.store
    assert store.redis.zcard(store.keys.ratelimit("gemini-metered", "log")) == len(vendor_calls)
    assert [a["type"] for a in result.attempts] == ["attempt"], "still one attempt"


def test_the_job_api_shows_the_gateways_tool_calls(fleet: Fleet) -> None:
    """``GET /jobs/{id}`` lists the tools the gateway checked for the job, from the audit trail: an allowed call
    with its outcome, and a denied one."""
    from tests.api_door import replica
    from toolbag.api.keys import KeyStore

    text = 'What is 6*7? [[sim:tool=math_eval {"expression": "6*7"}]] [[sim:tool=kv_get {"key": "private.x"}]]'
    job = fleet.client.submit("tools-gemini", input={"text": text, "tools": ["math.eval", "kv.get"]},
                              caller="analyst", tier="interactive")
    assert job.result(timeout_s=60).ok
    _, secret = KeyStore(fleet.client.store.redis, fleet.client.store.keys).create("analyst")
    with replica(fleet) as url:
        view = httpx.get(f"{url}/jobs/{job.id}", headers={"authorization": f"Bearer {secret}"}, timeout=30).json()
    calls = [(c["tool"], c["decision"], c["outcome"]) for c in view["gateway_tool_calls"]]
    assert calls == [("math.eval", "allow", "ok"), ("kv.get", "deny", "denied")], view
    assert view["tool_calls"] == []  # the model's calls of caller tools: none, these were the gateway's
