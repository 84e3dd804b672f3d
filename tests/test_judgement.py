"""The decision table's judgement (README, "Outcomes and rerouting"): context errors read from the vendor's
numbers, no same-model retry on a model whose circuit just opened, and the short retry-after an interactive
job may wait out."""

from __future__ import annotations

import copy
import random
from typing import Any

import yaml

from toolbag.config import DEFAULT_CONFIG_PATH, Config, RoutePolicy, parse_config
from toolbag.providers.base import OutcomeKind as O
from toolbag.providers.reasons import ContextReport
from toolbag.routing.router import Router, context_learned
from toolbag.supervisor.decisions import Decision, Situation, decide, ruled_out


def _config() -> Config:
    """The embedded defaults plus three OpenAI-served models: two with equal declared 128k windows, one 200k."""
    data: dict[str, Any] = copy.deepcopy(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()))
    for name, window in (("eq-a", 128_000), ("eq-b", 128_000), ("wide", 200_000), ("narrow", 100_000)):
        data["models"][name] = {"provider": "openai", "model_id": f"sim-{name}", "context_window": window}
    return parse_config(data)


CONFIG = _config()
POLICY = RoutePolicy()
PLAN = ["claude-haiku", "claude-sonnet", "gpt-luna", "gemini-lite"]
EQUAL = ["eq-a", "eq-b", "wide"]


def context_reason(requested: int | None, limit: int | None) -> str:
    vendor = "openai HTTP 400 invalid_request_error:context_length_exceeded: This model's maximum context length"
    report = ContextReport(requested, limit)
    return f"{report.note()} {vendor}" if report.said_anything else vendor


def attempt(model: str, outcome: O, reason: str = "why") -> dict[str, Any]:
    return {"type": "attempt", "model": model, "outcome": outcome.value, "reason": reason}


def judge(outcome: O, model: str = "claude-haiku", *, reason: str = "why", plan: list[str] | None = None,
          history: list[dict[str, Any]] | None = None, tier: str = "standard", retry_after_s: float | None = None,
          deadline_in_s: float | None = None, policy: RoutePolicy = POLICY, **seams: Any) -> Decision:
    situation = Situation(outcome=outcome, reason=reason, model=model, tier=tier, plan=plan or PLAN,
                          history=history if history is not None else [attempt(model, outcome, reason)],
                          retry_after_s=retry_after_s, deadline_in_s=deadline_in_s)
    return decide(situation, CONFIG, policy, rng=random.Random(0), **seams)


# ------------------------------------------------------------------------------------------ context


def test_equal_declared_windows_reroute_when_the_vendor_says_the_request_fits_the_next() -> None:
    d = judge(O.CONTEXT_TOO_LONG, "eq-a", reason=context_reason(125_000, 100_000), plan=EQUAL)
    assert (d.action, d.model) == ("reroute", "eq-b")
    assert "eq-a says the request is 125000 tokens and its limit is 100000 tokens" in d.reason
    assert "configured: 128000; this job takes 100000 as its window" in d.reason


def test_a_request_no_other_window_holds_fails_at_once_with_the_numbers() -> None:
    d = judge(O.CONTEXT_TOO_LONG, "eq-a", reason=context_reason(250_000, 128_000), plan=EQUAL)
    assert d.action == "fail" and "no other candidate's window holds 250000 tokens" in d.reason


def test_every_candidate_that_holds_the_request_is_eligible_and_the_others_are_skipped() -> None:
    d = judge(O.CONTEXT_TOO_LONG, "eq-a", reason=context_reason(150_000, 128_000), plan=EQUAL)
    assert (d.action, d.model) == ("reroute", "wide"), "eq-b's 128k cannot hold 150k"


def test_a_stated_limit_alone_is_the_failing_models_window() -> None:
    d = judge(O.CONTEXT_TOO_LONG, "eq-a", reason=context_reason(None, 100_000), plan=EQUAL)
    assert (d.action, d.model) == ("reroute", "eq-b"), "a window over the stated 100k, not over the catalogue's 128k"


def test_without_numbers_the_rule_is_a_strictly_larger_declared_window() -> None:
    d = judge(O.CONTEXT_TOO_LONG, "eq-a", reason=context_reason(None, None), plan=EQUAL)
    assert (d.action, d.model) == ("reroute", "wide") and "the vendor stated no numbers" in d.reason
    d = judge(O.CONTEXT_TOO_LONG, "eq-a", reason=context_reason(None, None), plan=["eq-a", "eq-b"])
    assert d.action == "fail"


