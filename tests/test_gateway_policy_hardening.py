"""The policy engine against hostile input: non-finite numbers, path tricks, tool names in another case, YAML
alias bombs and oversized policies, regular expressions that would backtrack, and unbounded reasons and
audit records. Pure unit tests."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from toolbag.gateway.audit import AuditRecord, args_digest
from toolbag.gateway.limits import AUDIT_FIELD_MAX_CHARS, POLICY_MAX_BYTES, REASON_MAX_CHARS, RULES_MAX, TRACE_MAX_CHARS
from toolbag.gateway.paths import normal_path
from toolbag.gateway.policy import Policy, PolicyError, Subject, load_policy_file, parse_policy

AGENT = Subject("analyst", "anthropic", "claude-haiku", "claude-haiku-5-5")

POLICY = textwrap.dedent(r"""
    version: 1
    rules:
      - id: small-payments
        agents: ["analyst"]
        tools: ["pay.send"]
        args:
          amount: {min: 0, max: 100}
      - id: transfers
        agents: ["analyst"]
        tools: ["bank.transfer"]
      - id: no-large-transfers
        effect: deny
        agents: ["*"]
        tools: ["bank.transfer"]
        args:
          amount: {min: 1000}
      - id: levels
        agents: ["analyst"]
        tools: ["dial.set"]
        args:
          level: {one_of: [1, 2, 3]}
      - id: public-files
        agents: ["analyst"]
        tools: ["docs.read"]
        args:
          path: {prefix: "/public/"}
      - id: files
        agents: ["analyst"]
        tools: ["files.*", "disk.read"]
      - id: not-etc
        effect: deny
        agents: ["*"]
        tools: ["disk.read"]
        args:
          path: {prefix: "/etc/"}
      - id: no-deletes
        effect: deny
        agents: ["*"]
        tools: ["*.delete*"]
        reason: destructive
      - id: kv-public
        agents: ["analyst"]
        tools: ["kv.get"]
        args:
          key: {pattern: "public\\..*"}
      - id: backtracking
        agents: ["analyst"]
        tools: ["text.grep"]
        args:
          text: {pattern: "(a+)+b"}
