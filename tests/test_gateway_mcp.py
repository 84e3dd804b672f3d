"""MCP servers as tool sources: an MCP server written with the ``mcp`` SDK 2.x (tests/gateway_mcp_server.py)
reached over stdio and over streamable HTTP, in the catalog, called directly and from a tool loop through the
simulator; a prompt injection in an MCP tool result is still denied."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.mcp_process import MCP_TEST_SERVER
from toolbag.attempt.context import AttemptContext
from toolbag.gateway.audit import AuditFilter, RedisAuditReader, RedisAuditSink
from toolbag.gateway.gateway import Gateway
from toolbag.gateway.live import LivePolicy, PolicyStore
from toolbag.gateway.loop import ToolLoop
from toolbag.gateway.registry import ToolRegistry
from toolbag.gateway.settings import parse_gateway_settings
from toolbag.providers.anthropic_provider import AnthropicAdapter
from toolbag.providers.base import Message, ModelRequest, Timeouts
from toolbag.providers.openai_provider import OpenAIAdapter
from toolbag.simulator.server import SimulatorServer
from toolbag.store.keys import Keys

POLICY = """
version: 1
rules:
  - id: notes-readers
    agents: ["analyst"]
    tools: ["notes.read", "notes.add", "web.*"]
"""


@pytest.fixture(scope="module")
def registry(mcp_http_server: str) -> Iterator[ToolRegistry]:
    settings = parse_gateway_settings({
        "mcp": {
            "notes": {"transport": "stdio", "command": sys.executable, "args": [str(MCP_TEST_SERVER), "stdio"]},
            "web": {"transport": "http", "url": mcp_http_server},
        },
    })
    reg = ToolRegistry(settings)
    yield reg
    reg.close()


@pytest.fixture
def gateway(redis_server: str, registry: ToolRegistry) -> Iterator[tuple[Gateway, redis.Redis, Keys]]:
    client = redis.Redis.from_url(f"{redis_server}/0")
    keys = Keys(f"mcp{uuid.uuid4().hex[:6]}:")
    store = PolicyStore(client, keys)
    from toolbag.gateway.policy import parse_policy

    store.publish(parse_policy(POLICY, "mcp-policy.yaml"))
    gw = Gateway(registry, LivePolicy(store, None), RedisAuditSink(client, keys), registry.settings.loop)
    yield gw, client, keys
    client.delete(keys.policy, keys.audit)
    client.close()


def test_catalog_lists_local_tools_and_both_mcp_transports(registry: ToolRegistry) -> None:
    catalog = registry.catalog()
    for server in ("notes", "web"):
        for tool in ("add", "read", "inject", "slow"):
            assert f"{server}.{tool}" in catalog
        assert catalog[f"{server}.add"].source == f"mcp:{server}"
    add = catalog["notes.add"]
    assert add.description == "Add two integers."
    assert add.parameters["required"] == ["a", "b"] and add.parameters["properties"]["a"]["type"] == "integer"
    assert catalog["clock.now"].source == "local:toolbag.gateway.builtin_tools"


@pytest.mark.parametrize("server", ["notes", "web"], ids=["stdio", "http"])
def test_calls_over_each_transport(registry: ToolRegistry, server: str) -> None:
    registry.catalog()
    ok = registry.call(f"{server}.add", {"a": 2, "b": 40}, timeout_s=10)
    assert (ok.outcome, ok.text) == ("ok", "42")
    bad = registry.call(f"{server}.add", {"a": "two"}, timeout_s=10)
    assert bad.outcome == "error" and "validation error" in bad.text
    slow = registry.call(f"{server}.slow", {"seconds": 5}, timeout_s=0.5)
    assert slow.outcome == "timeout"
    again = registry.call(f"{server}.read", {"key": "k"}, timeout_s=10)  # the session survived the timeout
    assert again.outcome == "ok" and again.text.startswith("note k:")
    assert registry.call(f"{server}.missing", {}, timeout_s=5).outcome == "not_found"


def test_unreachable_server_is_left_out_of_the_catalog() -> None:
    settings = parse_gateway_settings({"local": [], "mcp": {
        "gone": {"transport": "http", "url": "http://127.0.0.1:1/mcp", "connect_timeout_s": 3},
    }})
    reg = ToolRegistry(settings)
    try:
        assert reg.catalog() == {}
        assert reg.call("gone.read", {}, 1).outcome == "not_found"
    finally:
        reg.close()


def test_first_listing_is_shared_and_a_dead_stdio_server_is_restarted() -> None:
    settings = parse_gateway_settings({"local": [], "mcp": {
        "notes": {"transport": "stdio", "command": sys.executable, "args": [str(MCP_TEST_SERVER), "stdio"]},
    }})
    reg = ToolRegistry(settings)
    try:
        seen: list[set[str]] = []
        threads = [threading.Thread(target=lambda: seen.append(set(reg.catalog()))) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(seen) == 3 and all("notes.crash" in s for s in seen)  # all wait for the first listing
        died = reg.call("notes.crash", {}, timeout_s=10)
        assert died.outcome in ("error", "timeout")
        after = reg.call("notes.add", {"a": 1, "b": 1}, timeout_s=10)
        assert (after.outcome, after.text) == ("ok", "2")
    finally:
        reg.close()


def ask(text: str) -> ModelRequest:
    return ModelRequest(messages=(Message("user", text),), timeouts=Timeouts(5, 15, 20))


def ctx(provider: str, model: str, tools: tuple[str, ...]) -> AttemptContext:
    return AttemptContext(job_id=uuid.uuid4().hex, capability="ask", tier="standard", caller="analyst", model=model,
                          model_id=model, provider=provider, skill=None, deadline_ms=0, allowed_tools=tools)


def test_tool_loop_with_mcp_tools(gateway: tuple[Gateway, redis.Redis, Keys], sim: SimulatorServer) -> None:
    gw, _, _ = gateway
    adapter = AnthropicAdapter(api_key="sk-test", base_url=sim.url)
    try:
        c = ctx("anthropic", "claude-t", ("notes.*",))
        both = '[[sim:tool=notes_read {"key": "standup"}]] [[sim:tool=notes_add {"a": 1, "b": 2}]]'
        response = ToolLoop(gw).call(adapter, c, ask(f"Check my notes. {both}"))
    finally:
        adapter.close()
    assert response.text == "[claude-t] tool said: note standup: the meeting moved to Tuesday | 3"


def test_injection_in_an_mcp_tool_result_is_denied(gateway: tuple[Gateway, redis.Redis, Keys],
                                                   sim: SimulatorServer) -> None:
    gw, client, keys = gateway
    adapter = OpenAIAdapter(api_key="sk-test", base_url=sim.url + "/v1")
    try:
        c = ctx("openai", "gpt-t", ("web.inject",))
        text = 'Read this page. [[sim:tool=web_inject {"target": "notes_read"}]]'
        response = ToolLoop(gw).call(adapter, c, ask(text))
    finally:
        adapter.close()
    assert "permission denied" in response.text
    records = [e for _, e in RedisAuditReader(client, keys).query(AuditFilter(job_id=c.job_id), 50)]
    denied = [e for e in records if e["event"] == "decision" and e["decision"] == "deny"]
    # notes.read is granted to this agent by the policy, but was not offered to this job: still denied
    assert [(d["tool"], d["step"]) for d in denied] == [("notes.read", "2")]
    offer = next(e for e in records if e["event"] == "offer")
    assert json.loads(offer["detail"])["offered"] == ["web.inject"]


def test_sessions_on_the_callers_loop_over_each_transport(mcp_http_server: str) -> None:
    """A registry bound to an event loop (a worker's attempt loop) opens its sessions there and awaits the calls."""
    settings = parse_gateway_settings({"local": [], "mcp": {
        "notes": {"transport": "stdio", "command": sys.executable, "args": [str(MCP_TEST_SERVER), "stdio"]},
        "web": {"transport": "http", "url": mcp_http_server},
    }})
    reg = ToolRegistry(settings)

    async def on_the_loop() -> list[tuple[str, str]]:
        reg.bind(asyncio.get_running_loop())
        try:
            catalog = await reg.acatalog()
            assert {"notes.add", "web.add"} <= set(catalog)
            outputs = []
            for server in ("notes", "web"):
                outputs.append(await reg.acall(f"{server}.add", {"a": 2, "b": 40}, timeout_s=10))
                outputs.append(await reg.acall(f"{server}.slow", {"seconds": 5}, timeout_s=0.5))
                outputs.append(await reg.acall(f"{server}.read", {"key": "k"}, timeout_s=10))  # survived the timeout
            outputs.append(await reg.acall("notes.crash", {}, timeout_s=10))
            outputs.append(await reg.acall("notes.add", {"a": 1, "b": 1}, timeout_s=10))  # a new session
            return [(o.outcome, o.text) for o in outputs]
        finally:
            await reg.aclose()

    try:
        got = asyncio.run(on_the_loop())
    finally:
        reg.close()
    assert [o for o, _ in got] == ["ok", "timeout", "ok"] * 2 + [got[6][0], "ok"]
    assert got[0][1] == got[3][1] == "42" and got[2][1].startswith("note k:") and got[7][1] == "2"
    assert got[6][0] in ("error", "timeout")
