"""The policy engine (default deny, deny wins, patterns, argument constraints, expiry), policy file
validation, local tool schemas, the built-in tools and vendor-safe tool names. Pure unit tests."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from toolbag.gateway.builtin_tools import clock_now, math_eval
from toolbag.gateway.local import LocalTool, ToolArgumentError, tool
from toolbag.gateway.policy import Policy, PolicyError, Subject, load_policy_file, parse_policy
from toolbag.gateway.wire_names import sanitize, wire_names

ANALYST_CLAUDE = Subject("analyst", "anthropic", "claude-haiku", "claude-haiku-5-5")
ANALYST_GPT = Subject("analyst", "openai", "gpt-luna", "gpt-luna-2")
WRITER_CLAUDE = Subject("writer", "anthropic", "claude-haiku", "claude-haiku-5-5")

POLICY = textwrap.dedent(r"""
    version: 7
    rules:
      - id: analysts-on-claude
        agents: ["analyst", "team-*"]
        models: ["anthropic/*"]
        tools: ["notes.*", "math.eval"]
      - id: everyone-clock
        agents: ["*"]
        tools: ["clock.now"]
      - id: kv-public
        agents: ["analyst"]
        models: ["gpt-luna-*", "claude-haiku"]
        tools: ["kv.get"]
        args:
          key: {pattern: "public\\.[a-z]+"}
      - id: small-sums
        agents: ["analyst"]
        tools: ["calc.add"]
        args:
          a: {min: 0, max: 100}
          b: {one_of: [1, 2, 3]}
      - id: no-deletes
        effect: deny
        agents: ["*"]
        tools: ["*.delete*"]
        reason: destructive
      - id: notes-delete-granted-too
        agents: ["analyst"]
        tools: ["notes.delete"]
      - id: no-secret-notes
        effect: deny
        agents: ["*"]
        tools: ["notes.read"]
        args:
          key: {prefix: "secret"}
""")


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy(POLICY, "test-policy.yaml")


def test_default_deny_when_no_rule_matches(policy: Policy) -> None:
    decision = policy.decide(WRITER_CLAUDE, "notes.read", {"key": "minutes"})
    assert not decision.allowed and decision.rule_id == ""
    assert "default deny" in decision.reason
    assert Policy.empty().decide(ANALYST_CLAUDE, "clock.now", {}).allowed is False


def test_grant_by_agent_model_and_tool_patterns(policy: Policy) -> None:
    d = policy.decide(ANALYST_CLAUDE, "notes.read", {"key": "x"})
    assert d.allowed and d.rule_id == "analysts-on-claude"
    assert d.policy_version == 7 and d.policy_digest.startswith("sha256:")
    assert policy.decide(Subject("team-blue", "anthropic", "claude-sonnet"), "math.eval", {}).allowed
    # the same agent on another vendor is not granted by a provider-scoped rule
    assert not policy.decide(ANALYST_GPT, "notes.read", {"key": "x"}).allowed
    assert policy.decide(WRITER_CLAUDE, "clock.now", {}).rule_id == "everyone-clock"


def test_model_pattern_matches_config_name_or_vendor_id(policy: Policy) -> None:
    ok = {"key": "public.x"}
    assert policy.decide(ANALYST_GPT, "kv.get", ok).allowed  # vendor id gpt-luna-2 ~ gpt-luna-*
    assert policy.decide(ANALYST_CLAUDE, "kv.get", ok).allowed  # config name claude-haiku
    assert not policy.decide(Subject("analyst", "gemini", "gemini-flash", "gemini-3-flash"), "kv.get", ok).allowed


def test_deny_wins_over_a_grant(policy: Policy) -> None:
    d = policy.decide(ANALYST_CLAUDE, "notes.delete", {})
    assert not d.allowed and d.rule_id == "no-deletes"
    assert d.reason == "denied by rule 'no-deletes': destructive"
    # and it is not even offered
    assert not policy.decide(ANALYST_CLAUDE, "notes.delete", None).allowed


def test_argument_constraints(policy: Policy) -> None:
    assert policy.decide(ANALYST_GPT, "kv.get", {"key": "public.menu"}).allowed
    denied = policy.decide(ANALYST_GPT, "kv.get", {"key": "private.salaries"})
    assert not denied.allowed and "must match" in denied.reason
    assert not policy.decide(ANALYST_GPT, "kv.get", {}).allowed  # a constrained argument must be present
    assert not policy.decide(ANALYST_GPT, "kv.get", {"key": 42}).allowed
    assert policy.decide(ANALYST_GPT, "calc.add", {"a": 100, "b": 3}).allowed
    assert not policy.decide(ANALYST_GPT, "calc.add", {"a": 101, "b": 3}).allowed
    assert not policy.decide(ANALYST_GPT, "calc.add", {"a": True, "b": 3}).allowed
    assert not policy.decide(ANALYST_GPT, "calc.add", {"a": 5, "b": 4}).allowed


def test_conditional_rules_at_offer_time_and_call_time(policy: Policy) -> None:
    # an allow with argument constraints makes a tool offerable; the call is checked with its arguments
    assert policy.decide(ANALYST_GPT, "kv.get", None).allowed
    # a deny with argument constraints does not hide the tool, but denies the matching calls
    assert policy.decide(ANALYST_CLAUDE, "notes.read", None).allowed
    assert policy.decide(ANALYST_CLAUDE, "notes.read", {"key": "minutes"}).allowed
    d = policy.decide(ANALYST_CLAUDE, "notes.read", {"key": "secret-plans"})
    assert not d.allowed and d.rule_id == "no-secret-notes"


def test_expired_grants_do_not_apply() -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    text = f"""
version: 1
rules:
  - {{id: old, agents: ["*"], tools: ["a.tool"], expires: "{past}"}}
  - {{id: new, agents: ["*"], tools: ["b.tool"], expires: "{future}"}}
