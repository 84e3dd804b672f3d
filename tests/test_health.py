"""Circuit breakers and cooldowns against a real Redis."""

from __future__ import annotations

import time

import pytest
import redis

from toolbag.config import HealthConfig, load_config
from toolbag.providers.base import OutcomeKind as O
from toolbag.routing.health import HealthTracker
from toolbag.store.keys import Keys


@pytest.fixture
def health(redis_url: str) -> HealthTracker:
    config = load_config().model_copy(update={"health": HealthConfig(
        failures_to_open=2, open_s=0.2, max_open_s=1.0, auth_open_s=30, probe_lease_s=0.3)})
    return HealthTracker(redis.Redis.from_url(redis_url), Keys("h:"), config)


def test_consecutive_failures_open_then_a_single_probe_then_close(health: HealthTracker) -> None:
    route = ["claude-haiku", "gpt-luna"]
    health.record("claude-haiku", O.OVERLOADED, 0.1, None)
    assert health.choose(route) == "claude-haiku", "one failure does not open the circuit"
    health.record("claude-haiku", O.SERVER_ERROR, 0.1, None)
    assert health.snapshot("claude-haiku").state == "open"
    assert health.choose(route) == "gpt-luna", "an open circuit is skipped"
    time.sleep(0.25)
    assert health.choose(route) == "claude-haiku", "after the open time, one probe goes to the primary"
    assert health.snapshot("claude-haiku").state == "half_open"
    assert health.choose(route) == "gpt-luna", "only one probe at a time"
    health.record("claude-haiku", O.OK, 0.05, None)
    assert health.snapshot("claude-haiku").state == "closed"
    assert health.choose(route) == "claude-haiku", "traffic returns to the primary"


def test_failed_probe_reopens_for_longer(health: HealthTracker) -> None:
    for _ in range(2):
        health.record("gpt-luna", O.TIMEOUT, 1, None)
    first = health.snapshot("gpt-luna").open_for_s
    time.sleep(0.25)
    assert health.choose(["gpt-luna"]) == "gpt-luna"
    health.record("gpt-luna", O.NETWORK, 0.1, None)  # the probe fails
    snap = health.snapshot("gpt-luna")
    assert snap.state == "open" and snap.opens == 2
    assert snap.open_for_s > first, "a flapping model is backed off exponentially"


def test_probe_lease_expiry_allows_another_probe(health: HealthTracker) -> None:
    for _ in range(2):
        health.record("gpt-luna", O.OVERLOADED, 1, None)
    time.sleep(0.25)
    assert health.choose(["gpt-luna"]) == "gpt-luna"
    assert health.choose(["gpt-luna"]) is None
    time.sleep(0.35)
    assert health.choose(["gpt-luna"]) == "gpt-luna", "a probe whose job vanished does not block forever"


def test_retry_after_sets_a_cooldown_without_opening(health: HealthTracker) -> None:
    health.record("gemini-flash", O.RATE_LIMITED, 0.01, 0.3)
    snap = health.snapshot("gemini-flash")
    assert snap.state == "closed" and 0 < snap.cooling_for_s <= 0.3
    assert health.choose(["gemini-flash", "gpt-luna"]) == "gpt-luna"
    time.sleep(0.35)
    assert health.choose(["gemini-flash", "gpt-luna"]) == "gemini-flash"


def test_auth_opens_for_long_and_refusals_and_lost_workers_do_not_open(health: HealthTracker) -> None:
    for _ in range(5):
        health.record("claude-sonnet", O.REFUSED, 0.1, None)
        health.record("claude-sonnet", O.LOST, 0.1, None)
    snap = health.snapshot("claude-sonnet")
    assert snap.state == "closed" and snap.ewma_refusal > 0.5
    health.record("claude-sonnet", O.AUTH, 0.1, None)
    assert health.snapshot("claude-sonnet").open_for_s > 20


def test_ewma_latency_orders_candidates(health: HealthTracker) -> None:
    for _ in range(5):
        health.record("claude-haiku", O.OK, 0.9, None)
        health.record("gpt-luna", O.OK, 0.1, None)
    assert health.by_latency(["claude-haiku", "gemini-lite", "gpt-luna"]) == ["gpt-luna", "claude-haiku",
                                                                              "gemini-lite"]
