"""Property-based tests of the policy engine: whatever the arguments, tool name or policy text, a decision is
an allow or a deny with a bounded reason (never an exception), and a deny rule that applies always wins."""

from __future__ import annotations

import math
import posixpath
import textwrap
import unicodedata
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolbag.gateway.audit import AuditRecord
from toolbag.gateway.limits import AUDIT_FIELD_MAX_CHARS, REASON_MAX_CHARS
from toolbag.gateway.policy import Constraint, Policy, PolicyError, Rule, Subject, parse_policy

BOUNDED = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

POLICY = parse_policy(textwrap.dedent(r"""
    version: 1
    rules:
      - id: payments
        agents: ["*"]
        tools: ["pay.send", "bank.transfer"]
        args:
          amount: {min: 0, max: 100}
      - id: transfers
        agents: ["*"]
        tools: ["bank.transfer", "files.*", "kv.*"]
      - id: public-files
        agents: ["*"]
        tools: ["docs.read"]
        args:
          path: {prefix: "/public/", max_length: 200}
          mode: {one_of: ["r", 1, true, null, 2.5]}
      - id: kv-public
        agents: ["*"]
        tools: ["kv.get"]
        args:
          key: {pattern: "public\\.[a-z0-9._-]{1,64}"}
      - id: no-large-transfers
        effect: deny
        agents: ["*"]
        tools: ["bank.transfer"]
        args:
          amount: {min: 1000}
      - id: no-etc
        effect: deny
        agents: ["*"]
        tools: ["files.*"]
        args:
          path: {prefix: "/etc/"}
      - id: no-deletes
        effect: deny
        agents: ["*"]
        tools: ["*.delete*"]
"""), "properties.yaml")

TOOLS = ["pay.send", "bank.transfer", "docs.read", "kv.get", "files.read", "files.delete", "kv.drop"]
ARG_NAMES = ["amount", "path", "mode", "key"]
ODD = ["\ud800", "\udc00", "\x00", "%2e", "\\", "..", "/", "//", "ſ", "\u212a", "ß", "İ", "\u202e", "\ufeff", "💥"]

def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


odd_text = st.lists(st.one_of(st.characters(), st.sampled_from(ODD)), max_size=16).map("".join)
long_text = st.builds(lambda unit, n: unit * n, st.sampled_from(["a", "/..", "%", "public.", "\ud800"]),
                      st.integers(0, 50_000))
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324, 10**4000, 999, 1000, 100]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, odd_text, long_text,
                    st.sampled_from(["/public/a", "/public/../etc/passwd", "/etc/x", "public.menu", "r"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_text, inner, max_size=3),
                      max_leaves=6)
deep = st.builds(_nested, st.integers(1, 5000))
arguments = st.dictionaries(st.one_of(st.sampled_from(ARG_NAMES), odd_text), st.one_of(values, deep), max_size=4)
tool_names = st.one_of(st.sampled_from(TOOLS), odd_text, st.builds(
    lambda name, flips: "".join(c.upper() if f else c for c, f in zip(name, flips, strict=False)),
    st.sampled_from(TOOLS), st.lists(st.booleans(), min_size=16, max_size=16)))
subjects = st.builds(Subject, odd_text, st.sampled_from(["anthropic", "openai", ""]), odd_text, odd_text)


def _readable_path(path: str) -> bool:
    return not any(c in path for c in "\\%\x00") and not any(0xD800 <= ord(c) <= 0xDFFF for c in path)


def _posix_normal(path: str) -> str:
    normal = posixpath.normpath(path) if path else ""
    return normal[1:] if normal.startswith("//") else normal


def _keeps_a_trailing_e(suffix: str) -> bool:
    """A suffix that does not compose with the ``e`` before it (``e`` + U+0301 is another letter)."""
    return unicodedata.normalize("NFKC", "e" + suffix).casefold().startswith("e")


def _is_finite_number_below(value: object, limit: float) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return (isinstance(value, int) or math.isfinite(value)) and value < limit


@BOUNDED
@given(subject=subjects, tool=tool_names, args=st.one_of(st.none(), arguments))
def test_every_call_gets_an_allow_or_a_deny_with_a_bounded_reason(
    subject: Subject, tool: str, args: dict[str, Any] | None
) -> None:
    decision = POLICY.decide(subject, tool, args)
    assert isinstance(decision.allowed, bool) and decision.reason
    assert len(decision.reason) <= REASON_MAX_CHARS
    fields = AuditRecord(kind="tool", event="decision", agent=subject.agent, tool=tool, reason=decision.reason,
                         decision=decision.word, grant=decision.rule_id).fields()
    assert all(len(v) <= AUDIT_FIELD_MAX_CHARS and v.encode("utf-8") for v in fields.values())


