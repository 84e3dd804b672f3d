"""An attempt's Redis work in three script calls: submit, the claim (with the first rate-limit admission try
and the ``calling`` mark), and the completion (with the rate-limit settle and the health update; a failed
attempt's ``end_attempt`` does the same). The rules
stay in one place each (Lua fragments, assembled at load time), and the folded steps keep the fence: a stale
delivery writes and takes nothing, a claim that is not admitted hands the job back as before, and a late
completion leaves the job alone but still settles its ticket and teaches health (the call was made)."""

from __future__ import annotations

import copy
import re
import time
import uuid
from importlib import resources
from typing import Any

import pytest
import redis
import yaml

from toolbag import lua
from toolbag.attempt.leases import LeaseKeeper
from toolbag.attempt.runner import AttemptRunner
from toolbag.config import DEFAULT_CONFIG_PATH, Config, parse_config
from toolbag.jobs import JobStatus
from toolbag.providers.base import AttemptFailure, ModelRequest, ModelResponse, OutcomeKind, Usage
from toolbag.ratelimit import RateLimiter
from toolbag.routing.health import HealthTracker
from toolbag.store import JobStore, NewJob
from toolbag.store.keys import Keys

QUEUE = "openai.batch"


def make_config(limits: dict[str, Any]) -> Config:
    data = copy.deepcopy(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()))
    data["models"]["gpt-luna"]["limits"] = limits
    for tier in data["tiers"].values():
        tier["ratelimit_wait_s"] = 0.2
    return parse_config(data)


