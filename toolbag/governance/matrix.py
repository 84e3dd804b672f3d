"""The effective permission matrix: for each agent × model × tool, what the gateway would decide.

Every cell is :meth:`toolbag.gateway.policy.Policy.decide` asked whether the tool may be *offered*
(``args=None``), exactly as the gateway asks before an attempt; nothing here re-implements matching.
A cell is one of three levels:

- ``allow``: granted whatever the arguments;
- ``allow-if-args``: granted, but a rule with argument constraints decides each call (the granting rule
  has ``args``, or an argument-dependent ``deny`` rule also matches);
- ``deny``: not offered.

Rows are the agents the policy names (each pattern, taken literally as a representative agent), the callers
that ``toolbag.yaml`` gives limits to, and ``*`` for any other agent. Columns are every configured model as
``provider/model`` and every tool: the registered ones and any concrete tool name a rule mentions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum

from toolbag.config import Config
from toolbag.gateway.patterns import is_glob
from toolbag.gateway.policy import Decision, Policy, Subject

__all__ = ["ANY_AGENT", "Level", "Matrix", "matrix_agents", "matrix_tools", "permission_matrix"]

ANY_AGENT = "*"

#: agent -> "provider/model" -> tool -> level
Matrix = dict[str, dict[str, dict[str, str]]]


class Level(StrEnum):
    DENY = "deny"
    ALLOW_IF_ARGS = "allow-if-args"
    ALLOW = "allow"

    @property
    def rank(self) -> int:
        return {Level.DENY: 0, Level.ALLOW_IF_ARGS: 1, Level.ALLOW: 2}[self]


def level_of(decision: Decision, policy: Policy) -> Level:
    """The level of an offer decision, from the rules its trace says matched."""
    if not decision.allowed:
        return Level.DENY
    rules = {r.id: r for r in policy.rules}
    unconditional_grant = any(
        t.applies and t.effect == "allow" and not rules[t.rule_id].conditional for t in decision.trace
    )
    argument_deny = any(t.matched and t.effect == "deny" and rules[t.rule_id].conditional for t in decision.trace)
    return Level.ALLOW if unconditional_grant and not argument_deny else Level.ALLOW_IF_ARGS


def matrix_agents(policy: Policy, config: Config) -> list[str]:
    """The rows: every agent pattern in the policy, every caller with limits, and ``*``."""
    agents = {ANY_AGENT, *config.caller_limits}
    for rule in policy.rules:
        agents.update(rule.agents)
    return sorted(agents)


def matrix_tools(policy: Policy, tools: Iterable[str]) -> list[str]:
    """The tool columns: registered tools and every concrete (glob-free) tool name in the policy."""
    names = set(tools)
    for rule in policy.rules:
        names.update(t for t in rule.tools if not is_glob(t))
    return sorted(names)


def model_key(provider: str, model: str) -> str:
    return f"{provider}/{model}"


def permission_matrix(
    policy: Policy, config: Config, tools: Iterable[str], *, now: datetime | None = None
) -> Matrix:
    """Every cell of the matrix, decided by the policy as of ``now`` (default: this moment; a grant that
    has expired is gone, so the matrix narrows when a grant expires)."""
    when = now or datetime.now(UTC)
    columns = matrix_tools(policy, tools)
    out: Matrix = {}
    for agent in matrix_agents(policy, config):
        row: dict[str, dict[str, str]] = {}
        for name, model in sorted(config.models.items()):
            subject = Subject(agent, model.provider, name, model.model_id)
            row[model_key(model.provider, name)] = {
                tool: level_of(policy.decide(subject, tool, None, now=when), policy).value for tool in columns
            }
        out[agent] = row
    return out


def models_by_provider(models: Mapping[str, Mapping[str, object]]) -> dict[str, set[str]]:
    """``provider -> {"provider/model", ...}`` from a lock's ``models`` section."""
    out: dict[str, set[str]] = {}
    for name, entry in models.items():
        provider = str(entry.get("provider", ""))
        out.setdefault(provider, set()).add(model_key(provider, name))
    return out
