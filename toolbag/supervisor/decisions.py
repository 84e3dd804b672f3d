"""What happens after an attempt that did not succeed, as a pure function.

``decide`` sees the outcome, the job's plan and its whole history, and returns one :class:`Decision`.
It never touches Redis: the supervisor applies the decision through a fenced transition.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from toolbag.config import Config, RoutePolicy
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
    tier: str
    plan: Sequence[str]
    history: Sequence[dict[str, Any]]
    retry_after_s: float | None = None


def _attempts(history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [h for h in history if h.get("type") == "attempt"]


def backoff_s(policy: RoutePolicy, n: int, rng: random.Random | None = None) -> float:
    """Jittered exponential backoff for the n-th retry (n ≥ 1)."""
    r = (rng or random).uniform(0.5, 1.5)
    return float(min(policy.backoff_max_s, policy.backoff_base_s * (2 ** max(0, n - 1)) * r))


def decide(
    s: Situation,
    config: Config,
    policy: RoutePolicy,
    *,
    usable: Callable[[Sequence[str]], list[str]] = list,
    rng: random.Random | None = None,
) -> Decision:
    """The supervisor's decision table. ``usable`` is the router's: it orders the next candidates by live
    health (:meth:`toolbag.routing.Router.usable`)."""
    attempts = _attempts(s.history)
    reroutes = sum(1 for h in s.history if h.get("type") == "decision" and h.get("action") == "reroute")
    refused_by = {a["model"] for a in attempts if a["outcome"] == OutcomeKind.REFUSED}
    banned = ruled_out(s.history, config)
    tried = {a["model"] for a in attempts}
    on_current = [a for a in attempts if a["model"] == s.model]
    provider_of = config.provider_of

    if s.outcome is OutcomeKind.BAD_REQUEST:
        return Decision("fail", f"bad request: {s.reason}")
    if len(attempts) >= policy.max_attempts:
        return Decision("escalate", f"gave up after {len(attempts)} attempts; last: {s.outcome}: {s.reason}")

    def others(*, exclude: set[str], prefer_other_vendor: bool = False, min_window: int = 0) -> list[str]:
        pool = [
            m for m in s.plan
            if m != s.model and m not in exclude and config.models[m].context_window > min_window
        ]
        untried = [m for m in pool if m not in tried]
        ordered = untried + [m for m in pool if m in tried]
        if prefer_other_vendor:
            current_vendor = provider_of(s.model)
            ordered.sort(key=lambda m: provider_of(m) == current_vendor)  # stable: keeps route order
        return usable(ordered) or ordered

    def reroute(reason: str, candidates: list[str]) -> Decision | None:
        if not candidates:
            return None
        if reroutes >= policy.max_reroutes:
            return Decision("escalate", f"reroute limit ({policy.max_reroutes}) reached; last: {reason}")
        return Decision("reroute", reason, model=candidates[0])

    outcome = s.outcome
    what = f"{outcome}: {s.reason}" if s.reason else str(outcome)

    if outcome is OutcomeKind.REFUSED:
        decision = reroute(f"{s.model} refused", others(exclude=banned, prefer_other_vendor=True))
        return decision or Decision("escalate", f"every candidate refused ({', '.join(sorted(refused_by))})")

    if outcome is OutcomeKind.CONTEXT_TOO_LONG:
        window = config.models[s.model].context_window
        decision = reroute(
            f"input exceeds {s.model}'s {window}-token window",
            others(exclude=banned, min_window=window),
        )
        return decision or Decision("fail", f"input exceeds the context window of every candidate ({what})")

    if outcome is OutcomeKind.RATE_LIMITED:
        wait_s = s.retry_after_s if s.retry_after_s is not None else DEFAULT_RETRY_AFTER_S
        if s.tier == "interactive":
            decision = reroute(f"{s.model} rate limited; spilling over", others(exclude=banned | tried))
            if decision:
                return decision
        return Decision("wait", f"{s.model} rate limited; waiting {wait_s:g}s", model=s.model, delay_s=wait_s)

    if outcome is OutcomeKind.INVALID_OUTPUT:
        if sum(1 for a in on_current if a["outcome"] == OutcomeKind.INVALID_OUTPUT) <= 1:
            return Decision("retry", f"output failed validation; retrying with feedback: {s.reason}",
                            model=s.model, feedback=s.reason)
        decision = reroute(f"{s.model} produced invalid output twice", others(exclude=banned))
        return decision or Decision("escalate", f"no candidate produced valid output ({what})")

    if outcome in TRANSIENT:
        transient_here = sum(1 for a in on_current if a["outcome"] in TRANSIENT)
        if transient_here <= policy.same_model_retries:
            return Decision("retry", f"{what}; retrying {s.model}", model=s.model,
                            delay_s=backoff_s(policy, transient_here, rng))
        decision = reroute(f"{s.model} failing ({what})", others(exclude=banned))
        if decision:
            return decision
        return Decision("retry", f"{what}; no other candidate, retrying {s.model}", model=s.model,
                        delay_s=backoff_s(policy, transient_here, rng))

    if outcome is OutcomeKind.TIMEOUT:
        decision = reroute(f"{s.model} timed out", others(exclude=banned))
        if decision:
            return decision
        if len(on_current) <= policy.same_model_retries:
            return Decision("retry", f"{what}; no other candidate", model=s.model,
                            delay_s=backoff_s(policy, len(on_current), rng))
        return Decision("escalate", f"every candidate timed out ({what})")

    if outcome in (OutcomeKind.AUTH, OutcomeKind.QUOTA_EXHAUSTED):
        decision = reroute(f"{s.model} unusable ({what})", others(exclude=banned))
        return decision or Decision("escalate", f"no usable candidate: {what}")

    return Decision("fail", f"unhandled outcome {what}")
