"""The permission policy: who (agent) on which model may call which tool, with which arguments.

``policy.yaml`` is the reviewed source of truth::

    version: 3                       # bump on every change; the audit records it
    rules:
      - id: analysts-read            # the grant id written to the audit
        agents: ["analyst", "team-*"]
        models: ["anthropic/*", "gpt-*"]
        tools: ["clock.now", "math.*"]
      - id: kv-public-only
        agents: ["*"]
        tools: ["kv.get"]
        args: {key: {pattern: "public\\..*"}}
      - id: never-delete
        effect: deny
        agents: ["*"]
        tools: ["*.delete*"]
        reason: destructive tools are not for agents

Evaluation, Cedar-style: **default deny**, an applicable ``deny`` rule wins over any ``allow``. A rule
*applies* when its agent, model and tool patterns match, it has not expired, and the arguments satisfy its
``args`` constraints (every constraint of the rule). Patterns are shell globs (``*``, ``?``, ``[...]``),
case-sensitive. A model pattern with a ``/`` matches ``provider/model`` (config name or vendor id); without
one it matches the model's config name or vendor id alone.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from toolbag.errors import ToolbagError
from toolbag.gateway.files import StrictModel, file_from_env, invalid_message, parse_yaml, read_text
from toolbag.gateway.patterns import first_match

__all__ = [
    "Constraint",
    "Decision",
    "Policy",
    "PolicyError",
    "Rule",
    "RuleTrace",
    "Subject",
    "POLICY_ENV",
    "default_policy_path",
    "load_policy_file",
    "parse_policy",
]

_RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


class PolicyError(ToolbagError):
    """The policy cannot be read or is invalid. Callers treat it as a denial (fail closed)."""


class Constraint(StrictModel):
    """Conditions on one argument. All given conditions must hold; a missing argument fails every one."""

    one_of: list[Any] | None = None
    pattern: str | None = Field(default=None, description="regular expression the whole string must match")
    prefix: str | None = None
    max_length: int | None = Field(default=None, ge=0)
    min: float | None = None
    max: float | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as err:
                raise ValueError(f"not a valid regular expression: {err}") from None
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> Constraint:
        if not self.model_fields_set:
            raise ValueError("a constraint needs at least one of one_of, pattern, prefix, max_length, min, max")
        return self

    def violation(self, name: str, present: bool, value: Any) -> str | None:
        """Why ``value`` breaks this constraint, or None when it holds."""
        if not present:
            return f"argument {name!r} is required by the rule"
        if self.one_of is not None and value not in self.one_of:
            return f"argument {name!r} must be one of {self.one_of!r}"
        if self.pattern is not None or self.prefix is not None or self.max_length is not None:
            if not isinstance(value, str):
                return f"argument {name!r} must be a string"
            if self.pattern is not None and re.fullmatch(self.pattern, value) is None:
                return f"argument {name!r} must match /{self.pattern}/"
            if self.prefix is not None and not value.startswith(self.prefix):
                return f"argument {name!r} must start with {self.prefix!r}"
            if self.max_length is not None and len(value) > self.max_length:
                return f"argument {name!r} must be at most {self.max_length} characters"
        if self.min is not None or self.max is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"argument {name!r} must be a number"
            if self.min is not None and value < self.min:
                return f"argument {name!r} must be >= {self.min:g}"
            if self.max is not None and value > self.max:
                return f"argument {name!r} must be <= {self.max:g}"
        return None


class Rule(StrictModel):
    """One grant (``effect: allow``) or prohibition (``effect: deny``)."""

    id: str
    effect: Literal["allow", "deny"] = "allow"
    agents: list[str] = Field(min_length=1)
    models: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    tools: list[str] = Field(min_length=1)
    args: dict[str, Constraint] = Field(default_factory=dict)
    expires: datetime | None = None
    reason: str = ""

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not _RULE_ID.match(value):
            raise ValueError("1-128 characters from letters, digits and . _ : - (starting with a letter or digit)")
        return value

    @field_validator("expires")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @property
    def conditional(self) -> bool:
        """True when the rule depends on the call's arguments."""
        return bool(self.args)


class _PolicyDoc(StrictModel):
    version: int = Field(ge=1)
    description: str = ""
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> _PolicyDoc:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} is used twice; ids name grants in the audit and must be unique")
            seen.add(rule.id)
        return self


@dataclass(frozen=True)
class Subject:
    """Who is asking: the agent (the job's caller) and the model it runs on."""

    agent: str
    provider: str
    model: str  # config name, e.g. "claude-haiku"
    model_id: str = ""  # vendor id, e.g. "claude-haiku-4-5"
    job_id: str = ""

    def model_names(self) -> tuple[str, ...]:
        names = [self.model] + ([self.model_id] if self.model_id and self.model_id != self.model else [])
        return tuple(names)


@dataclass(frozen=True)
class RuleTrace:
    """How one rule related to one question (for ``permissions explain``)."""

    rule_id: str
    effect: str
    matched: bool  # agent, model and tool patterns all match and the rule is live
    applies: bool  # matched, and the arguments satisfy its constraints (or were not checked)
    why: str


@dataclass(frozen=True)
class Decision:
    """The answer to one question. ``rule_id`` is the grant (allow) or the prohibition (deny) that decided;
    empty for a default deny."""

    allowed: bool
    rule_id: str
    reason: str
    policy_version: int
    policy_digest: str
    trace: tuple[RuleTrace, ...] = field(default=(), compare=False)

    @property
    def word(self) -> str:
        return "allow" if self.allowed else "deny"


