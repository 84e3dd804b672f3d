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
from toolbag.providers.reasons import ContextReport
from toolbag.routing.router import context_learned, ruled_out

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
    deadline_in_s: float | None = None  # until the job's deadline; None: not known
    continuing: bool = False  # part of a streamed answer reached the caller and the route continues it


def _attempts(history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [h for h in history if h.get("type") == "attempt"]


def backoff_s(policy: RoutePolicy, n: int, rng: random.Random | None = None) -> float:
    """Jittered exponential backoff for the n-th retry (n ≥ 1)."""
    r = (rng or random).uniform(0.5, 1.5)
    return float(min(policy.backoff_max_s, policy.backoff_base_s * (2 ** max(0, n - 1)) * r))


def _capacity_unknown(model: str) -> bool:
    return True


class _Judge:
    """One decision in the making: what the history says, and the two moves every rule is made of."""

    def __init__(self, s: Situation, config: Config, policy: RoutePolicy,
                 usable: Callable[[Sequence[str]], list[str]], has_capacity: Callable[[str], bool],
                 rng: random.Random | None) -> None:
        self.s, self.config, self.policy, self.usable, self.rng = s, config, policy, usable, rng
        self.has_capacity = has_capacity
        self.attempts = _attempts(s.history)
        self.reroutes = sum(1 for h in s.history if h.get("type") == "decision" and h.get("action") == "reroute")
        self.refused_by = {a["model"] for a in self.attempts if a["outcome"] == OutcomeKind.REFUSED}
        self.banned = ruled_out(s.history, config)
        self.tried = {a["model"] for a in self.attempts}
        self.on_current = [a for a in self.attempts if a["model"] == s.model]
        self.what = f"{s.outcome}: {s.reason}" if s.reason else str(s.outcome)

    def pool(self, *, exclude: set[str], prefer_other_vendor: bool = False) -> list[str]:
        """Other candidates of the plan, untried first (health not asked)."""
        s = self.s
        pool = [m for m in s.plan if m != s.model and m not in exclude and m in self.config.models]
        ordered = [m for m in pool if m not in self.tried] + [m for m in pool if m in self.tried]
        if s.continuing:  # a model that takes the cut answer as a prefill gives the caller exactly the rest
            ordered.sort(key=lambda m: not self.config.accepts_prefill(m))
        if prefer_other_vendor:
            current_vendor = self.config.provider_of(s.model)
            ordered.sort(key=lambda m: self.config.provider_of(m) == current_vendor)  # stable: keeps route order
        return ordered

    def others(self, *, exclude: set[str], prefer_other_vendor: bool = False) -> list[str]:
        """:meth:`pool`, usable ones first (all of them when none is usable now)."""
        ordered = self.pool(exclude=exclude, prefer_other_vendor=prefer_other_vendor)
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
        s = self.s
        need_tokens = context_learned(s.history, self.config).need_tokens
        said = self._context_said(ContextReport.read(s.reason))
        decision = self.reroute(f"{said}; rerouting to a window that holds {need_tokens} tokens",
                                self.others(exclude=self.banned))
        return decision or Decision("fail", f"{said}; no other candidate's window holds {need_tokens} tokens "
                                            f"({self.what})")

    def _context_said(self, report: ContextReport) -> str:
        """What the vendor said about the request and the model's window, or the configured window it exceeded."""
        model = self.s.model
        configured = self.config.models[model].context_window
        if not report.said_anything:
            return f"input exceeds {model}'s {configured}-token window (the vendor stated no numbers)"
        parts = []
        if report.requested_tokens is not None:
            parts.append(f"the request is {report.requested_tokens} tokens")
        if report.limit_tokens is not None:
            parts.append(f"its limit is {report.limit_tokens} tokens")
        said = f"{model} says {' and '.join(parts)}"
        if report.limit_tokens is not None and report.limit_tokens != configured:
            said += f" (configured: {configured}; this job takes {report.limit_tokens} as its window)"
        return said

    def rate_limited(self) -> Decision:
        """Interactive: spill to a candidate with capacity now; else wait out a short retry-after on the same
        model (the route's ``interactive_wait_s``, within the deadline); else spill anyway. Other tiers wait."""
        s, bound_s = self.s, self.policy.interactive_wait_s
        wait_s = s.retry_after_s if s.retry_after_s is not None else DEFAULT_RETRY_AFTER_S
        limited = f"{s.model} rate limited (retry-after {wait_s:g}s)"
        if s.tier == "interactive":
            pool = self.pool(exclude=self.banned | self.tried)
            live = self.usable(pool)
            free = [m for m in live if self.has_capacity(m)]
            decision = self.reroute(f"{limited}; spilling over to a candidate with capacity now", free)
            if decision:
                return decision
            if wait_s <= bound_s and (s.deadline_in_s is None or wait_s < s.deadline_in_s):
                return Decision("wait", f"{limited}; no other candidate has capacity now, waiting on {s.model} "
                                        f"(the route waits up to {bound_s:g}s)", model=s.model, delay_s=wait_s)
            decision = self.reroute(f"{limited}; no other candidate has capacity now and the wait is over the "
                                    f"route's {bound_s:g}s or the deadline; spilling over anyway", live or pool)
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
        retry = Decision("retry", f"{self.what}; retrying {s.model}", model=s.model,
                         delay_s=self.backoff(transient_here))
        if transient_here <= self.policy.same_model_retries:
            if self.usable([s.model]):
                return retry
            decision = self.reroute(f"{self.what}; {s.model} is not usable now (its circuit is open)",
                                    self.others(exclude=self.banned))
            return decision or retry
        decision = self.reroute(f"{s.model} failing ({self.what})", self.others(exclude=self.banned))
        return decision or Decision("retry", f"{self.what}; no other candidate, retrying {s.model}", model=s.model,
                                    delay_s=retry.delay_s)

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
    has_capacity: Callable[[str], bool] = _capacity_unknown,
    rng: random.Random | None = None,
) -> Decision:
    """The supervisor's decision table: one rule per outcome. ``usable`` is the router's: it orders the
    next candidates by live health (:meth:`toolbag.routing.Router.usable`). ``has_capacity`` says whether a
    model's rate limits would admit the job now (unknown: yes)."""
    judge = _Judge(s, config, policy, usable, has_capacity, rng)
    if s.outcome is OutcomeKind.BAD_REQUEST:
        return Decision("fail", f"bad request: {s.reason}")
    if len(judge.attempts) >= policy.max_attempts:
        return Decision("escalate", f"gave up after {len(judge.attempts)} attempts; last: {s.outcome}: {s.reason}")
    rule = _RULES.get(s.outcome)
    return rule(judge) if rule else Decision("fail", f"unhandled outcome {judge.what}")
