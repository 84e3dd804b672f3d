"""Candidates for (capability, tier): the route's order, filtered by what the job needs and live health.

Router v1 keeps the configured order. ``Router.usable`` is the seam where health (open circuits) and the
rate limiter plug in: both only ever remove or reorder candidates, never invent new ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from toolbag.config import Config
from toolbag.errors import ToolbagError


@dataclass(frozen=True)
class Needs:
    """What a job requires of a model."""

    json_schema: bool = False
    tools: bool = False
    min_context_tokens: int = 0


Usable = Callable[[Sequence[str]], list[str]]


class NoCandidate(ToolbagError):
    def __init__(self, capability: str, tier: str, why: str) -> None:
        super().__init__(f"no usable model for {capability}/{tier}: {why}")


class Router:
    def __init__(self, config: Config, *, usable: Usable | None = None, by_latency: Usable | None = None) -> None:
        self.config = config
        self._usable = usable
        self._by_latency = by_latency

    def plan(self, capability: str, tier: str, needs: Needs = Needs()) -> list[str]:
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

    def usable(self, candidates: Sequence[str]) -> list[str]:
        """``candidates`` that health or limits allow right now, best first."""
        if self._usable is None:
            return list(candidates)
        return self._usable(candidates)

    def first(self, capability: str, tier: str, needs: Needs = Needs()) -> tuple[list[str], str]:
        """(plan, the model for the first attempt). Falls back to the head of the plan when every
        candidate is currently unhealthy: a queued job waits rather than being refused at submit."""
        plan = self.plan(capability, tier, needs)
        if not plan:
            raise NoCandidate(capability, tier, "no candidate in the route has the features this job needs")
        ordered = plan
        if self._by_latency is not None and self.config.route(capability, tier).policy.prefer_faster:
            ordered = self._by_latency(plan)
        live = self.usable(ordered)
        return plan, (live[0] if live else plan[0])
