"""Circuit breakers that forgive a recovered model: bounded open times that healthy time undoes, a successful
probe that closes at once, and no penalty inherited from an outage long past (against a real Redis)."""

from __future__ import annotations

import pytest
import redis

from toolbag.config import HealthConfig, load_config
from toolbag.providers.base import OutcomeKind as O
from toolbag.routing.health import HealthTracker
from toolbag.store.keys import Keys

OPEN_S = 0.2
MAX_OPEN_S = 1.6  # three doublings of OPEN_S
MODEL = "gpt-luna"
ROUTE = [MODEL, "claude-haiku"]


@pytest.fixture
def health(redis_url: str) -> HealthTracker:
    config = load_config().model_copy(update={"health": HealthConfig(
        failures_to_open=2, open_s=OPEN_S, max_open_s=MAX_OPEN_S, auth_open_s=30, probe_lease_s=30)})
    return HealthTracker(redis.Redis.from_url(redis_url), Keys("b:"), config)


def open_circuit(health: HealthTracker) -> float:
    for _ in range(2):
        health.record(MODEL, O.SERVER_ERROR, 0.1, None)
    return health.snapshot(MODEL).open_for_s


def open_time_is_over(health: HealthTracker) -> None:
    """As if the open time had passed: the next ``choose`` grants the probe."""
    health.redis.hset(health.keys.health(MODEL), "open_until_ms", 0)


def healthy_for(health: HealthTracker, seconds: float) -> None:
    """As if the circuit had closed ``seconds`` ago (by Redis's clock)."""
    now_s, now_us = health.redis.time()
    health.redis.hset(health.keys.health(MODEL), "closed_ms", int(now_s * 1000 + now_us // 1000 - seconds * 1000))


def failed_probe(health: HealthTracker) -> float:
    open_time_is_over(health)
    assert health.choose(ROUTE) == MODEL
    health.record(MODEL, O.TIMEOUT, 1.0, None)
    return health.snapshot(MODEL).open_for_s


def test_failed_probes_double_the_open_time_up_to_the_bound(health: HealthTracker) -> None:
    times = [open_circuit(health)] + [failed_probe(health) for _ in range(5)]
    assert times[0] <= OPEN_S
    assert OPEN_S < times[1] <= 2 * OPEN_S < times[2] <= 4 * OPEN_S < times[3] <= MAX_OPEN_S
    assert all(t <= MAX_OPEN_S for t in times[3:]) and health.snapshot(MODEL).doublings == 3, "bounded growth"


def test_a_successful_probe_closes_the_circuit_and_brings_traffic_back_at_once(health: HealthTracker) -> None:
    open_circuit(health)
    open_time_is_over(health)
    assert health.choose(ROUTE) == MODEL
    assert health.choose(ROUTE) == "claude-haiku", "one probe at a time"
    health.record(MODEL, O.OK, 0.05, None)
    assert health.snapshot(MODEL).state == "closed"
    assert health.usable(ROUTE) == ROUTE, "the primary takes every job again"


def test_healthy_time_undoes_doublings(health: HealthTracker) -> None:
    open_circuit(health)
    for _ in range(3):
        failed_probe(health)
    open_time_is_over(health)
    assert health.choose(ROUTE) == MODEL
    health.record(MODEL, O.OK, 0.05, None)
    healthy_for(health, 2.2 * OPEN_S)  # two base open times: two of the three doublings undone
    assert OPEN_S < open_circuit(health) <= 2 * OPEN_S


def test_a_blip_right_after_recovery_is_still_backed_off(health: HealthTracker) -> None:
    open_circuit(health)
    failed_probe(health)
    open_time_is_over(health)
    assert health.choose(ROUTE) == MODEL
    health.record(MODEL, O.OK, 0.05, None)
    healthy_for(health, 0)
    assert 2 * OPEN_S < open_circuit(health) <= 4 * OPEN_S, "a model that flaps at once is not hammered"


def test_an_old_penalty_is_not_inherited(health: HealthTracker) -> None:
    key = health.keys.health(MODEL)
    health.redis.hset(key, mapping={"state": "closed", "opens": 40, "doublings": 3, "closed_ms": 1})
    assert open_circuit(health) <= OPEN_S, "recovered a long time ago: the base open time"
    health.redis.delete(key)
    health.redis.hset(key, mapping={"state": "open", "open_until_ms": 1, "opens": 40, "doublings": 3})
    assert health.choose(ROUTE) == MODEL, "an open time long over grants the probe"
    health.record(MODEL, O.OK, 0.05, None)
    assert open_circuit(health) <= OPEN_S, "healthy since that open time ended"


def test_calls_made_before_the_circuit_opened_do_not_extend_it(health: HealthTracker) -> None:
    open_circuit(health)
    before = health.redis.hgetall(health.keys.health(MODEL))
    for _ in range(4):
        health.record(MODEL, O.OVERLOADED, 0.1, None)
    after = health.redis.hgetall(health.keys.health(MODEL))
    assert after[b"open_until_ms"] == before[b"open_until_ms"] and after[b"opens"] == b"1"


@pytest.mark.parametrize("outcome", [O.RATE_LIMITED, O.BAD_REQUEST, O.CONTEXT_TOO_LONG])
def test_a_probe_answered_without_news_of_health_frees_the_next_probe(health: HealthTracker,
                                                                      outcome: O) -> None:
    open_circuit(health)
    open_time_is_over(health)
    assert health.choose(ROUTE) == MODEL
    health.record(MODEL, outcome, 0.05, 0.0 if outcome is O.RATE_LIMITED else None)
    assert health.snapshot(MODEL).state == "half_open"
    assert health.choose(ROUTE) == MODEL, "no wait for the first probe's lease"
