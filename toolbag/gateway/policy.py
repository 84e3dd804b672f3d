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
``args`` constraints (every constraint of the rule). An argument that cannot be judged (missing, of another
type, not a finite number, not a path) fails an ``allow`` rule and does not save a call from a ``deny`` rule.

Patterns are shell globs (``*``, ``?``, ``[...]``). Agent and model patterns are case-sensitive; tool
patterns are not (:func:`~toolbag.gateway.patterns.fold_case`). A model pattern with a ``/`` matches
``provider/model`` (config name or vendor id); without one it matches the model's config name or vendor id
alone. Argument ``pattern`` constraints are RE2 expressions (linear time), matched against the whole string.
Sizes are bounded (:mod:`~toolbag.gateway.limits`).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import re2
from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from toolbag.errors import ToolbagError
from toolbag.gateway.files import StrictModel, file_from_env, invalid_message, parse_yaml, read_text
from toolbag.gateway.limits import (
    GLOB_MAX_CHARS,
    ONE_OF_MAX_VALUES,
    PATTERNS_MAX_PER_RULE,
    POLICY_MAX_BYTES,
    REASON_MAX_CHARS,
    RULE_ARGS_MAX,
    RULES_MAX,
    TEXT_MAX_CHARS,
    TRACE_MAX_CHARS,
    clip,
)
from toolbag.gateway.paths import normal_path
from toolbag.gateway.patterns import first_match