def _model_match(patterns: Sequence[str], subject: Subject) -> str | None:
    names = subject.model_names()
    for pattern in patterns:
        if "/" in pattern:
            values: Sequence[str] = [f"{subject.provider}/{n}" for n in names]
        else:
            values = names
        if first_match([pattern], values):
            return pattern
    return None


@dataclass(frozen=True)
class Policy:
    """A parsed, immutable policy. ``digest`` identifies its exact text (``sha256:...``)."""

    version: int
    rules: tuple[Rule, ...]
    digest: str
    text: str
    description: str = ""
    source: str = "<policy>"

    @classmethod
    def empty(cls, source: str = "<no policy>") -> Policy:
        """No rules: everything is denied."""
        return cls(version=0, rules=(), digest="none", text="", source=source)

    # ---------------------------------------------------------------------------------- decisions

    def _trace(self, subject: Subject, tool: str, args: Mapping[str, Any] | None, now: datetime) -> list[RuleTrace]:
        traces: list[RuleTrace] = []
        for rule in self.rules:
            misses: list[str] = []
            agent = first_match(rule.agents, [subject.agent])
            if agent is None:
                misses.append(f"agent {subject.agent!r} matches none of {rule.agents}")
            model = _model_match(rule.models, subject)
            if model is None:
                misses.append(f"model {subject.provider}/{subject.model} matches none of {rule.models}")
            tool_pattern = first_match(rule.tools, [tool])
            if tool_pattern is None:
                misses.append(f"tool {tool!r} matches none of {rule.tools}")
            if rule.expires is not None and rule.expires <= now:
                misses.append(f"expired at {rule.expires.isoformat()}")
            if misses:
                traces.append(RuleTrace(rule.id, rule.effect, False, False, "; ".join(misses)))
                continue
            matched = f"agent~{agent} model~{model} tool~{tool_pattern}"
            if not rule.args:
                traces.append(RuleTrace(rule.id, rule.effect, True, True, matched))
                continue
            if args is None:
                traces.append(RuleTrace(rule.id, rule.effect, True, rule.effect == "allow",
                                        f"{matched}; depends on arguments (not checked)"))
                continue
            broken = [
                v for name, c in rule.args.items()
                if (v := c.violation(name, name in args, args.get(name))) is not None
            ]
            if broken:
                traces.append(RuleTrace(rule.id, rule.effect, True, False, f"{matched}; " + "; ".join(broken)))
            else:
                traces.append(RuleTrace(rule.id, rule.effect, True, True, f"{matched}; arguments satisfy the rule"))
        return traces

    def decide(
        self, subject: Subject, tool: str, args: Mapping[str, Any] | None, *, now: datetime | None = None
    ) -> Decision:
        """May ``subject`` call ``tool`` with ``args``? With ``args=None`` the question is whether the tool may
        be *offered*: rules that depend on arguments count as possible grants, and deny rules that depend on
        arguments do not withhold it (the call is checked again with its arguments)."""
        when = now or datetime.now(UTC)
        traces = self._trace(subject, tool, args, when)
        for t in traces:
            if t.applies and t.effect == "deny":
                rule = next(r for r in self.rules if r.id == t.rule_id)
                if args is None and rule.conditional:
                    continue
                reason = f"denied by rule {rule.id!r}" + (f": {rule.reason}" if rule.reason else "")
                return Decision(False, rule.id, reason, self.version, self.digest, tuple(traces))
        for t in traces:
            if t.applies and t.effect == "allow":
                return Decision(True, t.rule_id, f"granted by rule {t.rule_id!r}", self.version, self.digest,
                                tuple(traces))
        near = [t for t in traces if t.matched and t.effect == "allow"]
        if near:
            reason = "no rule grants it: " + "; ".join(f"rule {t.rule_id!r}: {t.why.split('; ', 1)[-1]}" for t in near)
        else:
            reason = "no rule grants it (default deny)"
        return Decision(False, "", reason, self.version, self.digest, tuple(traces))

    def grants_any(self, subject: Subject, *, now: datetime | None = None) -> bool:
        """Cheap pre-check: could any tool be offered to ``subject`` (some live allow rule matches agent
        and model)?"""
        when = now or datetime.now(UTC)
        return any(
            r.effect == "allow"
            and (r.expires is None or r.expires > when)
            and first_match(r.agents, [subject.agent]) is not None
            and _model_match(r.models, subject) is not None
            for r in self.rules
        )


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Parse and validate policy YAML, raising :class:`PolicyError` with every problem listed."""
    data = parse_yaml(text, source, PolicyError)
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: the top level must be a mapping with `version` and `rules`")
    try:
        doc = _PolicyDoc.model_validate(data)
    except ValidationError as err:
        raise PolicyError(invalid_message(source, "policy", err)) from None
    return Policy(version=doc.version, rules=tuple(doc.rules), digest=_digest(text), text=text,
                  description=doc.description, source=source)


def load_policy_file(path: str | Path) -> Policy:
    """Read and parse a policy file."""
    file = Path(path)
    return parse_policy(read_text(file, "policy", PolicyError), str(file))


POLICY_ENV = "TOOLBAG_POLICY"


def default_policy_path() -> Path | None:
    """``$TOOLBAG_POLICY``, else ``./policy.yaml`` when it exists, else None (no local policy)."""
    return file_from_env(POLICY_ENV, "policy.yaml")
