"""The tool-use loop through the gateway, with the real SDKs against the simulator and a real Redis: every
vendor's wire format, denial, argument constraints, injection from a tool result, revocation mid-loop, the
step and deadline bounds, and failing closed when the audit cannot be written."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY
from redis.backoff import NoBackoff
from redis.retry import Retry

from toolbag.attempt.context import AttemptContext
from toolbag.attempt.request import requested_tools as tools_from_input
from toolbag.gateway import builtin_tools
from toolbag.gateway.audit import AuditError, AuditFilter, AuditRecord, FanoutAudit, RedisAuditReader, RedisAuditSink
from toolbag.gateway.build import build_gateway
from toolbag.gateway.gateway import Gateway
from toolbag.gateway.live import PolicyStore
from toolbag.gateway.loop import ToolLoop
from toolbag.gateway.policy import Subject, parse_policy
from toolbag.gateway.settings import parse_gateway_settings
from toolbag.providers.adapter import VendorAdapter
from toolbag.providers.anthropic_provider import AnthropicAdapter
from toolbag.providers.base import (
    Adapter,
    AttemptFailure,
    Message,
    ModelRequest,
    ModelResponse,
    OutcomeKind,
    Timeouts,
    ToolCall,
)
from toolbag.providers.gemini_provider import GeminiAdapter
from toolbag.providers.openai_provider import OpenAIAdapter
from toolbag.simulator.server import SimulatorServer
from toolbag.store.keys import Keys

VENDORS = {"anthropic": "claude-t", "openai": "gpt-t", "gemini": "gemini-t"}
POLICY_V1 = """
version: 1
rules:
  - id: analyst-tools
    agents: ["analyst"]
    tools: ["math.eval", "clock.now", "test.*"]
  - id: analyst-kv-public
    agents: ["analyst"]
    tools: ["kv.get"]
    args: {key: {prefix: "public."}}
  - id: no-boom
    effect: deny
    agents: ["*"]
    tools: ["test.boom"]
    reason: it breaks things
"""
POLICY_V2_REVOKED = POLICY_V1.replace("version: 1", "version: 2").replace('"test.*"', '"test.echo"')
ROOMY = Timeouts(connect_s=5.0, first_token_s=15.0, total_s=20.0)


@pytest.fixture(scope="module")
def adapters(sim: SimulatorServer) -> Iterator[dict[str, Adapter]]:
    made: dict[str, Adapter] = {
        "anthropic": AnthropicAdapter(api_key="sk-test", base_url=sim.url),
        "openai": OpenAIAdapter(api_key="sk-test", base_url=sim.url + "/v1"),
        "gemini": GeminiAdapter(api_key="sk-test", base_url=sim.url),
    }
    yield made
    for adapter in made.values():
        adapter.close()


class Env:
    def __init__(self, client: redis.Redis, keys: Keys, gateway: Gateway, policy_file: Path) -> None:
        self.client = client
        self.keys = keys
        self.gateway = gateway
        self.policy_file = policy_file
        self.loop = ToolLoop(gateway)

    def audit(self, job_id: str) -> list[dict[str, str]]:
        """This job's gateway records, oldest first."""
        found = RedisAuditReader(self.client, self.keys).query(AuditFilter(job_id=job_id, kinds=("tool",)), 500)
        return [entry for _, entry in reversed(list(found))]


@pytest.fixture
def env(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    monkeypatch.setenv("TOOLBAG_REDIS_URL", redis_url)  # for tests.gateway_tools.wait
    client = redis.Redis.from_url(redis_url)
    keys = Keys(f"gw{uuid.uuid4().hex[:6]}:")
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY_V1)
    settings = parse_gateway_settings({
        "local": [{"module": "toolbag.gateway.builtin_tools"}, {"module": "tests.gateway_tools"}],
        "loop": {"max_steps": 4, "tool_timeout_s": 10},
    })
    gateway = build_gateway(client, keys, settings=settings, policy_path=policy_file)
    yield Env(client, keys, gateway, policy_file)
    gateway.close()
    client.close()


