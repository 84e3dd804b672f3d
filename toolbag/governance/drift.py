"""Two locks compared, in sentences a reviewer can read.

``diff_locks(old, new)`` lists every difference as a :class:`Change`, the most serious first:

- ``unbumped``: a skill whose files changed under the same version, or a policy whose text changed under
  the same version. These block ``toolbag lock`` (without ``--force``) and fail ``toolbag diff``;
- ``widened``: a permission matrix cell that grants more than before (``permission WIDENED: agent
  support-bot may now call tool shell.exec on openai/*``). An agent that was not a row of the old matrix is
  compared with the old ``*`` row, the permissions it had as "any agent";
- then the rest: skills added, removed, bumped, or loading differently with the same files (the wire
  digests moved); models, routes (``claude-haiku moved behind gpt-luna``), tools, narrowed permissions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from toolbag.config import TIERS
from toolbag.governance.matrix import ANY_AGENT, Level, models_by_provider

__all__ = ["Change", "diff_locks"]

_ORDER = {"unbumped": 0, "widened": 1}


@dataclass(frozen=True)
class Change:
    """One difference. ``kind``: added, removed, changed, moved, widened, narrowed or unbumped."""

    section: str
    kind: str
    text: str

    @property
    def blocking(self) -> bool:
        """A change that must be fixed, not just reviewed and re-locked."""
        return self.kind == "unbumped"

    def __str__(self) -> str:
        return self.text


def diff_locks(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """Every difference from ``old`` to ``new``, blocking ones first, then widened permissions."""
    changes: list[Change] = []
    if old.get("format") != new.get("format"):
        changes.append(Change("format", "changed", f"the lock format changed ({old.get('format')} → "
                                                   f"{new.get('format')}): regenerate it with `toolbag lock`"))
    changes += _skills(old.get("skills", {}), new.get("skills", {}))
    changes += _policy(old.get("policy", {}), new.get("policy", {}))
    changes += _permissions(old, new)
    changes += _routes(old.get("routes", {}), new.get("routes", {}))
    changes += _models(old.get("models", {}), new.get("models", {}))
    changes += _tools(old.get("tools", {}), new.get("tools", {}))
    return sorted(changes, key=lambda c: _ORDER.get(c.kind, 2))  # stable: section order within a rank


# ------------------------------------------------------------------------------------------- skills


def _skills(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    out = []
    for name in sorted({*old, *new}):
        o, n = old.get(name, {}), new.get(name, {})
        if name not in old:
            out.append(Change("skills", "added", f"skill {name} added ({n['version']}, capability {n['capability']})"))
        elif name not in new:
            out.append(Change("skills", "removed", f"skill {name} removed (was {o['version']})"))
        elif o.get("content_hash") != n.get("content_hash"):
            if o.get("version") == n.get("version"):
                out.append(Change("skills", "unbumped",
                                  f"skill {name} changed without a version bump (still {n['version']}): "
                                  "raise metadata.toolbag.version in its SKILL.md"))
            else:
                out.append(Change("skills", "changed", f"skill {name} changed: {o['version']} → {n['version']}"))
        else:
            out += _wire(name, o, n)
    return out


def _wire(name: str, o: Mapping[str, Any], n: Mapping[str, Any]) -> list[Change]:
    """Same files, different bytes to a vendor: the renderer, an adapter, an SDK or the model moved."""
    o_wire, n_wire = o.get("wire", {}), n.get("wire", {})
    moved = []
    for kind in sorted({*o_wire, *n_wire}):
        a, b = o_wire.get(kind), n_wire.get(kind)
        if a == b:
            continue
        if a is None or b is None:
            moved.append(f"{kind} ({'no longer rendered' if b is None else 'now rendered'})")
        elif a.get("model") != b.get("model"):
            moved.append(f"{kind} (model {a.get('model')} → {b.get('model')})")
        else:
            moved.append(kind)
    if not moved and o.get("request_sha256") == n.get("request_sha256"):
        return []
    verb = "receives" if len(moved) == 1 else "receive"
    what = f"what {', '.join(moved)} {verb} changed" if moved else "the rendered request changed"
    return [Change("skills", "changed",
                   f"skill {name} loads differently although its files did not change: {what} "
                   "(the renderer, an adapter, an SDK, the model or the tier's settings changed)")]


# ------------------------------------------------------------------------------------------- policy


def _policy(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    if old.get("digest") == new.get("digest"):
        return []
    if old.get("version") == new.get("version"):
        return [Change("policy", "unbumped",
                       f"the policy changed without a version bump (still version {new.get('version')}): "
                       "raise `version` in policy.yaml (the fleet refuses other text under a live version)")]
    return [Change("policy", "changed", f"policy version {old.get('version')} → {new.get('version')}")]


# -------------------------------------------------------------------------------------- permissions


def _agent(agent: str) -> str:
    return "any agent" if agent == ANY_AGENT else f"agent {agent}"


def _where(models: Sequence[str], by_provider: Mapping[str, set[str]]) -> str:
    chosen = set(models)
    everything = set().union(*by_provider.values()) if by_provider else set()
    if everything and chosen >= everything:
        return "every model"
    parts = []
    for provider, members in sorted(by_provider.items()):
        if members and members <= chosen:
            parts.append(f"{provider}/*")
            chosen -= members
    return ", ".join(parts + sorted(chosen))


def _sentence(agent: str, tool: str, before: Level, after: Level, where: str) -> tuple[str, str]:
    who = _agent(agent)
    if after.rank > before.rank:
        if after is Level.ALLOW and before is Level.ALLOW_IF_ARGS:
            tail = " with any arguments (before: only with arguments its rules allow)"
        elif after is Level.ALLOW_IF_ARGS:
            tail = " (with arguments its rules allow)"
        else:
            tail = ""
        return "widened", f"permission WIDENED: {who} may now call tool {tool} on {where}{tail}"
    if after is Level.ALLOW_IF_ARGS:
        only = "only with arguments its rules allow"
        return "narrowed", f"permission narrowed: {who} may call tool {tool} on {where} {only}"
    return "narrowed", f"permission narrowed: {who} may no longer call tool {tool} on {where}"


def _level(value: object) -> Level:
    """A cell's level; a missing cell (a new model, tool or agent) or an unknown word counts as deny."""
    try:
        return Level(str(value))
    except ValueError:
        return Level.DENY


