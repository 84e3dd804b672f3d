"""The one candidate picker: which models may serve a job, and which of them should take it now.

Every place that chooses a model asks this module: ``submit`` (the first attempt), the supervisor (the next
candidate after a failure, through :func:`toolbag.supervisor.decisions.decide`), a rate-limited interactive
attempt spilling over, and a person retrying an escalated job. Health (open circuits, cooldowns, a half-open
probe) is the one definition of "usable now"; it only ever removes or reorders candidates, never adds one.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from toolbag.config import Config, Tier
from toolbag.errors import ToolbagError
from toolbag.providers.base import OutcomeKind
from toolbag.providers.reasons import ContextReport

if TYPE_CHECKING:
    from toolbag.routing.health import HealthTracker


@dataclass(frozen=True)
class Needs:
    """What a job requires of a model."""

    json_schema: bool = False
    tools: bool = False
    min_context_tokens: int = 0


class NoCandidate(ToolbagError):
    def __init__(self, capability: str, tier: Tier, why: str, field: str = "capability") -> None:
        super().__init__(f"no usable model for {capability}/{tier}: {why}")
        self.field = field  # what the caller would change: the capability, max_cost_usd or max_latency_s


@dataclass(frozen=True)
class Bounds:
    """A job's own bounds on its candidates: the most one call may be expected to cost, and the slowest
    recent latency it accepts (None: no bound)."""

    max_cost_usd: float | None = None
    max_latency_s: float | None = None


@dataclass(frozen=True)
class Choice:
    """The candidates of a new job in the order the route's policy put them, the model for its first
    attempt, and why (empty for plain route order: nothing to explain)."""

    plan: list[str]
    model: str
    reason: str = ""


@dataclass(frozen=True)
class ContextLearned:
    """What a job's context-length failures say about its input: the fewest tokens a window must hold, each
    failing model's window as its vendor stated it, and the models that failed."""

    need_tokens: int = 0
    stated_windows: Mapping[str, int] = field(default_factory=dict)
    failed: frozenset[str] = frozenset()

    def window(self, model: str, config: Config) -> int:
        """``model``'s window for this job: the limit its vendor stated, else the configured one."""
        return self.stated_windows.get(model, config.models[model].context_window)

    def holds(self, model: str, config: Config) -> bool:
        return model not in self.failed and self.window(model, config) >= self.need_tokens


def context_learned(history: Iterable[Mapping[str, Any]], config: Config) -> ContextLearned:
    """What a job's context-length failures say. A request size the vendor stated is what a window must hold;
    a stated limit alone, or no numbers at all, asks for a window larger than the failing model's (its stated
    limit, else its configured window)."""
    reports = [(str(a["model"]), ContextReport.read(str(a.get("reason", "")))) for a in history
               if a.get("type") == "attempt" and a["outcome"] == OutcomeKind.CONTEXT_TOO_LONG
               and a["model"] in config.models]
    stated = {model: r.limit_tokens for model, r in reports if r.limit_tokens is not None}
    learned = ContextLearned(0, stated, frozenset(model for model, _ in reports))
    need_tokens = max((r.requested_tokens or learned.window(model, config) + 1 for model, r in reports), default=0)
    return dataclasses.replace(learned, need_tokens=need_tokens)


def ruled_out(history: Iterable[Mapping[str, Any]], config: Config) -> set[str]:
    """Models a job must not go to again, whoever routes it: every model that refused it, every model whose
    context window its input exceeded, and every model whose window cannot hold what that input needs
    (:func:`context_learned`)."""
    history = list(history)
    out = {str(a["model"]) for a in history if a.get("type") == "attempt" and a["outcome"] == OutcomeKind.REFUSED}
    context = context_learned(history, config)
    return out | {name for name in config.models if not context.holds(name, config)}