def context(provider: str, tools: tuple[str, ...], *, agent: str = "analyst", deadline_ms: int = 0) -> AttemptContext:
    model = VENDORS[provider]
    return AttemptContext(job_id=uuid.uuid4().hex, capability="ask", tier="interactive", caller=agent, model=model,
                          model_id=model, provider=provider, skill=None, deadline_ms=deadline_ms,
                          allowed_tools=tools)


def ask(text: str, *, stream: bool = False) -> ModelRequest:
    return ModelRequest(messages=(Message("user", text),), system="Use tools when asked.", timeouts=ROOMY,
                        stream=stream)


def directive(name: str, args: dict[str, Any] | None = None) -> str:
    return f"[[sim:tool={name}{' ' + json.dumps(args) if args is not None else ''}]]"


def run_loop(loop: ToolLoop, adapter: Adapter, ctx: AttemptContext, request: ModelRequest, path: str) -> ModelResponse:
    """The loop on this thread (``sync``: ``ToolLoop.call``) or on an event loop (``async``: ``ToolLoop.acall``)."""
    if path == "sync":
        return loop.call(adapter, ctx, request)
    assert isinstance(adapter, VendorAdapter)

    async def on_a_loop() -> ModelResponse:
        try:
            return await loop.acall(adapter, ctx, request)
        finally:
            await adapter.aclose()

    return asyncio.run(on_a_loop())


def tool_calls_metric(tool: str, decision: str) -> float:
    return REGISTRY.get_sample_value("toolbag_tool_calls_total", {"tool": tool, "decision": decision}) or 0.0