class Answers:
    """An adapter that answers every call (and counts them), or fails each with ``failure``."""

    kind: Any = "openai"

    def __init__(self) -> None:
        self.calls = 0
        self.failure: AttemptFailure | None = None

    def call(self, model: str, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        if self.failure is not None:
            raise self.failure
        return ModelResponse(text="fine", model=model, usage=Usage(input_tokens=7, output_tokens=3))

    def wire_request(self, model: str, request: ModelRequest) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        return None


class Fleet:
    def __init__(self, client: redis.Redis, config: Config) -> None:
        self.keys = Keys(f"f{uuid.uuid4().hex[:6]}:")
        self.config = config
        self.store = JobStore(client, self.keys, job_ttl_s=600)
        self.limiter = RateLimiter(config, client, self.keys)
        self.health = HealthTracker(client, self.keys, config)
        self.adapter = Answers()
        self.runner = AttemptRunner(config, self.store, "openai", self.adapter, LeaseKeeper(self.store, 5), "w",
                                    admission=self.limiter, health=self.health)

    def submit(self, job_id: str) -> None:
        self.store.submit(NewJob(job_id=job_id, queue=QUEUE, deadline_s=600, caller="c", fields={
            "capability": "summarize", "tier": "batch", "input": '{"text": "hi"}', "model": "gpt-luna",
            "provider": "openai", "queue": QUEUE, "plan": '["gpt-luna"]'}))

    def rl(self, kind: str) -> str:
        return self.keys.ratelimit("gpt-luna", kind)


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def test_every_script_reads_the_clock_once_at_most_and_each_rule_has_one_copy() -> None:
    scripts = [p.name[:-4] for p in resources.files(lua.__name__).iterdir() if p.name.endswith(".lua")]
    assert "claim" in scripts and "rl_admit" in scripts
    fragments = {"rl_log", "rl_admit", "rl_reconcile", "health_learn", "call_learned"}
    for name in scripts:
        text = lua.script(name)
        assert len(re.findall(r"redis\.call\('TIME'\)", text)) <= 1, name
        for fragment in fragments:  # a fragment is defined once in what Redis runs, or not at all
            assert text.count(f"local function {fragment.replace('rl_log', 'log_add')}(") <= 1, (name, fragment)
    assert lua.uses("claim") == ["rl_log", "rl_admit"]
    assert lua.uses("complete") == lua.uses("end_attempt") == ["call_learned"]
    assert lua.script("complete").count("local function rl_reconcile(") == 1
    assert lua.script("rl_acquire").count("local function log_add(") == 1  # rl_admit's own use of rl_log


def test_a_claim_admitted_now_is_marked_calling_and_holds_its_capacity_in_one_script(client: redis.Redis) -> None:
    f = Fleet(client, make_config({"rpm": 100, "tpm": 100_000, "concurrency": 5}))
    f.submit("j1")
    started = f.runner.start("j1", "1", QUEUE)
    assert started is not None
    job = f.store.get("j1")
    assert job.status is JobStatus.RUNNING and job.called_ms == job.started_ms > 0
    assert started.record.called_ms == job.started_ms
    assert client.zcard(f.rl("cc-b")) == 1 and client.zcard(f.rl("log")) == 1
    f.runner.finish(started)
    f.runner.release(started.record, started.token)
    assert f.store.get("j1").status is JobStatus.SUCCEEDED
    # the completion settled the ticket (in-flight entry gone, the log holds what the call used) and taught health
    assert client.zcard(f.rl("cc-b")) == 0
    assert float(client.hget(f.rl("tok"), "~sum") or 0) == 10  # 7 in + 3 out, not the reservation
    assert f.health.snapshot("gpt-luna").ewma_latency_s is not None


def test_a_stale_delivery_claims_nothing_and_takes_no_capacity(client: redis.Redis) -> None:
    f = Fleet(client, make_config({"rpm": 100, "tpm": 100_000, "concurrency": 5}))
    f.submit("j1")
    assert f.runner.start("j1", "7", QUEUE) is None  # a token the job never had
    assert f.runner.start("gone", "1", QUEUE) is None  # no such job
    job = f.store.get("j1")
    assert job.status is JobStatus.QUEUED and job.started_ms == 0
    assert not client.exists(f.rl("state"), f.rl("cc-b"), f.rl("log"), f.rl("tok"))
    assert f.adapter.calls == 0


def test_a_claim_not_admitted_hands_the_job_back_as_before(client: redis.Redis) -> None:
    f = Fleet(client, make_config({"rpm": 1, "window_s": 60, "interactive_reserve": 0}))
    f.submit("j1")
    f.submit("j2")
    f.runner.run("j1", "1", QUEUE)
    assert f.store.get("j1").status is JobStatus.SUCCEEDED
    f.runner.run("j2", "1", QUEUE)  # the next slot is a minute away: no vendor call, back to the delayed set
    job = f.store.get("j2")
    assert (job.status, job.token, job.attempt, job.called_ms) == (JobStatus.WAITING, "2", 1, 0)
    assert client.zscore(f.keys.leases, "j2:1") is None
    assert client.zscore(f.keys.delayed, "j2") is not None
    assert [h["action"] for h in f.store.history("j2")] == ["throttle"]
    assert f.adapter.calls == 1
    assert f.store.claim("j2", "1", QUEUE, 5, "w") is None  # the old delivery is stale


def test_a_claim_refused_for_concurrency_waits_then_hands_back(client: redis.Redis) -> None:
    f = Fleet(client, make_config({"concurrency": 1}))
    f.submit("j1")
    f.submit("j2")
    first = f.runner.start("j1", "1", QUEUE)
    assert first is not None
    t0 = time.monotonic()
    assert f.runner.start("j2", "1", QUEUE) is None  # polled the in-flight limit for the tier's short wait
    assert time.monotonic() - t0 >= 0.15
    job = f.store.get("j2")
    assert (job.status, job.token) == (JobStatus.WAITING, "2")
    assert client.zcard(f.rl("cc-b")) == 1  # only the first attempt holds a slot
    f.runner.finish(first)
    f.runner.release(first.record, first.token)
    assert client.zcard(f.rl("cc-b")) == 0


def test_a_late_completion_leaves_the_job_but_settles_its_ticket_and_teaches_health(client: redis.Redis) -> None:
    f = Fleet(client, make_config({"rpm": 100, "tpm": 100_000, "concurrency": 5}))
    f.submit("j1")
    started = f.runner.start("j1", "1", QUEUE)
    assert started is not None
    # meanwhile the lease was swept as lost: the job went on to the supervisor
    assert f.store.end_attempt("j1", "1", "lost", '{"type": "attempt", "outcome": "lost"}').ok
    f.runner.finish(started)
    f.runner.release(started.record, started.token)
    job = f.store.get("j1")
    assert job.status is JobStatus.DECIDING and job.output is None
    assert not client.exists(f.keys.notify("j1"))
    assert [h.get("outcome") for h in f.store.history("j1")] == ["lost"]
    assert client.zcard(f.rl("cc-b")) == 0  # the slot is free again
    assert float(client.hget(f.rl("tok"), "~sum") or 0) == 10  # the call's real use, as for a current one
    assert f.health.snapshot("gpt-luna").ewma_latency_s is not None  # the model did answer


def test_a_plain_claim_takes_no_admission_and_returns_the_record(client: redis.Redis) -> None:
    f = Fleet(client, make_config({"rpm": 100, "tpm": 100_000, "concurrency": 5}))
    f.submit("j1")
    record = f.store.claim("j1", "1", QUEUE, 5, "batcher")
    assert record is not None
    assert (record.status, record.worker, record.called_ms) == (JobStatus.RUNNING, "batcher", 0)
    assert record.started_ms == f.store.get("j1").started_ms > 0
    assert not client.exists(f.rl("state"), f.rl("cc-b"), f.rl("log"))
    assert f.store.claim("j1", "1", QUEUE, 5, "batcher") is None  # fenced: a second claim is stale


def test_a_settle_clears_the_in_flight_entry_where_its_admission_put_it(client: redis.Redis) -> None:
    keys = Keys(f"s{uuid.uuid4().hex[:6]}:")
    rl = RateLimiter(make_config({"concurrency": 5}), client, keys)
    for tier in ("interactive", "batch"):
        assert rl.acquire("gpt-luna", tier, "c", 10, horizon_s=1, ticket_id=f"t-{tier}").admitted
    cc_i, cc_b = keys.ratelimit("gpt-luna", "cc-i"), keys.ratelimit("gpt-luna", "cc-b")
    assert (client.zcard(cc_i), client.zcard(cc_b)) == (1, 1)
    rl.settle("gpt-luna", "c", "t-interactive", "b", 0, held="i")
    assert (client.zcard(cc_i), client.zcard(cc_b)) == (0, 1)
    rl.settle("gpt-luna", "c", "t-batch", "b", 0, held="-")  # took none: nothing to clear
    assert client.zcard(cc_b) == 1
    rl.settle("gpt-luna", "c", "t-batch", "b", 0)  # not known: both sets are cleared of it
    assert client.zcard(cc_b) == 0


def test_a_failed_call_ends_its_attempt_settles_and_teaches_health_in_one_script(client: redis.Redis) -> None:
    f = Fleet(client, make_config({"rpm": 100, "tpm": 100_000, "concurrency": 5}))
    f.adapter.failure = AttemptFailure(OutcomeKind.RATE_LIMITED, "slow down", retry_after_s=2.0)
    f.submit("j1")
    f.runner.run("j1", "1", QUEUE)
    job = f.store.get("j1")
    assert (job.status, job.outcome) == (JobStatus.DECIDING, "rate_limited")
    assert client.zcard(f.rl("cc-b")) == 0  # the in-flight slot is free
    assert float(client.hget(f.rl("tok"), "~sum") or 0) == 0  # refused before generating: all given back
    state = {k.decode(): float(v) for k, v in client.hgetall(f.rl("state")).items()}
    assert state["cd"] > state["ws"]  # the 429 cooled the model down
    health = f.health.snapshot("gpt-luna")
    assert health.cooling_for_s > 1.0 and health.state == "closed"


def test_a_sweep_ends_a_lost_attempt_without_touching_limits_or_health(client: redis.Redis) -> None:
    f = Fleet(client, make_config({"concurrency": 5}))
    f.submit("j1")
    assert f.store.claim("j1", "1", QUEUE, 5, "w") is not None
    done = f.store.end_attempt("j1", "1", "lost", '{"type": "attempt", "outcome": "lost"}')
    assert done.ok and (done.health, done.settled) == ("", ())
    assert not client.exists(f.keys.health("gpt-luna"), f.rl("state"))