def _permissions(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    o_matrix: Mapping[str, Any] = old.get("permissions", {})
    n_matrix: Mapping[str, Any] = new.get("permissions", {})
    by_provider = models_by_provider({**old.get("models", {}), **new.get("models", {})})
    groups: dict[tuple[str, str, Level, Level], list[str]] = {}
    for agent in sorted({*o_matrix, *n_matrix}):
        o_row = o_matrix.get(agent, o_matrix.get(ANY_AGENT, {}))
        n_row = n_matrix.get(agent, n_matrix.get(ANY_AGENT, {}))
        for model in sorted({*o_row, *n_row}):
            o_cells, n_cells = o_row.get(model, {}), n_row.get(model, {})
            for tool in sorted({*o_cells, *n_cells}):
                before, after = _level(o_cells.get(tool)), _level(n_cells.get(tool))
                if before is not after:
                    groups.setdefault((agent, tool, before, after), []).append(model)
    out = []
    for (agent, tool, before, after), models in groups.items():
        kind, text = _sentence(agent, tool, before, after, _where(models, by_provider))
        out.append(Change("permissions", kind, text))
    return out


# ------------------------------------------------------------------------------------------- routes


def _moves(old_order: Sequence[str], new_order: Sequence[str]) -> list[str]:
    """How the candidates both orders share were reordered, with as few moves as possible (the longest
    common subsequence stays; among equals, the ones that moved forward stay and the others are named)."""
    n_old, n_new = len(old_order), len(new_order)
    lcs = [[0] * (n_new + 1) for _ in range(n_old + 1)]
    for i in range(n_old - 1, -1, -1):
        for j in range(n_new - 1, -1, -1):
            lcs[i][j] = (lcs[i + 1][j + 1] + 1 if old_order[i] == new_order[j]
                         else max(lcs[i + 1][j], lcs[i][j + 1]))
    stay: set[str] = set()
    i = j = 0
    while i < n_old and j < n_new:
        if old_order[i] == new_order[j]:
            stay.add(old_order[i])
            i, j = i + 1, j + 1
        elif lcs[i + 1][j] >= lcs[i][j + 1]:
            i += 1
        else:
            j += 1
    out = []
    for index, name in enumerate(new_order):
        if name in stay:
            continue
        if index == 0:
            out.append(f"{name} moved to the front, ahead of {new_order[1]}" if n_new > 1 else f"{name} moved")
        else:
            out.append(f"{name} moved behind {new_order[index - 1]}")
    return out


def _tier_order(tiers: Sequence[str]) -> list[str]:
    return [t for t in TIERS if t in tiers] + sorted(t for t in tiers if t not in TIERS)


def _routes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    out = []
    for capability in sorted({*old, *new}):
        o_tiers, n_tiers = old.get(capability), new.get(capability)
        if o_tiers is None:
            out.append(Change("routes", "added", f"route {capability} added"))
            o_tiers = {}
        if n_tiers is None:
            out.append(Change("routes", "removed", f"route {capability} removed: jobs for it are refused at submit"))
            continue
        for tier in _tier_order([*{*o_tiers, *n_tiers}]):
            o, n = o_tiers.get(tier), n_tiers.get(tier)
            where = f"route {capability}/{tier}"
            if o == n:
                continue
            if o is None:
                out.append(Change("routes", "added", f"{where}: {', '.join(n)}"))
            elif n is None:
                fallback = "the tier falls back to another tier's route"
                out.append(Change("routes", "removed", f"{where} removed ({fallback})"))
            else:
                parts = [f"{c} added" for c in n if c not in o] + [f"{c} removed" for c in o if c not in n]
                parts += _moves([c for c in o if c in n], [c for c in n if c in o])
                kind = "moved" if all(c in o for c in n) and len(o) == len(n) else "changed"
                out.append(Change("routes", kind, f"{where}: {'; '.join(parts)} (now {', '.join(n)})"))
    return out


# ------------------------------------------------------------------------------------ models, tools


def _models(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    out = []
    for name in sorted({*old, *new}):
        o, n = old.get(name, {}), new.get(name, {})
        if name not in old:
            out.append(Change("models", "added", f"model {name} added ({n['provider']}/{n['model_id']})"))
            continue
        if name not in new:
            out.append(Change("models", "removed", f"model {name} removed"))
            continue
        for key in ("provider", "kind", "model_id", "context_window"):
            if o.get(key) != n.get(key):
                out.append(Change("models", "changed", f"model {name}: {key} {o.get(key)} → {n.get(key)}"))
        o_features, n_features = o.get("features", {}), n.get("features", {})
        for key in sorted({*o_features, *n_features}):
            if o_features.get(key) != n_features.get(key):
                out.append(Change("models", "changed",
                                  f"model {name}: features.{key} {o_features.get(key)} → {n_features.get(key)}"))
    return out


def _tools(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    out = []
    for name in sorted({*old, *new}):
        o, n = old.get(name, {}), new.get(name, {})
        if name not in old:
            out.append(Change("tools", "added", f"tool {name} registered ({n['source']})"))
        elif name not in new:
            out.append(Change("tools", "removed", f"tool {name} is no longer registered (was {o['source']})"))
        else:
            if o.get("source") != n.get("source"):
                out.append(Change("tools", "changed", f"tool {name} now comes from {n['source']} (was {o['source']})"))
            if o.get("sha256") != n.get("sha256"):
                out.append(Change("tools", "changed",
                                  f"tool {name}: its description or argument schema changed (models see the new one)"))
    return out
