"""At-least-once has a price: a lost attempt whose vendor call had begun may have been billed, and the next
attempt pays again. The fleet records when each attempt's call began, counts such losses apart
(``toolbag_attempts_lost_after_call_total``), and never calls for an attempt that is no longer current."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY

from toolbag.attempt.context import AttemptContext, Unlimited
from toolbag.attempt.leases import LeaseKeeper
from toolbag.attempt.runner import AttemptRunner
from toolbag.config import Config, load_config
from toolbag.jobs import JobStatus
from toolbag.providers.base import AttemptFailure, ModelRequest, ModelResponse, OutcomeKind
from toolbag.store import JobStore, NewJob
from toolbag.store.keys import Keys
from toolbag.supervisor.sweeps import Sweeper

QUEUE = "openai.standard"


@pytest.fixture
def store(redis_url: str) -> JobStore:
    return JobStore(redis.Redis.from_url(redis_url), Keys("paid:"), job_ttl_s=600)


@pytest.fixture
def config() -> Config:
    return load_config()


def submit(store: JobStore, job_id: str) -> None:
    store.submit(NewJob(job_id=job_id, queue=QUEUE, deadline_s=600, caller="c", fields={
        "capability": "summarize", "tier": "standard", "input": '{"text": "hi"}', "model": "gpt-luna",
        "provider": "openai", "queue": QUEUE, "plan": '["gpt-luna"]'}))


def lost_after_call() -> float:
    labels = {"provider": "openai", "model": "gpt-luna", "tier": "standard"}
    return REGISTRY.get_sample_value("toolbag_attempts_lost_after_call_total", labels) or 0.0


def test_the_call_is_recorded_for_the_current_attempt_only(store: JobStore) -> None:
    submit(store, "j1")
    assert store.claim("j1", "1", QUEUE, 60, "w") is not None
    assert store.get("j1").called_ms == 0
    assert store.calling("j1", "1") and store.get("j1").called_ms > 0
    assert not store.calling("j1", "2")  # another attempt's token
    store.end_attempt("j1", "1", "server_error", "{}")
    assert not store.calling("j1", "1")  # the attempt ended
    store.dispatch("j1", "1", model="gpt-luna", provider="openai", queue=QUEUE, record_json="{}")
    assert store.claim("j1", "2", QUEUE, 60, "w") is not None
    assert store.get("j1").called_ms == 0, "a new attempt starts without a call"
    store.finish("j1", JobStatus.CANCELLED, "by caller", "{}")
    assert not store.calling("j1", "2")


def test_a_lease_lost_after_the_call_began_is_counted_apart(store: JobStore, config: Config) -> None:
    for job_id in ("called", "not-called"):
        submit(store, job_id)
        assert store.claim(job_id, "1", QUEUE, 0.05, "w") is not None
    assert store.calling("called", "1")
    before = lost_after_call()
    time.sleep(0.1)
    assert Sweeper(config, store).expire_leases() == 2
    assert lost_after_call() == before + 1
    reasons = {job_id: store.history(job_id)[-1]["reason"] for job_id in ("called", "not-called")}
    assert "after its vendor call began (the vendor may have billed it)" in reasons["called"]
    assert "vendor" not in reasons["not-called"]


class CancelsBeforeTheCall(Unlimited):
    """Admission during which the caller cancels the job (or the sweeper declares the attempt lost)."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def admit(self, ctx: AttemptContext, request: ModelRequest) -> Any:
        self.store.finish(ctx.job_id, JobStatus.CANCELLED, "by caller", "{}")
        return super().admit(ctx, request)


class CountingAdapter:
    kind = "openai"

    def __init__(self) -> None:
        self.calls = 0

    def call(self, model: str, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        raise AttemptFailure(OutcomeKind.SERVER_ERROR, "called")

    def wire_request(self, model: str, request: ModelRequest) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        return None


def test_an_attempt_no_longer_current_never_calls_its_vendor(store: JobStore, config: Config) -> None:
    submit(store, "j1")
    adapter = CountingAdapter()
    runner = AttemptRunner(config, store, "openai", adapter, LeaseKeeper(store, 5), "w",
                           admission=CancelsBeforeTheCall(store))
    runner.run("j1", "1", QUEUE)
    assert adapter.calls == 0
    assert store.get("j1").status is JobStatus.CANCELLED and store.get("j1").called_ms == 0