"""
    p = parse_policy(text)
    assert not p.decide(WRITER_CLAUDE, "a.tool", {}).allowed
    assert "expired" in next(t.why for t in p.decide(WRITER_CLAUDE, "a.tool", {}).trace if t.rule_id == "old")
    assert p.decide(WRITER_CLAUDE, "b.tool", {}).allowed
    assert p.grants_any(WRITER_CLAUDE) and not parse_policy(text.replace(future, past)).grants_any(WRITER_CLAUDE)


def test_explain_trace_names_every_rule(policy: Policy) -> None:
    d = policy.decide(ANALYST_GPT, "kv.get", {"key": "nope"})
    by_id = {t.rule_id: t for t in d.trace}
    assert set(by_id) == {r.id for r in policy.rules}
    assert by_id["kv-public"].matched and not by_id["kv-public"].applies
    assert "must match" in by_id["kv-public"].why
    assert not by_id["analysts-on-claude"].matched and "openai/gpt-luna" in by_id["analysts-on-claude"].why


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("version: 1\nrules:\n  - {id: a, agents: ['*'], tools: [x]}\n  - {id: a, agents: ['*'], tools: [y]}",
         "used twice"),
        ("version: 0\nrules: []", "version"),
        ("version: 1\nrules:\n  - {id: a, agents: ['*'], tools: [x], effect: maybe}", "effect"),
        ("version: 1\nrules:\n  - {id: a, agents: ['*'], tools: [x], args: {k: {pattern: '('}}}",
         "regular expression"),
        ("version: 1\nrules:\n  - {id: a, agents: ['*'], tools: [x], args: {k: {}}}", "at least one"),
        ("version: 1\nrules:\n  - {id: a, agents: ['*'], tools: [x], colour: red}", "colour"),
        ("version: 1\nrules:\n  - {id: a, tools: [x]}", "agents"),
        ("version: 1\nrules:\n  - {id: 'bad id', agents: ['*'], tools: [x]}", "id"),
        ("- just a list", "mapping"),
        ("version: [", "YAML"),
    ],
)
def test_invalid_policies_are_rejected_with_the_reason(text: str, problem: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.yaml")
    assert problem in str(info.value) and "p.yaml" in str(info.value)


def test_repository_policy_file_is_valid_and_denies_by_default() -> None:
    policy = load_policy_file(Path(__file__).resolve().parent.parent / "policy.yaml")
    assert policy.version >= 1
    assert policy.decide(WRITER_CLAUDE, "math.eval", {"expression": "1+1"}).allowed
    assert not policy.decide(WRITER_CLAUDE, "kv.set", {"key": "a", "value": "b"}).allowed
    assert not policy.decide(WRITER_CLAUDE, "kv.get", {"key": "secret"}).allowed
    assert policy.decide(WRITER_CLAUDE, "kv.get", {"key": "public.menu"}).allowed


def test_digest_changes_with_the_text() -> None:
    a = parse_policy("version: 1\nrules: []\n")
    b = parse_policy("version: 1\nrules: []\n# comment\n")
    assert a.digest != b.digest and a.digest == parse_policy("version: 1\nrules: []\n").digest


# ------------------------------------------------------------------------------------ local tools


def test_local_tool_schema_and_validation() -> None:
    @tool("demo.greet")
    def greet(name: str, times: int = 1) -> str:
        """Greet someone.

        More text that is not part of the description."""
        return " ".join([f"hello {name}"] * times)

    assert isinstance(greet, LocalTool) and greet.description == "Greet someone."
    assert greet.parameters["required"] == ["name"]
    assert greet.parameters["properties"]["times"]["type"] == "integer"
    assert greet.validate({"name": "ada", "times": "2"}) == {"name": "ada", "times": 2}
    with pytest.raises(ToolArgumentError, match="times"):
        greet.validate({"name": "ada", "times": "many"})
    with pytest.raises(ToolArgumentError, match="colour: Extra inputs"):
        greet.validate({"name": "ada", "colour": "red"})
    with pytest.raises(ValueError, match="tool name"):
        tool("bad name")(lambda: "x")


def test_math_eval_is_arithmetic_only() -> None:
    assert math_eval.fn("2 ** 10 + sqrt(16) - (3 % 2)") == "1027.0"
    assert math_eval.fn("round(pi, 2)") == "3.14"
    for hostile in ("__import__('os').system('true')", "().__class__", "x", "open('/etc/passwd')",
                    "9 ** 9 ** 9", "1/0", "[1] * 10"):
        with pytest.raises(ValueError):
            math_eval.fn(hostile)


def test_clock_now_in_a_time_zone() -> None:
    assert clock_now.fn("UTC").endswith("+00:00")
    assert clock_now.fn("Asia/Kolkata").endswith("+05:30")
    with pytest.raises(ValueError, match="time zone"):
        clock_now.fn("Mars/Olympus")


def test_wire_names_are_vendor_safe_unique_and_deterministic() -> None:
    names = ["clock.now", "clock_now", "notes.read", "a" * 80 + ".x"]
    mapping = wire_names(names)
    assert mapping == wire_names(list(reversed(names)))
    assert len(set(mapping.values())) == len(names)
    import re

    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", w) for w in mapping.values())
    assert mapping["notes.read"] == "notes_read" and sanitize("notes.read") == "notes_read"
    assert {mapping["clock.now"], mapping["clock_now"]} == {"clock_now", "clock_now_2"}
