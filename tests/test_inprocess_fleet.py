"""toolbag.testing.InProcessFleet: a fleet stepped by the test, on the real store, SDKs, simulator and supervisor."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from toolbag.client import Client, Job
from toolbag.config import Config, ConfigError, load_config
from toolbag.jobs import JobResult, JobStatus
from toolbag.simulator.server import SimulatorServer
from toolbag.testing import FleetNotIdle, InProcessFleet, short_waits

CONFIG = short_waits(load_config())
MODEL_OF_PROVIDER = {"anthropic": "claude-haiku", "openai": "gpt-luna", "gemini": "gemini-lite"}


@pytest.fixture(scope="module")
def shared_fleet(redis_server: str, sim: SimulatorServer) -> Iterator[InProcessFleet]:
    with InProcessFleet(CONFIG, redis_server, simulator=sim) as f:
        yield f


@pytest.fixture
def fleet(shared_fleet: InProcessFleet) -> Iterator[InProcessFleet]:
    shared_fleet.reset()
    yield shared_fleet
    shared_fleet.simulator.clear_faults()


def attempts(result: JobResult) -> list[tuple[str, str]]:
    return [(a["model"], a["outcome"]) for a in result.attempts if a["type"] == "attempt"]


def actions(result: JobResult) -> list[str]:
    return [a["action"] for a in result.attempts if a["type"] == "decision"]


@pytest.mark.parametrize("provider", sorted(MODEL_OF_PROVIDER))
def test_a_job_runs_through_the_vendor_sdk_against_the_simulator(fleet: InProcessFleet, provider: str) -> None:
    model = MODEL_OF_PROVIDER[provider]
    job = fleet.client.submit("summarize", input={"text": "hello"}, candidates=(model,))
    assert fleet.run_until_idle() == 1
    result = job.result(0)
    assert result.ok and (result.provider, result.model) == (provider, model)
    model_id = fleet.config.models[model].model_id
    assert [e["model"] for e in fleet.simulator.log(last=1)] == [model_id]


def test_a_step_runs_the_messages_queued_before_it(fleet: InProcessFleet) -> None:
    job = fleet.client.submit("summarize", input={"text": "[[sim:refusal@claude-*]] x"}, tier="interactive")
    assert fleet.step() == 1 and job.status() is JobStatus.DECIDING  # the attempt; its decision waits
    assert fleet.step() == 1 and job.status() is JobStatus.QUEUED  # the decision: rerouted
    assert fleet.step() == 1 and job.status() is JobStatus.SUCCEEDED
    assert fleet.step() == 0 and fleet.in_flight().idle


def test_stale_and_duplicate_messages_are_dropped_as_a_worker_drops_them(fleet: InProcessFleet) -> None:
    job = fleet.client.submit("summarize", input={"text": "[[sim:refusal@claude-*]] x"}, tier="interactive")
    keys = fleet.store.keys
    attempt_list = keys.queue("anthropic.interactive")
    fleet.store.redis.lpush(attempt_list, fleet.store.redis.lindex(attempt_list, 0))  # delivered twice
    assert fleet.step() == 2
    fleet.store.redis.lpush(keys.supervisor_queue, fleet.store.redis.lindex(keys.supervisor_queue, 0))
    assert fleet.run_until_idle() == 3
    result = job.result(0)
    assert attempts(result) == [("claude-haiku", "refused"), ("gpt-luna", "ok")] and actions(result) == ["reroute"]


def test_run_until_idle_waits_out_a_backoff_in_the_delayed_set(fleet: InProcessFleet) -> None:
    fleet.simulator.set_faults({"rules": [{"model": "claude-*", "match": "blip", "sequence": ["server_error", "ok"]}]})
    job = fleet.client.submit("summarize", input={"text": "blip"}, tier="interactive")
    fleet.run_until_idle()
    result = job.result(0)
    assert attempts(result) == [("claude-haiku", "server_error"), ("claude-haiku", "ok")]
    retry = [a for a in result.attempts if a["type"] == "decision"][0]
    assert retry["action"] == "retry" and 0 < retry["delay_s"] <= 0.01


def test_reset_forgets_jobs_in_flight_and_what_the_fleet_learned(fleet: InProcessFleet) -> None:
    for _ in range(fleet.config.health.failures_to_open):
        fleet.client.submit("summarize", input={"text": "[[sim:server_error@claude-*]] x"}, tier="interactive")
    fleet.run_until_idle()
    assert fleet.client.health.snapshot("claude-haiku").state == "open"
    fleet.client.submit("summarize", input={"text": "x"}, tier="interactive")
    fleet.reset()
    assert fleet.in_flight().idle and fleet.client.health.snapshot("claude-haiku").state == "closed"
    assert fleet.store.redis.exists(fleet.store.keys.policy), "the live tool policy stays"


def test_run_until_idle_names_the_queue_no_runner_consumes(redis_url: str, sim: SimulatorServer) -> None:
    with InProcessFleet(CONFIG, redis_url, providers=("openai",), simulator=sim) as fleet:
        job = fleet.client.submit("summarize", input={"text": "x"}, tier="interactive")
        with pytest.raises(FleetNotIdle, match=r"anthropic\.interactive.*runners: openai"):
            fleet.run_until_idle()
        assert job.status() is JobStatus.QUEUED


def test_run_until_idle_gives_up_after_max_steps(fleet: InProcessFleet) -> None:
    fleet.client.submit("summarize", input={"text": "[[sim:refusal@claude-*]] x"}, tier="interactive")
    with pytest.raises(FleetNotIdle, match="after 1 steps; in flight: .* 1 deciding"):
        fleet.run_until_idle(max_steps=1)


def test_run_producer_steps_the_fleet_while_producer_code_waits(fleet: InProcessFleet) -> None:
    def summaries(client: Client, texts: list[str]) -> list[str]:
        jobs = client.submit_many([{"capability": "summarize", "input": {"text": t}} for t in texts])
        return [str(r.model) for r in client.results(jobs, timeout_s=30)]

    assert fleet.run_producer(summaries, fleet.client, ["[[sim:refusal@gemini-3.8*]] a", "b"]) == [
        "claude-haiku", "gemini-flash"]
    with pytest.raises(ZeroDivisionError):
        fleet.run_producer(lambda: 1 / 0)


def test_fleets_on_one_database_share_nothing_and_clean_up(redis_url: str, sim: SimulatorServer) -> None:
    with InProcessFleet(CONFIG, redis_url, simulator=sim) as first, \
            InProcessFleet(CONFIG, redis_url, simulator=sim) as second:
        job: Job = first.client.submit("summarize", input={"text": "x"})
        assert second.in_flight().idle and not first.in_flight().idle
        assert second.run_until_idle() == 0 and job.status() is JobStatus.QUEUED
        first.run_until_idle()
        prefix = first.config.fleet.key_prefix
    assert not list(redis.Redis.from_url(redis_url).scan_iter(match=f"{prefix}*"))


def test_a_config_and_environment_never_reach_a_real_vendor(redis_url: str, sim: SimulatorServer,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-real-looking")
    real: Config = CONFIG.model_copy(update={"dev": False})
    with InProcessFleet(real, redis_url, simulator=sim) as fleet:
        job = fleet.client.submit("summarize", input={"text": "x"}, tier="interactive")
        fleet.run_until_idle()
        assert job.result(0).provider == "anthropic" and fleet.simulator.log(last=1)[0]["vendor"] == "anthropic"


def test_a_fleet_that_cannot_start_leaves_nothing_running(redis_url: str) -> None:
    before = set(threading.enumerate())
    with pytest.raises(ConfigError, match="unknown provider 'nope'"):
        InProcessFleet(CONFIG, redis_url, providers=("gemini", "nope"))
    assert not [t.name for t in set(threading.enumerate()) - before if t.name.startswith("toolbag-simulator")]
    assert not redis.Redis.from_url(redis_url).keys("tbtest-*")


def test_the_docstring_example_runs_as_written(redis_url: str) -> None:
    doc = InProcessFleet.__doc__ or ""
    example = textwrap.dedent(doc.split("Example::", 1)[1].split("\n\n")[1])
    namespace: dict[str, Any] = {"InProcessFleet": InProcessFleet, "short_waits": short_waits,
                                 "load_config": load_config}
    exec(example.replace("redis://127.0.0.1:6379/15", redis_url), namespace)  # noqa: S102 - our own docstring


def test_it_runs_without_celery_or_the_workers_package(redis_url: str) -> None:
    script = textwrap.dedent(f"""
        import sys
        from toolbag.config import load_config
        from toolbag.testing import InProcessFleet
        with InProcessFleet(load_config(), {redis_url!r}, providers=("gemini",)) as fleet:
            job = fleet.client.submit("classify", input={{"text": "x"}})
            fleet.run_until_idle()
            assert job.result(0).ok
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("celery", "kombu", "workers"))
        assert not loaded, loaded
    """)
    env = {k: v for k, v in os.environ.items() if k != "TOOLBAG_SIMULATOR_URL"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
