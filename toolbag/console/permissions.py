"""The Permissions page: agents × models × tools as the policy decides it, and why, as
``toolbag permissions explain`` answers (the same :meth:`Policy.decide` on the same subject)."""

from __future__ import annotations

from dataclasses import dataclass

from toolbag.config import Config
from toolbag.gateway.live import PolicyStore
from toolbag.gateway.policy import Decision, Policy, PolicyError, Subject, default_policy_path, load_policy_file
from toolbag.store import JobStore

BUILTIN_TOOLS = ("clock.now", "math.eval", "text.stats", "kv.get", "kv.set")  # toolbag.gateway.builtin_tools
MAX_AGENTS = 12
MAX_TOOLS = 24


@dataclass(frozen=True)
class PolicySource:
    policy: Policy
    source: str


def current_policy(store: JobStore) -> PolicySource:
    """The live policy in Redis, else the local policy file, else the empty policy (all denied); the order
    ``toolbag permissions explain`` uses without ``--file``."""
    try:
        live = PolicyStore(store.redis, store.keys).load()
    except PolicyError as err:
        return PolicySource(Policy.empty(), f"the live policy is unreadable ({err}); everything denied")
    if live is not None:
        return PolicySource(live, f"live policy in redis ({store.keys.policy})")
    path = default_policy_path()
    if path is None:
        return PolicySource(Policy.empty(), "no policy anywhere (everything denied)")
    try:
        return PolicySource(load_policy_file(path), f"local file {path} (not published)")
    except PolicyError as err:
        return PolicySource(Policy.empty(), f"local file {path} is invalid ({err}); everything denied")


def subject_for(config: Config, agent: str, model: str) -> Subject:
    """``model`` is a config model name, or ``provider/model-id`` (as the CLI takes it)."""
    if model in config.models:
        m = config.models[model]
        return Subject(agent, m.provider, model, m.model_id)
    if "/" in model:
        provider, model_id = model.split("/", 1)
        return Subject(agent, provider, model_id, model_id)
    return Subject(agent, "", model, model)


def explain(config: Config, policy: Policy, agent: str, model: str, tool: str) -> Decision:
    return policy.decide(subject_for(config, agent, model), tool, None)


@dataclass(frozen=True)
class Matrix:
    agents: list[str]
    models: list[str]
    tools: list[str]
    allowed: dict[tuple[str, str, str], bool]  # (agent, model, tool) -> may it be offered


def _literal(pattern: str) -> bool:
    return not any(ch in pattern for ch in "*?[")


def matrix(config: Config, policy: Policy, tools: list[str], extra_agents: list[str]) -> Matrix:
    """The decision for every agent named by the policy (plus ``extra_agents`` and ``*`` for "anyone
    else"), every configured model and every tool (the registry's, and any the policy names literally)."""
    agents: list[str] = []
    for name in [*extra_agents, *(a for r in policy.rules for a in r.agents if _literal(a))]:
        if name not in agents:
            agents.append(name)
    agents = agents[:MAX_AGENTS - 1] + ["anyone-else"]
    names = list(tools)
    for rule in policy.rules:
        names += [t for t in rule.tools if _literal(t) and t not in names]
    names = sorted(set(names))[:MAX_TOOLS]
    models = sorted(config.models)
    allowed = {(a, m, t): explain(config, policy, a, m, t).allowed for a in agents for m in models for t in names}
    return Matrix(agents, models, names, allowed)


@dataclass(frozen=True)
class CellChange:
    agent: str
    model: str
    tool: str
    now: bool  # may it be offered under the new policy


def preview(config: Config, old: Policy, new: Policy, tools: list[str]) -> list[CellChange]:
    """Every agent × model × tool whose answer the new policy changes (over the agents and tools either
    policy names, plus "anyone-else" and ``tools``)."""
    before_grid, after_grid = matrix(config, old, tools, []), matrix(config, new, tools, [])
    agents = list(dict.fromkeys([*before_grid.agents, *after_grid.agents]))
    names = sorted({*before_grid.tools, *after_grid.tools})
    out = []
    for agent in agents:
        for model in sorted(config.models):
            for tool in names:
                before = explain(config, old, agent, model, tool).allowed
                after = explain(config, new, agent, model, tool).allowed
                if before != after:
                    out.append(CellChange(agent, model, tool, after))
    return out