def test_what_a_vendor_said_rules_out_models_for_every_later_decision_and_spill() -> None:
    history = [attempt("eq-a", O.CONTEXT_TOO_LONG, context_reason(110_000, 100_000)), attempt("eq-b", O.TIMEOUT)]
    learned = context_learned(history, CONFIG)
    assert learned.need_tokens == 110_000 and learned.window("eq-a", CONFIG) == 100_000
    banned = ruled_out(history, CONFIG)
    assert {"eq-a", "narrow"} <= banned and not {"eq-b", "wide"} & banned
    d = judge(O.TIMEOUT, "eq-b", history=history, plan=["eq-a", "narrow", "eq-b", "wide"])
    assert (d.action, d.model) == ("reroute", "wide")
    spill = Router(CONFIG).spill_target(["eq-b", "narrow", "eq-a", "wide"], "eq-b", history, lambda m: True)
    assert spill == "wide"


def test_a_later_error_without_numbers_builds_on_what_was_said_before() -> None:
    history = [attempt("eq-a", O.CONTEXT_TOO_LONG, context_reason(None, 100_000)),
               attempt("eq-b", O.CONTEXT_TOO_LONG, context_reason(None, None))]
    assert context_learned(history, CONFIG).need_tokens == 128_001
    banned = ruled_out(history, CONFIG)
    assert banned >= {"eq-a", "eq-b", "narrow", "local-llama"} and "wide" not in banned


# ------------------------------------------------------------------------- transient, open circuit


def test_a_transient_failure_that_opened_the_circuit_reroutes_instead_of_retrying() -> None:
    circuit_open = {"claude-haiku"}
    d = judge(O.SERVER_ERROR, usable=lambda ms: [m for m in ms if m not in circuit_open])
    assert (d.action, d.model) == ("reroute", "claude-sonnet") and "circuit is open" in d.reason


def test_a_transient_failure_on_a_closed_circuit_still_retries_the_same_model() -> None:
    d = judge(O.OVERLOADED, usable=list)
    assert (d.action, d.model) == ("retry", "claude-haiku") and d.delay_s > 0


def test_an_open_circuit_with_nowhere_else_to_go_still_retries() -> None:
    d = judge(O.NETWORK, plan=["claude-haiku"], usable=lambda ms: [])
    assert (d.action, d.model) == ("retry", "claude-haiku")


# -------------------------------------------------------------------------- interactive retry-after


def test_a_candidate_with_capacity_now_takes_the_spill_over_a_short_wait() -> None:
    d = judge(O.RATE_LIMITED, tier="interactive", retry_after_s=1, has_capacity=lambda m: m == "gpt-luna")
    assert (d.action, d.model) == ("reroute", "gpt-luna") and "capacity now" in d.reason


def test_without_capacity_elsewhere_a_short_retry_after_is_waited_out_on_the_same_model() -> None:
    d = judge(O.RATE_LIMITED, tier="interactive", retry_after_s=1.5, has_capacity=lambda m: False)
    assert (d.action, d.model, d.delay_s) == ("wait", "claude-haiku", 1.5)
    assert "no other candidate has capacity now" in d.reason and "up to 2s" in d.reason


def test_a_cooling_candidate_has_no_capacity_now() -> None:
    d = judge(O.RATE_LIMITED, tier="interactive", retry_after_s=1, usable=lambda ms: [])
    assert (d.action, d.model) == ("wait", "claude-haiku")


def test_a_long_retry_after_or_a_near_deadline_spills_anyway() -> None:
    d = judge(O.RATE_LIMITED, tier="interactive", retry_after_s=5, has_capacity=lambda m: False)
    assert (d.action, d.model) == ("reroute", "claude-sonnet") and "spilling over anyway" in d.reason
    d = judge(O.RATE_LIMITED, tier="interactive", retry_after_s=1.5, deadline_in_s=1.0, has_capacity=lambda m: False)
    assert d.action == "reroute", "waiting would outlast the job's deadline"


def test_the_bound_is_the_routes_choice() -> None:
    always_spill = RoutePolicy(interactive_wait_s=0)
    d = judge(O.RATE_LIMITED, tier="interactive", retry_after_s=0.5, policy=always_spill,
              has_capacity=lambda m: False)
    assert d.action == "reroute"
    patient = RoutePolicy(interactive_wait_s=10)
    d = judge(O.RATE_LIMITED, tier="interactive", retry_after_s=8, policy=patient, has_capacity=lambda m: False)
    assert (d.action, d.delay_s) == ("wait", 8)


def test_other_tiers_wait_out_any_retry_after() -> None:
    d = judge(O.RATE_LIMITED, tier="batch", retry_after_s=30, has_capacity=lambda m: True)
    assert (d.action, d.model, d.delay_s) == ("wait", "claude-haiku", 30)
