"""What happens after an attempt that did not succeed, as a pure function.

``decide`` sees the outcome, the job's plan and its whole history, and returns one :class:`Decision`.
It never touches Redis: the supervisor applies the decision through a fenced transition.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from toolbag.config import Config, RoutePolicy, Tier
from toolbag.providers.base import OutcomeKind
from toolbag.routing.router import ruled_out

Action = Literal["retry", "reroute", "wait", "escalate", "fail"]

TRANSIENT = frozenset(
    {OutcomeKind.OVERLOADED, OutcomeKind.SERVER_ERROR, OutcomeKind.NETWORK, OutcomeKind.LOST}
)
DEFAULT_RETRY_AFTER_S = 1.0


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    model: str | None = None
    delay_s: float = 0.0
    feedback: str = ""


@dataclass(frozen=True)
class Situation:
    """Everything ``decide`` needs about one job at one moment."""

    outcome: OutcomeKind
    reason: str
    model: str
    tier: Tier
    plan: Sequence[str]
    history: Sequence[dict[str, Any]]
    retry_after_s: float | None = None


def _attempts(history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [h for h in history if h.get("type") == "attempt"]


def backoff_s(policy: RoutePolicy, n: int, rng: random.Random | None = None) -> float:
    """Jittered exponential backoff for the n-th retry (n ≥ 1)."""
    r = (rng or random).uniform(0.5, 1.5)
    return float(min(policy.backoff_max_s, policy.backoff_base_s * (2 ** max(0, n - 1)) * r))


class _Judge:
    """One decision in the making: what the history says, and the two moves every rule is made of."""

    def __init__(self, s: Situation, config: Config, policy: RoutePolicy,
                 usable: Callable[[Sequence[str]], list[str]], rng: random.Random | None) -> None:
        self.s, self.config, self.policy, self.usable, self.rng = s, config, policy, usable, rng
        self.attempts = _attempts(s.history)
        self.reroutes = sum(1 for h in s.history if h.get("type") == "decision" and h.get("action") == "reroute")
        self.refused_by = {a["model"] for a in self.attempts if a["outcome"] == OutcomeKind.REFUSED}
        self.banned = ruled_out(s.history, config)
        self.tried = {a["model"] for a in self.attempts}
        self.on_current = [a for a in self.attempts if a["model"] == s.model]
        self.what = f"{s.outcome}: {s.reason}" if s.reason else str(s.outcome)

    def others(self, *, exclude: set[str], prefer_other_vendor: bool = False, min_window: int = 0) -> list[str]:
        """Other candidates of the plan, untried first, usable ones first."""
        s, models = self.s, self.config.models
        pool = [m for m in s.plan if m != s.model and m not in exclude and models[m].context_window > min_window]
        ordered = [m for m in pool if m not in self.tried] + [m for m in pool if m in self.tried]
        if prefer_other_vendor:
            current_vendor = self.config.provider_of(s.model)
            ordered.sort(key=lambda m: self.config.provider_of(m) == current_vendor)  # stable: keeps route order
        return self.usable(ordered) or ordered

    def reroute(self, reason: str, candidates: list[str]) -> Decision | None:
        if not candidates:
            return None
        if self.reroutes >= self.policy.max_reroutes:
            return Decision("escalate", f"reroute limit ({self.policy.max_reroutes}) reached; last: {reason}")
        return Decision("reroute", reason, model=candidates[0])

    def backoff(self, n: int) -> float:
        return backoff_s(self.policy, n, self.rng)

    def refused(self) -> Decision:
        decision = self.reroute(f"{self.s.model} refused", self.others(exclude=self.banned, prefer_other_vendor=True))
        return decision or Decision("escalate", f"every candidate refused ({', '.join(sorted(self.refused_by))})")

    def context_too_long(self) -> Decision:
        window = self.config.models[self.s.model].context_window
        decision = self.reroute(f"input exceeds {self.s.model}'s {window}-token window",
                                self.others(exclude=self.banned, min_window=window))
        return decision or Decision("fail", f"input exceeds the context window of every candidate ({self.what})")

    def rate_limited(self) -> Decision:
        s = self.s
        wait_s = s.retry_after_s if s.retry_after_s is not None else DEFAULT_RETRY_AFTER_S
        if s.tier == "interactive":
            untried = self.others(exclude=self.banned | self.tried)
            decision = self.reroute(f"{s.model} rate limited; spilling over", untried)
            if decision:
                return decision
        return Decision("wait", f"{s.model} rate limited; waiting {wait_s:g}s", model=s.model, delay_s=wait_s)

    def invalid_output(self) -> Decision:
        s = self.s
        if sum(1 for a in self.on_current if a["outcome"] == OutcomeKind.INVALID_OUTPUT) <= 1:
            return Decision("retry", f"output failed validation; retrying with feedback: {s.reason}",
                            model=s.model, feedback=s.reason)
        decision = self.reroute(f"{s.model} produced invalid output twice", self.others(exclude=self.banned))
        return decision or Decision("escalate", f"no candidate produced valid output ({self.what})")

    def transient(self) -> Decision:
        s = self.s
        transient_here = sum(1 for a in self.on_current if a["outcome"] in TRANSIENT)
        if transient_here <= self.policy.same_model_retries:
            return Decision("retry", f"{self.what}; retrying {s.model}", model=s.model,
                            delay_s=self.backoff(transient_here))
        decision = self.reroute(f"{s.model} failing ({self.what})", self.others(exclude=self.banned))
        return decision or Decision("retry", f"{self.what}; no other candidate, retrying {s.model}", model=s.model,
                                    delay_s=self.backoff(transient_here))

    def timeout(self) -> Decision:
        s = self.s
        decision = self.reroute(f"{s.model} timed out", self.others(exclude=self.banned))
        if decision:
            return decision
        if len(self.on_current) <= self.policy.same_model_retries:
            return Decision("retry", f"{self.what}; no other candidate", model=s.model,
                            delay_s=self.backoff(len(self.on_current)))
        return Decision("escalate", f"every candidate timed out ({self.what})")

    def unusable(self) -> Decision:
        decision = self.reroute(f"{self.s.model} unusable ({self.what})", self.others(exclude=self.banned))
        return decision or Decision("escalate", f"no usable candidate: {self.what}")


_RULES: dict[OutcomeKind, Callable[[_Judge], Decision]] = {
    OutcomeKind.REFUSED: _Judge.refused,
    OutcomeKind.CONTEXT_TOO_LONG: _Judge.context_too_long,
    OutcomeKind.RATE_LIMITED: _Judge.rate_limited,
    OutcomeKind.INVALID_OUTPUT: _Judge.invalid_output,
    OutcomeKind.TIMEOUT: _Judge.timeout,
    OutcomeKind.AUTH: _Judge.unusable,
    OutcomeKind.QUOTA_EXHAUSTED: _Judge.unusable,
    **{kind: _Judge.transient for kind in TRANSIENT},
}


def decide(
    s: Situation,
    config: Config,
    policy: RoutePolicy,
    *,
    usable: Callable[[Sequence[str]], list[str]] = list,
    rng: random.Random | None = None,
) -> Decision:
    """The supervisor's decision table: one rule per outcome. ``usable`` is the router's: it orders the
    next candidates by live health (:meth:`toolbag.routing.Router.usable`)."""
    judge = _Judge(s, config, policy, usable, rng)
    if s.outcome is OutcomeKind.BAD_REQUEST:
        return Decision("fail", f"bad request: {s.reason}")
    if len(judge.attempts) >= policy.max_attempts:
        return Decision("escalate", f"gave up after {len(judge.attempts)} attempts; last: {s.outcome}: {s.reason}")
    rule = _RULES.get(s.outcome)
    return rule(judge) if rule else Decision("fail", f"unhandled outcome {judge.what}")
