"""The supervisor's decision table (the README's "Outcomes and rerouting") as a pure function."""

from __future__ import annotations

import random
from typing import Any

import pytest

from toolbag.config import RoutePolicy, load_config
from toolbag.providers.base import OutcomeKind as O
from toolbag.supervisor.decisions import Situation, decide, ruled_out

CONFIG = load_config()
POLICY = RoutePolicy()
PLAN = ["claude-haiku", "claude-sonnet", "gpt-luna", "gemini-lite"]


def attempt(model: str, outcome: O) -> dict[str, Any]:
    return {"type": "attempt", "model": model, "outcome": outcome.value}


def situation(outcome: O, model: str = "claude-haiku", history: list[dict[str, Any]] | None = None,
              tier: str = "standard", plan: list[str] | None = None, retry_after_s: float | None = None) -> Situation:
    return Situation(outcome=outcome, reason="why", model=model, tier=tier, plan=plan or PLAN,
                     history=history if history is not None else [attempt(model, outcome)],
                     retry_after_s=retry_after_s)


def test_refusal_reroutes_to_another_vendor_first() -> None:
    d = decide(situation(O.REFUSED), CONFIG, POLICY)
    assert d.action == "reroute" and d.model == "gpt-luna", "claude-sonnet is the same vendor: tried later"


def test_refused_models_are_never_retried_and_all_refusing_escalates() -> None:
    history = [attempt(m, O.REFUSED) for m in PLAN]
    d = decide(situation(O.REFUSED, model="gemini-lite", history=history), CONFIG, POLICY)
    assert d.action == "escalate" and "every candidate refused" in d.reason
    history = [attempt("claude-haiku", O.REFUSED), attempt("gpt-luna", O.OVERLOADED)]
    d = decide(situation(O.OVERLOADED, model="gpt-luna", history=history), CONFIG, POLICY, rng=random.Random(1))
    assert d.action == "retry" and d.model == "gpt-luna"


def test_bad_request_fails_at_once() -> None:
    d = decide(situation(O.BAD_REQUEST), CONFIG, POLICY)
    assert d.action == "fail" and "why" in d.reason


def test_context_too_long_skips_smaller_windows() -> None:
    plan = ["gpt-luna", "claude-haiku", "gemini-flash"]  # 400k, 200k, 1M
    d = decide(situation(O.CONTEXT_TOO_LONG, model="gpt-luna", plan=plan), CONFIG, POLICY)
    assert d.action == "reroute" and d.model == "gemini-flash"
    d = decide(situation(O.CONTEXT_TOO_LONG, model="gemini-flash", plan=plan), CONFIG, POLICY)
    assert d.action == "fail"


def test_a_window_once_exceeded_rules_out_smaller_ones_for_every_later_reroute() -> None:
    plan = ["gpt-luna", "claude-haiku", "gemini-flash", "claude-sonnet"]  # 400k, 200k, 1M, 1M
    history = [attempt("gpt-luna", O.CONTEXT_TOO_LONG), attempt("gemini-flash", O.TIMEOUT)]
    d = decide(situation(O.TIMEOUT, model="gemini-flash", history=history, plan=plan), CONFIG, POLICY)
    assert d.action == "reroute" and d.model == "claude-sonnet", "claude-haiku's 200k window is known too small"
    assert ruled_out(history, CONFIG) >= {"gpt-luna", "claude-haiku"}
    assert not ruled_out(history, CONFIG) & {"gemini-flash", "claude-sonnet"}


def test_rate_limited_waits_on_batch_and_spills_on_interactive() -> None:
    d = decide(situation(O.RATE_LIMITED, retry_after_s=7), CONFIG, POLICY)
    assert (d.action, d.model, d.delay_s) == ("wait", "claude-haiku", 7)
    d = decide(situation(O.RATE_LIMITED, tier="interactive", retry_after_s=7), CONFIG, POLICY)
    assert d.action == "reroute" and d.model == "claude-sonnet"


@pytest.mark.parametrize("outcome", [O.OVERLOADED, O.SERVER_ERROR, O.NETWORK, O.LOST])
def test_transient_retries_same_model_once_then_reroutes(outcome: O) -> None:
    d = decide(situation(outcome), CONFIG, POLICY, rng=random.Random(0))
    assert d.action == "retry" and d.model == "claude-haiku" and 0 < d.delay_s <= POLICY.backoff_max_s
    history = [attempt("claude-haiku", outcome), attempt("claude-haiku", outcome)]
    d = decide(situation(outcome, history=history), CONFIG, POLICY)
    assert d.action == "reroute" and d.model == "claude-sonnet"


def test_invalid_output_retries_with_feedback_then_reroutes() -> None:
    d = decide(situation(O.INVALID_OUTPUT), CONFIG, POLICY)
    assert d.action == "retry" and d.feedback == "why"
    history = [attempt("claude-haiku", O.INVALID_OUTPUT)] * 2
    d = decide(situation(O.INVALID_OUTPUT, history=history), CONFIG, POLICY)
    assert d.action == "reroute"


def test_timeout_and_auth_reroute_and_limits_escalate() -> None:
    assert decide(situation(O.TIMEOUT), CONFIG, POLICY).action == "reroute"
    assert decide(situation(O.AUTH), CONFIG, POLICY).action == "reroute"
    history = [attempt("claude-haiku", O.TIMEOUT)] * POLICY.max_attempts
    d = decide(situation(O.TIMEOUT, history=history), CONFIG, POLICY)
    assert d.action == "escalate" and "gave up" in d.reason
    history = [attempt("claude-haiku", O.TIMEOUT)] + [{"type": "decision", "action": "reroute"}] * 4
    d = decide(situation(O.TIMEOUT, history=history), CONFIG, POLICY)
    assert d.action == "escalate" and "reroute limit" in d.reason


def test_health_filter_is_respected() -> None:
    d = decide(situation(O.REFUSED), CONFIG, POLICY, usable=lambda ms: [m for m in ms if m != "gpt-luna"])
    assert d.model == "gemini-lite"


def test_a_continued_stream_prefers_a_model_that_takes_a_prefill() -> None:
    from dataclasses import replace

    plan = ["gpt-luna", "gemini-lite", "claude-sonnet"]
    timed_out = situation(O.TIMEOUT, model="gpt-luna", plan=plan)
    assert decide(timed_out, CONFIG, POLICY).model == "gemini-lite"  # route order
    assert decide(replace(timed_out, continuing=True), CONFIG, POLICY).model == "claude-sonnet"
    refused = replace(situation(O.REFUSED, plan=PLAN), continuing=True)
    assert decide(refused, CONFIG, POLICY).model == "gpt-luna", "another vendor still comes first after a refusal"