@BOUNDED
@given(args=arguments, amount=st.one_of(values, st.just(None)), present=st.booleans())
def test_a_numeric_deny_wins_unless_the_amount_is_clearly_below_it(
    args: dict[str, Any], amount: object, present: bool
) -> None:
    args = {k: v for k, v in args.items() if k != "amount"} | ({"amount": amount} if present else {})
    decision = POLICY.decide(Subject("a", "p", "m"), "bank.transfer", args)
    if decision.allowed:
        assert present and _is_finite_number_below(amount, 1000)
    elif present and _is_finite_number_below(amount, 1000):
        raise AssertionError(f"{amount!r} is below the deny and transfers are granted: {decision.reason}")


@BOUNDED
@given(path=st.one_of(odd_text, long_text, st.sampled_from(["/etc/a", "/x/../etc/a", "//etc//a", "/etc"])),
       tool=st.sampled_from(["files.read", "FILES.Write", "ｆｉｌｅｓ.list"]))
def test_a_path_deny_wins_for_every_path_that_reaches_it_or_cannot_be_read(path: str, tool: str) -> None:
    decision = POLICY.decide(Subject("a", "p", "m"), tool, {"path": path})
    if not _readable_path(path) or _posix_normal(path).startswith("/etc/"):
        assert not decision.allowed and decision.rule_id == "no-etc"
    elif _posix_normal(path) != "/etc":
        assert decision.allowed, decision.reason


@BOUNDED
@given(prefix=odd_text, suffix=odd_text.filter(_keeps_a_trailing_e),
       flips=st.lists(st.booleans(), min_size=6, max_size=6), args=st.one_of(st.none(), arguments))
def test_a_delete_deny_wins_in_any_case(
    prefix: str, suffix: str, flips: list[bool], args: dict[str, Any] | None
) -> None:
    word = "".join(c.upper() if f else c for c, f in zip("delete", flips, strict=True))
    tool = f"{prefix}.{word}{suffix}"
    decision = POLICY.decide(Subject("a", "p", "m"), tool, args)
    assert not decision.allowed and decision.rule_id == "no-deletes"


globs = st.lists(st.sampled_from(["*", "a*", "*.x", "t?", "[ab]*", "T*", "x"]), min_size=1, max_size=3)
constraints = st.builds(
    lambda one_of, max_length, minimum: Constraint(**{
        name: value for name, value in (("one_of", one_of), ("max_length", max_length), ("min", minimum))
        if value is not None
    } or {"max_length": 5}),
    st.one_of(st.none(), st.lists(st.one_of(st.integers(), st.text(max_size=5), st.booleans()), max_size=3)),
    st.one_of(st.none(), st.integers(0, 10)),
    st.one_of(st.none(), st.floats(-10, 10)),
)
rules = st.lists(
    st.builds(lambda agents, tools, args: (agents, tools, args), globs, globs,
              st.dictionaries(st.sampled_from(ARG_NAMES), constraints, max_size=2)),
    max_size=6,
)


@BOUNDED
@given(allows=rules, position=st.integers(0, 8), deny_tools=globs, tool=st.text(max_size=8), args=arguments)
def test_an_unconditional_deny_wins_over_any_grants(
    allows: list[tuple[list[str], list[str], dict[str, Constraint]]], position: int, deny_tools: list[str], tool: str,
    args: dict[str, Any],
) -> None:
    rule_list = [Rule(id=f"r{i}", agents=a, tools=t, args=c) for i, (a, t, c) in enumerate(allows)]
    deny = Rule(id="deny", effect="deny", agents=["*"], tools=deny_tools)
    rule_list.insert(min(position, len(rule_list)), deny)
    policy = Policy(version=1, rules=tuple(rule_list), digest="sha256:test", text="")
    decision = policy.decide(Subject("a", "p", "m"), tool, args)
    if next(t for t in decision.trace if t.rule_id == "deny").matched:
        assert not decision.allowed and decision.rule_id == "deny"


yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
HOSTILE_YAML = [
    "version: 1\nrules: []\ndescription: 2024-13-45",
    "version: " + "9" * 5000,
    "version: 1\nrules: " + "[" * 3000,
    "version: 1\nrules: []\n" + "#" * 70_000,
    "a: &a [x, x]\nb: &b [*a, *a]\nversion: 1\nrules: []",
    "version: 1\nrules: []\ndescription: \ud800",
]
policy_like = st.fixed_dictionaries(
    {"version": st.one_of(st.integers(), st.text(max_size=3)), "rules": st.lists(
        st.dictionaries(st.sampled_from(["id", "effect", "agents", "models", "tools", "args", "expires", "reason"]),
                        yaml_values, max_size=8), max_size=3)},
)


@BOUNDED
@given(text=st.one_of(odd_text, policy_like.map(lambda doc: yaml.safe_dump(doc, allow_unicode=True)),
                     st.sampled_from(HOSTILE_YAML)))
def test_any_policy_text_parses_or_is_a_policy_error(text: str) -> None:
    try:
        parse_policy(text, "fuzz.yaml")
    except PolicyError as err:
        assert str(err).startswith("fuzz.yaml")