@pytest.mark.parametrize("path", ["sync", "async"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", sorted(VENDORS))
def test_tool_loop_on_every_vendor(env: Env, adapters: dict[str, Adapter], sim: SimulatorServer,
                                   provider: str, stream: bool, path: str) -> None:
    ctx = context(provider, ("math.eval", "clock.now"))
    sim.clear_log()
    request = ask(f"What is 6*7? {directive('math_eval', {'expression': '6*7'})}", stream=stream)
    single = adapters[provider].call(ctx.model_id, ask("What is 6*7?"))
    sim.clear_log()

    response = run_loop(env.loop, adapters[provider], ctx, request, path)

    assert response.text == f"[{ctx.model_id}] tool said: 42", response.text
    assert not response.tool_calls
    assert len(sim.log()) == 2  # the tool call, then the answer quoting the result
    assert response.usage.input_tokens > single.usage.input_tokens  # usage of both calls
    events = [(e["event"], e.get("decision"), e.get("tool"), e.get("outcome", "")) for e in env.audit(ctx.job_id)]
    assert events == [("offer", "allow", "clock.now,math.eval", ""), ("decision", "allow", "math.eval", ""),
                      ("call", "allow", "math.eval", "ok")]
    call = env.audit(ctx.job_id)[-1]
    assert call["grant"] == "analyst-tools" and call["policy_version"] == "1"
    assert call["agent"] == "analyst" and call["provider"] == provider and call["model"] == ctx.model
    assert call["args_digest"].startswith("sha256:") and call["arg_names"] == "expression"
    assert "6*7" not in json.dumps(call)  # argument values are never stored
    assert float(call["duration_ms"]) >= 0


def test_denied_call_returns_a_denial_to_the_model_and_is_audited(env: Env, adapters: dict[str, Adapter]) -> None:
    ctx = context("openai", ("kv.get",))
    before = tool_calls_metric("kv.get", "deny")
    both = directive("kv_get", {"key": "public.menu"}) + " and " + directive("kv_get", {"key": "private.pay"})
    builtin_tools.kv_set.fn("public.menu", "soup")
    builtin_tools.kv_set.fn("private.pay", "lots")

    response = env.loop.call(adapters["openai"], ctx, ask(f"Read both. {both}"))

    said = response.text
    assert "soup" in said and "lots" not in said
    assert "permission denied: 'analyst' may not call 'kv.get'" in said and "must start with 'public.'" in said
    decisions = [e for e in env.audit(ctx.job_id) if e["event"] == "decision"]
    assert [d["decision"] for d in decisions] == ["allow", "deny"]
    assert decisions[1]["outcome"] == "denied" and "must start with" in decisions[1]["reason"]
    assert decisions[0]["args_digest"] != decisions[1]["args_digest"]
    assert [e["event"] for e in env.audit(ctx.job_id)].count("call") == 1  # the denied call never ran
    assert tool_calls_metric("kv.get", "deny") == before + 1


def test_explicit_deny_wins_and_ungranted_agents_get_no_tools(env: Env, adapters: dict[str, Adapter],
                                                             sim: SimulatorServer) -> None:
    ctx = context("anthropic", ("test.boom", "math.eval"))
    response = env.loop.call(adapters["anthropic"], ctx, ask(f"Break it. {directive('test_boom', {})}"))
    offer = env.audit(ctx.job_id)[0]
    assert offer["event"] == "offer" and json.loads(offer["detail"])["withheld"] == ["test.boom"]
    assert "permission denied" in response.text and "was not offered" in response.text
    # an agent without any grant: the model is called without tools, once
    stranger = context("anthropic", ("math.eval",), agent="stranger")
    sim.clear_log()
    plain = env.loop.call(adapters["anthropic"], stranger, ask(f"Compute. {directive('math_eval', {})}"))
    assert "tool said" not in plain.text and len(sim.log()) == 1
    offer = env.audit(stranger.job_id)[0]
    assert offer["decision"] == "deny" and json.loads(offer["detail"])["offered"] == []


def test_injected_call_from_a_tool_result_is_still_denied(env: Env, adapters: dict[str, Adapter]) -> None:
    builtin_tools._KV.pop("stolen", None)
    ctx = context("gemini", ("test.fetch",))
    request = ask(f"Summarize the page. {directive('test_fetch', {'page': 'a'})}")
    response = env.loop.call(adapters["gemini"], ctx, request)
    assert "stolen" not in builtin_tools._KV  # kv.set never ran
    records = env.audit(ctx.job_id)
    denied = [e for e in records if e.get("decision") == "deny" and e["event"] == "decision"]
    assert len(denied) == 1 and denied[0]["tool"] == "kv.set" and denied[0]["step"] == "2"
    assert "not offered" in denied[0]["reason"]
    assert "permission denied" in response.text


def test_revocation_takes_effect_in_the_middle_of_a_running_loop(env: Env, adapters: dict[str, Adapter]) -> None:
    ctx = context("anthropic", ("test.wait",))
    key = uuid.uuid4().hex[:8]
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["response"] = env.loop.call(adapters["anthropic"], ctx,
                                               ask(f"Wait. {directive('test_wait', {'key': key, 'again': True})}"))
        except Exception as err:  # noqa: BLE001 - reported below
            result["error"] = err

    worker = threading.Thread(target=run)
    worker.start()
    assert env.client.blpop([f"gwtest:started:{key}"], timeout=20) is not None  # step 1 is running the tool
    published = PolicyStore(env.client, env.keys).publish(parse_policy(POLICY_V2_REVOKED, "revoke.yaml"))
    assert published.status == "published"
    env.client.rpush(f"gwtest:go:{key}", "1")
    worker.join(30)
    assert "error" not in result, result
    assert "permission denied" in result["response"].text
    assert env.client.llen(f"gwtest:started:{key}-again") == 0  # the second call never ran
    decisions = [(e["decision"], e["policy_version"], e["step"]) for e in env.audit(ctx.job_id)
                 if e["event"] == "decision"]
    assert decisions == [("allow", "1", "1"), ("deny", "2", "2")]
    publish = list(RedisAuditReader(env.client, env.keys).query(AuditFilter(kinds=("policy",)), 10))
    assert publish and publish[0][1]["policy_version"] == "2"


def test_max_steps_bound_the_loop(env: Env, adapters: dict[str, Adapter], sim: SimulatorServer) -> None:
    ctx = context("openai", ("test.again",))
    sim.clear_log()
    with pytest.raises(AttemptFailure) as info:
        env.loop.call(adapters["openai"], ctx, ask(f"Go. {directive('test_again', {})}"))
    assert info.value.kind is OutcomeKind.INVALID_OUTPUT and "after 4 steps" in info.value.reason
    assert len(sim.log()) == 4


def test_the_job_deadline_bounds_the_loop(env: Env, adapters: dict[str, Adapter]) -> None:
    ctx = context("gemini", ("test.sleep",), deadline_ms=int(time.time() * 1000) + 1500)
    with pytest.raises(AttemptFailure) as info:
        env.loop.call(adapters["gemini"], ctx, ask(f"Nap. {directive('test_sleep', {'seconds': 5})}"))
    assert info.value.kind is OutcomeKind.TIMEOUT  # the tool ran out the deadline; the loop stopped there
    calls = [e for e in env.audit(ctx.job_id) if e["event"] == "call"]
    assert [c["outcome"] for c in calls] == ["timeout"]


def test_tool_failures_go_back_to_the_model_as_errors(env: Env, adapters: dict[str, Adapter]) -> None:
    ctx = context("anthropic", ("math.eval",))
    response = env.loop.call(adapters["anthropic"], ctx,
                             ask(f"{directive('math_eval', {'expression': 'import os'})}"))
    assert "math.eval failed: ValueError" in response.text
    assert [e.get("outcome") for e in env.audit(ctx.job_id) if e["event"] == "call"] == ["error"]


class _FailAfter:
    """Accepts ``n`` records, then fails like an unwritable sink."""

    def __init__(self, n: int) -> None:
        self.left = n

    def write(self, record: AuditRecord) -> None:
        self.left -= 1
        if self.left < 0:
            raise AuditError("disk full")


@pytest.mark.parametrize("path", ["sync", "async"])
def test_an_unwritable_audit_fails_the_call_closed(env: Env, adapters: dict[str, Adapter], path: str) -> None:
    builtin_tools._KV.pop("closed", None)
    env.client.xtrim(env.keys.audit, maxlen=0)
    env.gateway.audit = FanoutAudit([RedisAuditSink(env.client, env.keys), _FailAfter(1)])  # the offer only
    assert env.gateway.policy.store is not None
    env.gateway.policy.store.publish(parse_policy(POLICY_V1.replace("version: 1", "version: 3").replace(
        '"test.*"', '"test.*", "kv.set"'), "kv.yaml"))
    ctx = context("openai", ("kv.set",))
    with pytest.raises(AttemptFailure) as info:
        run_loop(env.loop, adapters["openai"], ctx, ask(directive("kv_set", {"key": "closed", "value": "x"})), path)
    assert info.value.kind is OutcomeKind.SERVER_ERROR and "audit unavailable" in info.value.reason
    assert "closed" not in builtin_tools._KV  # the tool did not run without its audit record
    env.gateway.audit = _FailAfter(0)  # nothing can be written: not even the offer
    with pytest.raises(AttemptFailure, match="audit unavailable"):
        run_loop(env.loop, adapters["openai"], context("openai", ("kv.set",)), ask("hello"), path)


def test_an_unreachable_policy_denies(env: Env) -> None:
    ctx = context("anthropic", ("math.eval",))
    subject = Subject(ctx.caller, ctx.provider, ctx.model, ctx.model_id, ctx.job_id)
    offer = env.gateway.offer(subject, ["math.eval"])
    assert [t.name for t in offer.tools] == ["math.eval"]
    assert env.gateway.policy.store is not None
    env.gateway.policy.store.client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2,
                                                  retry=Retry(NoBackoff(), 0))
    result = env.gateway.execute(subject, offer, ToolCall("c1", "math_eval", {"expression": "1"}),
                                 step=1, timeout_s=5)
    assert result.is_error and "policy unavailable (fail closed)" in result.content
    decision = env.audit(ctx.job_id)[-1]
    assert decision["decision"] == "deny" and decision["outcome"] == "denied"


def test_without_requested_tools_it_is_a_plain_call(env: Env, adapters: dict[str, Adapter],
                                                    sim: SimulatorServer) -> None:
    ctx = context("gemini", ())
    sim.clear_log()
    response = env.loop.call(adapters["gemini"], ctx, ask(f"Hi {directive('math_eval', {})}"))
    assert "tool said" not in response.text and len(sim.log()) == 1
    assert env.audit(ctx.job_id) == []


def test_job_input_tools_field() -> None:
    assert tools_from_input(json.dumps({"text": "x", "tools": ["clock.now", "math.*", 3, ""]})) == [
        "clock.now", "math.*"]
    assert tools_from_input(json.dumps(["not", "a", "dict"])) == []
    assert tools_from_input("not json") == []