""")


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy(POLICY, "hardening.yaml")


def allowed(policy: Policy, tool: str, **args: object) -> bool:
    return policy.decide(AGENT, tool, args).allowed


def refused(text: str) -> str:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.yaml")
    return str(info.value)


def rule(args: str) -> str:
    return f"version: 1\nrules:\n  - {{id: r1, agents: ['*'], tools: [t], args: {args}}}\n"


# ------------------------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("amount", [float("nan"), float("inf"), float("-inf"), True, False, "50", None, [50]])
def test_numeric_limits_refuse_what_is_not_a_finite_number(policy: Policy, amount: object) -> None:
    decision = policy.decide(AGENT, "pay.send", {"amount": amount})
    assert not decision.allowed and "finite number" in decision.reason


def test_numeric_limits_hold_at_their_edges_and_for_huge_integers(policy: Policy) -> None:
    assert allowed(policy, "pay.send", amount=0) and allowed(policy, "pay.send", amount=100.0)
    assert not allowed(policy, "pay.send", amount=100.000001) and not allowed(policy, "pay.send", amount=-1e-300)
    assert not allowed(policy, "pay.send", amount=10**400) and not allowed(policy, "pay.send", amount=-(10**400))


@pytest.mark.parametrize("amount", [float("nan"), float("inf"), 1e300, 10**400, 1000, True, "5", None])
def test_a_numeric_deny_applies_unless_the_number_is_clearly_below_it(policy: Policy, amount: object) -> None:
    decision = policy.decide(AGENT, "bank.transfer", {"amount": amount})
    assert not decision.allowed and decision.rule_id == "no-large-transfers"


def test_a_numeric_deny_lets_smaller_numbers_through(policy: Policy) -> None:
    assert allowed(policy, "bank.transfer", amount=999.5) and allowed(policy, "bank.transfer", amount=-(10**400))
    assert not allowed(policy, "bank.transfer")  # a missing amount cannot be ruled out either


def test_booleans_are_not_numbers_in_one_of(policy: Policy) -> None:
    assert allowed(policy, "dial.set", level=1) and allowed(policy, "dial.set", level=2.0)
    assert not allowed(policy, "dial.set", level=True)
    deny_one = parse_policy(textwrap.dedent("""
        version: 1
        rules:
          - {id: all, agents: ['*'], tools: [t]}
          - {id: not-one, effect: deny, agents: ['*'], tools: [t], args: {n: {one_of: [1]}}}
    """))
    assert not deny_one.decide(AGENT, "t", {"n": True}).allowed  # True may well be read as 1
    assert deny_one.decide(AGENT, "t", {"n": 2}).allowed


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ("{n: {min: .nan}}", "finite number"),
        ("{n: {max: .inf}}", "finite number"),
        ("{n: {min: -.inf}}", "finite number"),
        ("{n: {min: true}}", "boolean"),
        ("{n: {min: 5, max: 1}}", "greater than max"),
        ("{n: {one_of: [1, .nan]}}", "one_of value 1 is not a finite number"),
        ("{n: {one_of: [[1]]}}", "one_of value 0 is a list"),
        ("{n: {one_of: [2024-01-01]}}", "one_of value 0 is a date"),
    ],
)
def test_numbers_in_a_policy_are_finite_and_consistent(args: str, problem: str) -> None:
    message = refused(rule(args))
    assert problem in message and "rule 'r1' (rules.0.args.n" in message


# --------------------------------------------------------------------------------------------- paths


@pytest.mark.parametrize(
    ("value", "normal"),
    [
        ("/public/../etc/passwd", "/etc/passwd"),
        ("/public//a///b", "/public/a/b"),
        ("/public/./a/.", "/public/a/"),
        ("/public/a/..", "/public/"),
        ("/../../etc", "/etc"),
        ("//etc/passwd", "/etc/passwd"),
        ("/", "/"),
        ("/public/", "/public/"),
        ("a/../../b", "../b"),
        ("./a", "a"),
        (".", ""),
        ("..", "../"),
        ("/public/%2e%2e/etc", None),
        ("/public/..\\etc", None),
        ("/public/\x00", None),
        ("/public/\ud800", None),
    ],
)
def test_paths_are_resolved_lexically_or_refused(value: str, normal: str | None) -> None:
    assert normal_path(value) == normal


@pytest.mark.parametrize(
    "path",
    ["/public/../etc/passwd", "/public/a/../../etc/passwd", "/public", "/publicity/x", "public/x", "/public/%2e%2e/x",
     "/public/..%2fetc", "/public/..\\..\\etc", "//public/../etc/passwd", "/public/\x00", "/public/a\udc00"],
)
def test_a_prefix_grant_refuses_paths_that_leave_it(policy: Policy, path: str) -> None:
    assert not allowed(policy, "docs.read", path=path)


@pytest.mark.parametrize("path", ["/public/", "/public/a.txt", "//public//a.txt", "/public/./a/../b.txt"])
def test_a_prefix_grant_allows_paths_under_it(policy: Policy, path: str) -> None:
    assert allowed(policy, "docs.read", path=path)


@pytest.mark.parametrize("path", ["/etc/passwd", "/tmp/../etc/passwd", "//etc//passwd", "/etc\\passwd", "/%65tc/x"])
def test_a_prefix_deny_catches_paths_that_reach_it_or_cannot_be_read(policy: Policy, path: str) -> None:
    decision = policy.decide(AGENT, "disk.read", {"path": path})
    assert not decision.allowed and decision.rule_id == "not-etc"


def test_a_prefix_deny_lets_other_paths_through(policy: Policy) -> None:
    assert allowed(policy, "disk.read", path="/tmp/etc/passwd") and allowed(policy, "disk.read", path="/etcetera")


@pytest.mark.parametrize(("prefix", "hint"), [("/public/../x/", "'/x/'"), ("/a//b", "'/a/b'"), ("C:\\x", "backslash")])
def test_a_prefix_in_a_policy_is_a_normalised_path(prefix: str, hint: str) -> None:
    message = refused(rule(f"{{p: {{prefix: {prefix!r}}}}}"))
    assert "normalised" in message and hint in message


# ---------------------------------------------------------------------------------------- tool names


@pytest.mark.parametrize(
    "tool", ["files.Delete", "FILES.DELETE", "files.deleteAll", "ｆｉｌｅｓ.ｄｅｌｅｔｅ", "notes.Delete"]
)
def test_a_deny_glob_catches_a_tool_name_in_any_case(policy: Policy, tool: str) -> None:
    for args in ({}, None):
        decision = policy.decide(AGENT, tool, args)
        assert not decision.allowed and decision.rule_id == "no-deletes", tool


def test_grants_match_tool_names_in_any_case(policy: Policy) -> None:
    assert allowed(policy, "FILES.list") and allowed(policy, "Pay.Send", amount=5)
    assert not allowed(policy, "payment.send", amount=5)


def test_agent_and_model_patterns_stay_case_sensitive(policy: Policy) -> None:
    assert not policy.decide(Subject("Analyst", "anthropic", "claude-haiku"), "files.list", {}).allowed


# --------------------------------------------------------------------------------- stalls and sizes


def test_yaml_aliases_are_refused_before_they_expand() -> None:
    bomb = "version: 1\nrules:\n  - id: r1\n    agents: ['*']\n    tools: [t]\n    args:\n      k:\n        one_of:\n"
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    ) + bomb + "          [*i]\n"
    assert len(bomb) < 1000
    started = time.monotonic()
    message = refused(bomb)
    assert time.monotonic() - started < 1 and "aliases are not allowed" in message


def test_an_alias_is_refused_naming_the_line_of_its_anchor() -> None:
    text = "version: 1\nrules:\n  - id: r1\n    agents: &everyone ['*']\n    tools: [t]\n"
    assert parse_policy(text).rules[0].agents == ["*"]  # an anchor nobody reuses expands nothing
    message = refused(text + "  - {id: r2, agents: *everyone, tools: [u]}\n")
    assert "p.yaml: line 4: the value anchored here (&name) is used again by an alias (*name)" in message


def test_an_oversized_policy_is_refused_at_load(tmp_path: Path) -> None:
    text = "version: 1\nrules: []\n" + "#" * POLICY_MAX_BYTES
    assert f"at most {POLICY_MAX_BYTES}" in refused(text)
    big = tmp_path / "policy.yaml"
    big.write_text(text)
    with pytest.raises(PolicyError, match="larger than"):
        load_policy_file(big)


def test_a_policy_file_that_is_not_utf8_is_a_policy_error(tmp_path: Path) -> None:
    file = tmp_path / "policy.yaml"
    file.write_bytes(b"version: 1\nrules: []\ndescription: \xff\n")
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy_file(file)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("version: 1\nrules:\n" + "".join(f"  - {{id: r{i}, agents: ['*'], tools: [t]}}\n"
                                          for i in range(RULES_MAX + 1)), f"at most {RULES_MAX}"),
        ("version: 1\nrules:\n  - {id: r1, agents: [" + ", ".join(["a"] * 65) + "], tools: [t]}", "at most 64"),
        ("version: 1\nrules:\n  - {id: r1, agents: ['" + "*" * 257 + "'], tools: [t]}", "at most 256"),
        (rule("{k: {pattern: '" + "a" * 1001 + "'}}"), "at most 1000"),
        (rule("{" + ", ".join(f"a{i}: {{max: 1}}" for i in range(33)) + "}"), "at most 32"),
        (rule("{k: {one_of: [" + ", ".join(["x"] * 257) + "]}}"), "at most 256"),
        ("version: 1\nrules: " + "[" * 2000 + "]" * 2000, "nest"),
        ("version: 1\nrules: []\ndescription: {x: 2024-13-45}", "month"),
        ("version: " + "9" * 5000, "digits"),
    ],
)
def test_oversized_rule_sets_and_unbuildable_yaml_are_policy_errors(text: str, problem: str) -> None:
    assert problem in refused(text)


def test_a_decision_reason_and_its_trace_are_bounded() -> None:
    long_tool = "t" * 1_000_000
    rules = "".join(
        f"  - {{id: r{i}, agents: ['*'], tools: ['*'], args: {{k{i}: {{pattern: '{'x' * 900}'}}}}}}\n"
        for i in range(50)
    )
    rules += "  - {id: elsewhere, agents: ['*'], tools: [x]}\n"
    decision = parse_policy(f"version: 1\nrules:\n{rules}").decide(AGENT, long_tool, {"k1": "y"})
    assert not decision.allowed and len(decision.reason) <= REASON_MAX_CHARS
    assert decision.reason.endswith("more characters]")
    assert all(len(t.why) <= TRACE_MAX_CHARS for t in decision.trace)


def test_an_audit_record_is_bounded_and_valid_utf8() -> None:
    record = AuditRecord(kind="tool", event="decision", tool="x\ud800" * 10, reason="r" * 1_000_000,
                         detail="d" * 5000)
    fields = record.fields()
    assert all(len(v) <= AUDIT_FIELD_MAX_CHARS for v in fields.values())
    assert fields["tool"].startswith("x\\ud800x") and all(v.encode("utf-8") for v in fields.values())
    assert args_digest({"k": "\udc00"}) != args_digest({"k": "\udc01"})


# ------------------------------------------------------------------------------------ regular expressions


@pytest.mark.timeout(20)
def test_argument_patterns_run_in_linear_time(policy: Policy) -> None:
    started = time.monotonic()
    assert not allowed(policy, "text.grep", text="a" * 28 + "!")
    assert not allowed(policy, "text.grep", text="a" * 1_000_000 + "!")
    assert allowed(policy, "text.grep", text="a" * 100_000 + "b")
    assert time.monotonic() - started < 2


def test_argument_patterns_match_the_whole_string(policy: Policy) -> None:
    assert allowed(policy, "kv.get", key="public.menu")
    assert not allowed(policy, "kv.get", key="xpublic.menu") and not allowed(policy, "kv.get", key="public.a\nb")
    alternation = parse_policy(rule("{k: {pattern: 'a|ab'}}"))
    assert alternation.decide(AGENT, "t", {"k": "ab"}).allowed
    assert not alternation.decide(AGENT, "t", {"k": "abc"}).allowed


def test_a_value_that_is_not_valid_unicode_fails_a_pattern(policy: Policy) -> None:
    decision = policy.decide(AGENT, "kv.get", {"key": "public.\ud800"})
    assert not decision.allowed and "not valid Unicode" in decision.reason


@pytest.mark.parametrize("pattern", [r"(a)\\1", "(?=a)b", "(?<!a)b", "a{1001}", "("])
def test_a_pattern_re2_cannot_compile_is_refused_naming_the_rule_and_field(pattern: str) -> None:
    message = refused(rule(f'{{key: {{pattern: "{pattern}"}}}}'))
    assert "rule 'r1' (rules.0.args.key)" in message and "RE2" in message and "regular expression" in message