__all__ = [
    "ArgumentMiss",
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


Scalar = str | int | float | bool | None
Glob = Annotated[str, Field(max_length=GLOB_MAX_CHARS)]

_REGEX_OPTIONS = re2.Options()
_REGEX_OPTIONS.log_errors = False


def _finite_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def _same(value: object, option: Scalar) -> bool:
    """Equal, and a boolean only ever equals a boolean."""
    return isinstance(value, bool) == isinstance(option, bool) and value == option


@dataclass(frozen=True)
class ArgumentMiss:
    """Why an argument is outside a constraint. ``unjudged`` when the value could not be judged at all
    (missing, of another type, not a finite number, not a path): an allow rule then does not apply, and a
    deny rule does."""

    why: str
    unjudged: bool = False


class Constraint(StrictModel):
    """Conditions on one argument. All given conditions must hold; a missing argument is not judged."""

    one_of: list[Scalar] | None = Field(default=None, max_length=ONE_OF_MAX_VALUES)
    pattern: str | None = Field(default=None, max_length=TEXT_MAX_CHARS,
                                description="RE2 regular expression the whole string must match")
    prefix: str | None = Field(default=None, min_length=1, max_length=TEXT_MAX_CHARS,
                               description="the value, normalised as a path, must start with it")
    max_length: int | None = Field(default=None, ge=0)
    min: float | None = Field(default=None, allow_inf_nan=False)
    max: float | None = Field(default=None, allow_inf_nan=False)
    _regex: Any = PrivateAttr(default=None)

    @field_validator("one_of", mode="before")
    @classmethod
    def _scalars(cls, value: object) -> object:
        for i, option in enumerate(value if isinstance(value, list) else []):
            if isinstance(option, float) and not math.isfinite(option):
                raise ValueError(f"one_of value {i} is not a finite number")
            if isinstance(option, str) and len(option) > TEXT_MAX_CHARS:
                raise ValueError(f"one_of value {i} is longer than {TEXT_MAX_CHARS} characters")
            if option is not None and not isinstance(option, str | int | float | bool):
                raise ValueError(f"one_of value {i} is a {type(option).__name__}: "
                                 "write strings, numbers, booleans or null")
        return value

    @field_validator("min", "max", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError("must be a number, not a boolean")
        return value

    @field_validator("prefix")
    @classmethod
    def _normal_prefix(cls, value: str | None) -> str | None:
        if value is not None and normal_path(value) != value:
            normal = normal_path(value)
            hint = f"write {normal!r}" if normal else "a path has no backslash, % or NUL"
            raise ValueError(f"a prefix is compared with normalised paths, so it must be one itself: {hint}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Constraint:
        if not self.model_fields_set:
            raise ValueError("a constraint needs at least one of one_of, pattern, prefix, max_length, min, max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is greater than max {self.max:g}: no value could satisfy it")
        if self.pattern is not None:
            try:
                self._regex = re2.compile(self.pattern, _REGEX_OPTIONS)
            except re2.error as err:
                problem = err.args[0].decode("utf-8", "replace") if err.args else "invalid"
                raise ValueError(f"pattern /{self.pattern}/ is not a regular expression RE2 can compile "
                                 f"(no backreferences or lookaround): {problem}") from None
        return self

    def miss(self, name: str, present: bool, value: Any) -> ArgumentMiss | None:
        """Why ``value`` is outside this constraint, or None when it holds. A condition the value clearly
        breaks is reported before one that could not judge it."""
        if not present:
            return ArgumentMiss(f"argument {name!r} is required by the rule", unjudged=True)
        misses = [m for m in (*self._choice_misses(name, value), *self._text_misses(name, value),
                              *self._number_misses(name, value)) if m is not None]
        judged = [m for m in misses if not m.unjudged]
        return (judged or misses)[0] if misses else None

    def _choice_misses(self, name: str, value: Any) -> list[ArgumentMiss | None]:
        if self.one_of is None or any(_same(value, option) for option in self.one_of):
            return []
        confusable = any(isinstance(value, bool) != isinstance(o, bool) and value == o for o in self.one_of)
        return [ArgumentMiss(f"argument {name!r} must be one of {self.one_of!r}", unjudged=confusable)]

    def _text_misses(self, name: str, value: Any) -> list[ArgumentMiss | None]:
        if self.pattern is None and self.prefix is None and self.max_length is None:
            return []
        if not isinstance(value, str):
            return [ArgumentMiss(f"argument {name!r} must be a string", unjudged=True)]
        misses: list[ArgumentMiss | None] = []
        if self.max_length is not None and len(value) > self.max_length:
            misses.append(ArgumentMiss(f"argument {name!r} must be at most {self.max_length} characters"))
        if self.pattern is not None:
            misses.append(self._pattern_miss(name, value))
        if self.prefix is not None:
            path = normal_path(value)
            if path is None:
                misses.append(ArgumentMiss(f"argument {name!r} is not read as a path "
                                           "(a backslash, %, NUL or invalid character)", unjudged=True))
            elif not path.startswith(self.prefix):
                misses.append(ArgumentMiss(f"argument {name!r}, normalised as a path, must start with "
                                           f"{self.prefix!r}"))
        return misses

    def _pattern_miss(self, name: str, value: str) -> ArgumentMiss | None:
        try:
            found = self._regex.fullmatch(value)
        except UnicodeEncodeError:
            return ArgumentMiss(f"argument {name!r} is not valid Unicode text", unjudged=True)
        return None if found is not None else ArgumentMiss(f"argument {name!r} must match /{self.pattern}/")

    def _number_misses(self, name: str, value: Any) -> list[ArgumentMiss | None]:
        if self.min is None and self.max is None:
            return []
        if not _finite_number(value):
            return [ArgumentMiss(f"argument {name!r} must be a finite number", unjudged=True)]
        return [
            ArgumentMiss(f"argument {name!r} must be >= {self.min:g}") if self.min is not None and value < self.min
            else None,
            ArgumentMiss(f"argument {name!r} must be <= {self.max:g}") if self.max is not None and value > self.max
            else None,
        ]


class Rule(StrictModel):
    """One grant (``effect: allow``) or prohibition (``effect: deny``)."""

    id: str
    effect: Literal["allow", "deny"] = "allow"
    agents: list[Glob] = Field(min_length=1, max_length=PATTERNS_MAX_PER_RULE)
    models: list[Glob] = Field(default_factory=lambda: ["*"], min_length=1, max_length=PATTERNS_MAX_PER_RULE)
    tools: list[Glob] = Field(min_length=1, max_length=PATTERNS_MAX_PER_RULE)
    args: dict[str, Constraint] = Field(default_factory=dict, max_length=RULE_ARGS_MAX)
    expires: datetime | None = None
    reason: str = Field(default="", max_length=TEXT_MAX_CHARS)

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
    description: str = Field(default="", max_length=TEXT_MAX_CHARS)
    rules: list[Rule] = Field(default_factory=list, max_length=RULES_MAX)

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

    def __post_init__(self) -> None:
        object.__setattr__(self, "why", clip(self.why, TRACE_MAX_CHARS))


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", clip(self.reason, REASON_MAX_CHARS))

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
        return [self._trace_rule(rule, subject, tool, args, now) for rule in self.rules]

    @staticmethod
    def _trace_rule(rule: Rule, subject: Subject, tool: str, args: Mapping[str, Any] | None,
                    now: datetime) -> RuleTrace:
        misses: list[str] = []
        agent = first_match(rule.agents, [subject.agent])
        if agent is None:
            misses.append(f"agent {subject.agent!r} matches none of {rule.agents}")
        model = _model_match(rule.models, subject)
        if model is None:
            misses.append(f"model {subject.provider}/{subject.model} matches none of {rule.models}")
        tool_pattern = first_match(rule.tools, [tool], ignore_case=True)
        if tool_pattern is None:
            misses.append(f"tool {tool!r} matches none of {rule.tools}")
        if rule.expires is not None and rule.expires <= now:
            misses.append(f"expired at {rule.expires.isoformat()}")
        if misses:
            return RuleTrace(rule.id, rule.effect, False, False, "; ".join(misses))
        matched = f"agent~{agent} model~{model} tool~{tool_pattern}"
        if not rule.args:
            return RuleTrace(rule.id, rule.effect, True, True, matched)
        if args is None:
            return RuleTrace(rule.id, rule.effect, True, rule.effect == "allow",
                             f"{matched}; depends on arguments (not checked)")
        arg_misses = [
            m for name, c in rule.args.items() if (m := c.miss(name, name in args, args.get(name))) is not None
        ]
        if not arg_misses:
            return RuleTrace(rule.id, rule.effect, True, True, f"{matched}; arguments satisfy the rule")
        judged = [m.why for m in arg_misses if not m.unjudged]
        if rule.effect == "allow":
            return RuleTrace(rule.id, rule.effect, True, False, f"{matched}; " + "; ".join(m.why for m in arg_misses))
        if judged:
            return RuleTrace(rule.id, rule.effect, True, False, f"{matched}; " + "; ".join(judged))
        unjudged = "; ".join(m.why for m in arg_misses)
        return RuleTrace(rule.id, rule.effect, True, True, f"{matched}; {unjudged} (so the deny cannot be ruled out)")

    def decide(
        self, subject: Subject, tool: str, args: Mapping[str, Any] | None, *, now: datetime | None = None
    ) -> Decision:
        """May ``subject`` call ``tool`` with ``args``? With ``args=None`` the question is whether the tool may
        be *offered*: rules that depend on arguments count as possible grants, and deny rules that depend on
        arguments do not withhold it (the call is checked again with its arguments)."""
        when = now or datetime.now(UTC)
        traces = self._trace(subject, tool, args, when)

        def decision(allowed: bool, rule_id: str, reason: str) -> Decision:
            return Decision(allowed, rule_id, reason, self.version, self.digest, tuple(traces))

        for rule, t in zip(self.rules, traces, strict=True):
            if t.applies and rule.effect == "deny" and not (args is None and rule.conditional):
                return decision(False, rule.id, f"denied by rule {rule.id!r}" + (f": {rule.reason}" if rule.reason
                                                                                 else ""))
        for t in traces:
            if t.applies and t.effect == "allow":
                return decision(True, t.rule_id, f"granted by rule {t.rule_id!r}")
        near = [t for t in traces if t.matched and t.effect == "allow"]
        if near:
            return decision(False, "", "no rule grants it: " + "; ".join(
                f"rule {t.rule_id!r}: {t.why.split('; ', 1)[-1]}" for t in near))
        return decision(False, "", "no rule grants it (default deny)")

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


def _naming_rules(data: Mapping[Any, Any]) -> Callable[[str, tuple[int | str, ...]], str]:
    """A problem's place, with the id of the rule it is in: ``rule 'kv-public' (rules.2.args.key)``."""
    rules = data.get("rules")

    def where(place: str, loc: tuple[int | str, ...]) -> str:
        if len(loc) < 2 or loc[0] != "rules" or not isinstance(loc[1], int) or not isinstance(rules, list):
            return place
        rule = rules[loc[1]] if loc[1] < len(rules) else None
        rule_id = rule.get("id") if isinstance(rule, dict) else None
        return f"rule {rule_id!r} ({place})" if isinstance(rule_id, str) and _RULE_ID.match(rule_id) else place

    return where


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Parse and validate policy YAML, raising :class:`PolicyError` with every problem listed."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise PolicyError(f"{source}: the policy is not valid Unicode text") from None
    if size > POLICY_MAX_BYTES:
        raise PolicyError(f"{source}: the policy is {size} bytes; at most {POLICY_MAX_BYTES} are allowed")
    data = parse_yaml(text, source, PolicyError)
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: the top level must be a mapping with `version` and `rules`")
    try:
        doc = _PolicyDoc.model_validate(data)
    except ValidationError as err:
        raise PolicyError(invalid_message(source, "policy", err, where=_naming_rules(data))) from None
    return Policy(version=doc.version, rules=tuple(doc.rules), digest=_digest(text), text=text,
                  description=doc.description, source=source)


def load_policy_file(path: str | Path) -> Policy:
    """Read and parse a policy file."""
    file = Path(path)
    return parse_policy(read_text(file, "policy", PolicyError, max_bytes=POLICY_MAX_BYTES), str(file))


POLICY_ENV = "TOOLBAG_POLICY"


def default_policy_path() -> Path | None:
    """``$TOOLBAG_POLICY``, else ``./policy.yaml`` when it exists, else None (no local policy)."""
    return file_from_env(POLICY_ENV, "policy.yaml")