class Router:
    """Candidates of a route, filtered by what a job needs and ordered by live health."""

    def __init__(self, config: Config, health: HealthTracker | None = None) -> None:
        self.config = config
        self.health = health

    def plan(self, capability: str, tier: Tier, needs: Needs = Needs()) -> list[str]:
        """The candidates of the route that meet ``needs``, in route order (health not considered)."""
        route = self.config.route(capability, tier)
        return [m for m in route.candidates if self.meets(m, needs)]

    def meets(self, model_name: str, needs: Needs) -> bool:
        model = self.config.models[model_name]
        if needs.json_schema and not model.features.json_schema:
            return False
        if needs.tools and not model.features.tools:
            return False
        return model.context_window >= needs.min_context_tokens

    def usable(self, candidates: Sequence[str], *, prefer_faster: bool = False) -> list[str]:
        """``candidates`` that may take a job now, best first (fastest first with ``prefer_faster``)."""
        if self.health is None:
            return list(candidates)
        ordered = self.health.by_latency(candidates) if prefer_faster else candidates
        return self.health.usable(ordered)

    def pick(self, candidates: Sequence[str], *, prefer_faster: bool = False) -> str | None:
        """The model to try now: the best usable one, else the first candidate (a job waits for a model to
        recover rather than being refused), else None when there are no candidates."""
        live = self.usable(candidates, prefer_faster=prefer_faster)
        return live[0] if live else (candidates[0] if candidates else None)

    def first(self, capability: str, tier: Tier, needs: Needs = Needs()) -> tuple[list[str], str]:
        """(plan, the model for the first attempt) of a new job."""
        plan = self.plan(capability, tier, needs)
        model = self.pick(plan, prefer_faster=self.config.route(capability, tier).policy.prefer_faster)
        if model is None:
            raise NoCandidate(capability, tier, "no candidate in the route has the features this job needs")
        return plan, model

    def choose(
        self, capability: str, tier: Tier, needs: Needs = Needs(), bounds: Bounds = Bounds(),
        cost_of: Callable[[str], float] | None = None, rng: random.Random | None = None,
    ) -> Choice:
        """The route's policy applied to a new job: the candidates that meet its ``needs`` and ``limits``
        (``cost_of(model)``: the expected USD of this job's input on that model), ordered by the route's
        ``routing`` (``order``, ``cheapest``, ``fastest``, ``weighted``), and the first usable one of them."""
        route = self.config.route(capability, tier)
        plan = self.plan(capability, tier, needs)
        if not plan:
            raise NoCandidate(capability, tier, "no candidate in the route has the features this job needs")
        notes: list[str] = []
        cost: dict[str, float] = {m: cost_of(m) for m in plan} if cost_of is not None else {}
        if bounds.max_cost_usd is not None and cost:
            within = [m for m in plan if cost[m] <= bounds.max_cost_usd]
            if not within:
                cheapest = min(plan, key=lambda m: cost[m])
                raise NoCandidate(capability, tier, f"no candidate is expected to cost at most "
                                  f"${bounds.max_cost_usd:g} (the cheapest, {cheapest}, ${cost[cheapest]:.6f})",
                                  "max_cost_usd")
            if len(within) < len(plan):
                notes.append(f"over max_cost_usd ${bounds.max_cost_usd:g}: "
                             + ", ".join(m for m in plan if m not in within))
            plan = within
        latency = self._latencies(plan) if bounds.max_latency_s is not None or route.routing == "fastest" else {}
        if bounds.max_latency_s is not None:
            bound = bounds.max_latency_s
            within = [m for m in plan if (latency[m] or 0.0) <= bound]  # unmeasured: not known to be slow
            if not within:
                raise NoCandidate(capability, tier, f"every candidate's recent latency is over {bound:g}s ("
                                  + ", ".join(f"{m} {latency[m]:.2f}s" for m in plan if latency[m]) + ")",
                                  "max_latency_s")
            if len(within) < len(plan):
                notes.append(f"slower than max_latency_s {bound:g}s: " + ", ".join(m for m in plan if m not in within))
            plan = within
        plan, why = self._ordered(route.routing, plan, route.weights, route.candidates, cost, latency,
                                  rng or random)
        model = self.pick(plan, prefer_faster=route.policy.prefer_faster and route.routing == "order")
        assert model is not None  # plan is not empty
        if route.routing != "order" or notes:
            usable = "" if model == plan[0] else f"; {plan[0]} is not usable now (health)"
            why = f"{route.routing}: {model}" + (f" ({why})" if why else "") + usable
            return Choice(plan, model, "; ".join([why, *notes]))
        return Choice(plan, model)

    def _latencies(self, models: Sequence[str]) -> dict[str, float | None]:
        if self.health is None:
            return dict.fromkeys(models)
        return {m: self.health.snapshot(m).ewma_latency_s for m in models}

    @staticmethod
    def _ordered(
        routing: str, plan: list[str], weights: Sequence[float] | None, candidates: Sequence[str],
        cost: Mapping[str, float], latency: Mapping[str, float | None], rng: random.Random | Any,
    ) -> tuple[list[str], str]:
        """``plan`` in the policy's order, and what decided it."""
        if routing == "cheapest" and cost:
            ordered = sorted(plan, key=lambda m: cost[m])
            return ordered, "expected cost " + ", ".join(f"{m} ${cost[m]:.6f}" for m in ordered)
        if routing == "fastest":
            # a candidate not yet measured goes first, once: one call measures it
            ordered = sorted(plan, key=lambda m: -1.0 if latency.get(m) is None else float(latency[m] or 0.0))
            return ordered, "recent latency " + ", ".join(
                f"{m} {'unmeasured' if latency.get(m) is None else f'{latency[m]:.3f}s'}" for m in ordered)
        if routing == "weighted" and weights is not None:
            share = {m: w for m, w in zip(candidates, weights, strict=True) if m in plan}
            total = sum(share.values())
            if total > 0:
                pick = rng.choices(list(share), weights=list(share.values()))[0]
                return [pick, *(m for m in plan if m != pick)], f"share {share[pick] / total:.2f}"
        return plan, ""

    def spill_target(
        self, plan: Sequence[str], current: str, history: Iterable[Mapping[str, Any]],
        has_capacity: Callable[[str], bool],
    ) -> str | None:
        """Where a rate-limited interactive job goes now: the first candidate after ``current`` in its plan
        that is usable, not ruled out for this job (:func:`ruled_out`) and has capacity; None if none."""
        banned = ruled_out(history, self.config)
        later = plan[plan.index(current) + 1:] if current in plan else [m for m in plan if m != current]
        allowed = [m for m in later if m not in banned and m in self.config.models]
        return next((m for m in self.usable(allowed) if has_capacity(m)), None)
