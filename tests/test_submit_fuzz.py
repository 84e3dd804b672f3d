"""Property: whatever a caller passes, ``Client.submit`` returns a Job or raises ``SubmitError``, never another
exception, and a refusal writes nothing to Redis but its count in the fleet-wide counters."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolbag.client import Client, Job
from toolbag.config import TIERS, load_config
from toolbag.jobs import SubmitError

SURROGATES = st.sampled_from(["\ud800", "x\udfff", "\udc80y"])
TEXT = st.text(max_size=12) | SURROGATES | st.text(min_size=250, max_size=300)
NUMBERS = (st.floats() | st.integers() | st.sampled_from([10**400, -(10**400), 1e-6, 1e308, True]))
ODD = st.integers() | st.lists(st.text(max_size=4), max_size=2) | st.binary(max_size=4) | st.floats()


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


JSONISH = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT | st.integers(), children, max_size=3),
    max_leaves=12,
)
INPUTS = (
    st.fixed_dictionaries({"text": TEXT})
    | JSONISH
    | st.integers(90, 6000).map(nested)
    | st.sets(st.integers(), max_size=2)
    | st.binary(max_size=4)
    | st.sampled_from([{"x": 10**5000}, {"text": "x" * 1_000_001}])
)
SUBMISSIONS = st.fixed_dictionaries({
    "capability": st.none() | st.sampled_from(["summarize", "classify", "extract"]) | TEXT | ODD,
    "input": INPUTS,
    "skill": st.none() | st.none() | st.sampled_from(["summarize", "classify", "title"]) | TEXT | ODD,
    "tier": st.none() | st.sampled_from(TIERS) | TEXT | ODD,
    "caller": st.just("anonymous") | st.from_regex(r"[A-Za-z0-9._@/+-]{1,20}", fullmatch=True) | TEXT | ODD
    | st.none(),
    "idempotency_key": st.none() | TEXT | ODD,
    "deadline_s": st.none() | NUMBERS | TEXT | st.decimals(allow_nan=True),
    "candidates": st.none() | st.lists(st.sampled_from(["gpt-luna", "claude-haiku"]) | TEXT | st.integers(),
                                       max_size=3) | ODD,
})


@pytest.fixture
def client(redis_url: str) -> Client:
    return Client(load_config(), redis_url)


def written(client: Client) -> dict[bytes, Any]:
    """Everything in the database but the fleet-wide refusal counts."""
    r: redis.Redis = client.store.redis
    stats = client.store.keys.stats.encode()
    out: dict[bytes, Any] = {key: r.dump(key) for key in r.keys("*") if key != stats}
    out[stats] = {k: v for k, v in r.hgetall(stats).items() if not k.startswith(b"rejected|")}
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                      HealthCheck.too_slow])
@given(submission=SUBMISSIONS)
def test_submit_answers_a_job_or_a_submit_error_and_a_refusal_writes_nothing(
    client: Client, submission: dict[str, Any]
) -> None:
    before = written(client)
    arguments = dict(submission)
    capability = arguments.pop("capability")
    try:
        job = client.submit(capability, **arguments)
    except SubmitError as err:
        assert "\n" not in str(err)
        assert written(client) == before, f"refused ({err}) but wrote to Redis"
    else:
        assert isinstance(job, Job)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(SUBMISSIONS | st.dictionaries(TEXT, st.integers(), max_size=2) | ODD, min_size=1, max_size=3))
def test_submit_many_answers_jobs_or_a_submit_error_and_a_refusal_writes_nothing(
    client: Client, items: list[Any]
) -> None:
    before = written(client)
    try:
        jobs = client.submit_many(items)
    except SubmitError as err:
        assert "\n" not in str(err)
        assert written(client) == before, f"refused ({err}) but wrote to Redis"
    else:
        assert len(jobs) == len(items) and all(isinstance(job, Job) for job in jobs)
