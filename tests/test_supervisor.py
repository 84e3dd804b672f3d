"""The supervisor turns every outcome into a routed event, never a stalled job.

The decisions run on an in-process fleet (:class:`toolbag.testing.InProcessFleet`: the real store, SDKs,
simulator and supervisor, stepped by the test); a fleet of processes only where a process boundary is the
point: a worker SIGKILLed mid-attempt, a SIGTERM warm shutdown, a message lost with a killed worker.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from tests.conftest import free_port
from tests.fleet import Fleet, running_fleet
from toolbag.client import Job
from toolbag.config import DEFAULT_CONFIG_PATH, Config, parse_config
from toolbag.escalations import Inbox
from toolbag.jobs import JobResult, JobStatus
from toolbag.providers.base import Adapter, ModelRequest, ModelResponse
from toolbag.simulator.server import SimulatorServer
from toolbag.testing import InProcessFleet, short_waits

FIRST_TOKEN_TIMEOUT_S = 1.0


class Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["content-length"]))
        Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def webhook() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", free_port()), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def scenario_config(webhook_url: str = "", **extra: Any) -> Config:
    """The embedded defaults with short vendor timeouts, millisecond backoffs and two test routes
    (``ctx``: windows 400k, 200k, 1M; ``solo``: one model), plus ``extra`` top-level sections merged in."""
    data: dict[str, Any] = copy.deepcopy(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()))
    data["routes"]["ctx"] = {"standard": {"candidates": ["gpt-luna", "claude-haiku", "gemini-flash"]}}
    data["routes"]["solo"] = {"batch": {"candidates": ["gemini-lite"]}, "standard": {"candidates": ["gemini-lite"]}}
    data["fleet"].update({"lease_ttl_s": 2, "escalation_webhook_url": webhook_url or None})
    for tier in data["tiers"].values():
        tier.update({"connect_timeout_s": 2, "first_token_timeout_s": FIRST_TOKEN_TIMEOUT_S, "total_timeout_s": 10})
    for section, values in extra.items():
        data[section].update(values)
    return short_waits(parse_config(data))


@pytest.fixture(scope="module")
def shared_fleet(redis_server: str, sim: SimulatorServer, webhook: str) -> Iterator[InProcessFleet]:
    with InProcessFleet(scenario_config(webhook), redis_server, simulator=sim) as f:
        yield f


@pytest.fixture
def fleet(shared_fleet: InProcessFleet) -> Iterator[InProcessFleet]:
    """The module's fleet, as new: no jobs, no model health learned, no simulator faults."""
    shared_fleet.reset()
    yield shared_fleet
    shared_fleet.simulator.clear_faults()


def run(fleet: InProcessFleet, capability: str, text: str, **submit: Any) -> JobResult:
    job = fleet.client.submit(capability, input={"text": text}, **submit)
    fleet.run_until_idle()
    return job.result(0)


def attempts(result: JobResult) -> list[tuple[str, str]]:
    return [(a["model"], a["outcome"]) for a in result.attempts if a["type"] == "attempt"]


def decisions(result: JobResult) -> list[dict[str, Any]]:
    return [a for a in result.attempts if a["type"] == "decision"]


def test_refusal_is_rerouted_to_another_vendor(fleet: InProcessFleet) -> None:
    result = run(fleet, "summarize", "[[sim:refusal@claude-*]] hard text", tier="interactive")
    assert result.ok and result.provider != "anthropic"
    assert attempts(result) == [("claude-haiku", "refused"), ("gpt-luna", "ok")]
    [decision] = decisions(result)
    assert decision["action"] == "reroute" and "refused" in decision["reason"]


def test_all_refuse_escalates_then_a_human_resolves_for_the_waiting_caller(fleet: InProcessFleet) -> None:
    Hook.received.clear()
    job = fleet.client.submit("summarize", input={"text": "[[sim:refusal]] nobody will"}, tier="interactive")
    fleet.run_until_idle()
    first = job.result(0)
    assert first.status is JobStatus.ESCALATED
    assert attempts(first) == [("claude-haiku", "refused"), ("gpt-luna", "refused"), ("gemini-lite", "refused")]
    assert [d["action"] for d in decisions(first)] == ["reroute", "reroute", "escalate"]
    inbox = Inbox(fleet.config, fleet.store)
    assert job.id in [e.job_id for e in inbox.list()]
    got: list[JobResult] = []
    waiter = threading.Thread(target=lambda: got.append(job.result(30, until_resolved=True)))
    waiter.start()
    time.sleep(0.3)
    assert not got, "an until_resolved caller keeps waiting through the escalation"
    inbox.resolve(job.id, {"summary": "done by hand"}, by="alice")
    waiter.join(10)
    assert got and got[0].ok and got[0].output == {"summary": "done by hand"} and got[0].provider == "human"
    assert job.id not in [e.job_id for e in inbox.list()]
    deadline = time.monotonic() + 5
    while not Hook.received and time.monotonic() < deadline:
        time.sleep(0.05)
    assert Hook.received and Hook.received[0]["job_id"] == job.id and Hook.received[0]["event"] == "escalated"
    kinds = [e["kind"] for e in fleet.store.audit_tail(200) if e.get("job") == job.id]
    assert "escalated" in kinds and "resolution" in kinds and kinds.count("decision") >= 2


def test_escalated_job_retried_by_a_human_goes_back_to_the_fleet(fleet: InProcessFleet) -> None:
    job = fleet.client.submit("solo", input={"text": "[[sim:refusal@gemini-3.5*]] x"}, tier="standard")
    fleet.run_until_idle()
    assert job.result(0).status is JobStatus.ESCALATED
    inbox = Inbox(fleet.config, fleet.store)
    with pytest.raises(Exception, match="unknown model"):
        inbox.retry(job.id, "no-such-model")
    assert inbox.retry(job.id, "gpt-luna") == "gpt-luna"
    fleet.run_until_idle()
    result = job.result(0)
    assert result.ok and result.model == "gpt-luna"
    assert attempts(result) == [("gemini-lite", "refused"), ("gpt-luna", "ok")]
    rejected_job = fleet.client.submit("solo", input={"text": "[[sim:refusal]] y"}, tier="standard")
    fleet.run_until_idle()
    assert rejected_job.result(0).status is JobStatus.ESCALATED
    inbox.reject(rejected_job.id, "not our business")
    rejected = rejected_job.result(0)
    assert rejected.status is JobStatus.FAILED and "not our business" in (rejected.error or "")


def test_bad_request_fails_at_once_with_the_vendor_reason(fleet: InProcessFleet) -> None:
    result = run(fleet, "summarize", "[[sim:bad_request]] x")
    assert result.status is JobStatus.FAILED and result.error and "bad request" in result.error
    assert len(attempts(result)) == 1 and [d["action"] for d in decisions(result)] == ["fail"]


def test_context_too_long_skips_smaller_windows(fleet: InProcessFleet) -> None:
    result = run(fleet, "ctx", "[[sim:context_length@gpt-*]] long")
    assert result.ok
    assert attempts(result) == [("gpt-luna", "context_too_long"), ("gemini-flash", "ok")]


def test_rate_limited_batch_job_waits_then_runs_on_the_same_model(fleet: InProcessFleet) -> None:
    fleet.simulator.set_faults({"rules": [{"model": "gemini-3.5*", "match": "patience", "sequence": ["rate_limit:1"]}]})
    t0 = time.monotonic()
    result = run(fleet, "solo", "patience please", tier="batch")
    assert result.ok and attempts(result) == [("gemini-lite", "rate_limited"), ("gemini-lite", "ok")]
    assert time.monotonic() - t0 >= 0.9, "the job waited for retry-after in the delayed set"
    [wait] = decisions(result)
    assert wait["action"] == "wait" and wait["delay_s"] == pytest.approx(1.0)


def test_rate_limited_interactive_job_spills_to_the_next_candidate(fleet: InProcessFleet) -> None:
    result = run(fleet, "summarize", "[[sim:rate_limit:30@claude-*]] now please", tier="interactive")
    assert result.ok and attempts(result) == [("claude-haiku", "rate_limited"), ("gpt-luna", "ok")]
    [spill] = decisions(result)
    assert spill["action"] == "reroute" and "spilling over" in spill["reason"]


def test_interactive_job_spills_when_the_fleet_has_used_a_models_requests(redis_url: str,
                                                                        sim: SimulatorServer) -> None:
    models = {name: {"provider": "openai", "model_id": f"gpt-{name}", "limits": limits}
              for name, limits in (("rl-spill-a", {"rpm": 2, "window_s": 60}), ("rl-spill-b", {}))}
    config = scenario_config(models=models, routes={"rl-spill": {"interactive": {"candidates": list(models)}}})
    with InProcessFleet(config, redis_url, simulator=sim, providers=("openai",)) as fleet:
        jobs = [fleet.client.submit("rl-spill", input={"text": f"chat {i}"}, tier="interactive") for i in range(5)]
        fleet.run_until_idle()
        results = [job.result(0) for job in jobs]
    assert sorted(r.model or "" for r in results) == ["rl-spill-a"] * 2 + ["rl-spill-b"] * 3
    for r in results:
        assert len(attempts(r)) == 1
        assert [d["action"] for d in decisions(r)] == (["spill"] if r.model == "rl-spill-b" else [])


@pytest.mark.parametrize(("fault", "outcome"), [("overloaded", "overloaded"), ("server_error", "server_error"),
                                                 ("reset", "network")])
def test_a_transient_error_is_retried_on_the_same_model_once_then_rerouted(
        fleet: InProcessFleet, fault: str, outcome: str) -> None:
    result = run(fleet, "summarize", f"[[sim:{fault}@claude-*]] busy", tier="interactive")
    assert result.ok
    assert attempts(result) == [("claude-haiku", outcome), ("claude-haiku", outcome), ("gpt-luna", "ok")]
    retry, reroute = decisions(result)
    assert (retry["action"], retry["model"], reroute["action"]) == ("retry", "claude-haiku", "reroute")
    assert 0 < retry["delay_s"] <= 0.01, "short_waits caps the backoff"


class OffSchemaAdapter:
    """The real adapter, whose answers (from the simulator, which always fits the schema) are then swapped
    for one that breaks it: the simulator has no fault for an off-schema answer. Keeps every request."""

    def __init__(self, inner: Adapter) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.requests: list[ModelRequest] = []

    def call(self, model: str, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        return dataclasses.replace(self.inner.call(model, request), parsed={"summary": 42, "key_points": []})

    def wire_request(self, model: str, request: ModelRequest) -> dict[str, Any]:
        return self.inner.wire_request(model, request)

    def close(self) -> None:
        self.inner.close()


def test_invalid_output_is_retried_with_the_validation_error_then_rerouted(
        fleet: InProcessFleet, monkeypatch: pytest.MonkeyPatch) -> None:
    gemini = fleet.runners["gemini"]
    off_schema = OffSchemaAdapter(gemini.adapter)
    monkeypatch.setattr(gemini, "adapter", off_schema)
    job = fleet.client.submit(skill="summarize", input={"text": "the meeting moved to Tuesday"}, tier="standard")
    fleet.run_until_idle()
    result = job.result(0)
    assert result.ok and result.model == "claude-haiku"
    assert attempts(result) == [("gemini-flash", "invalid_output"), ("gemini-flash", "invalid_output"),
                                ("claude-haiku", "ok")]
    retry, reroute = decisions(result)
    assert (retry["action"], retry["model"], reroute["action"]) == ("retry", "gemini-flash", "reroute")
    problem = "output.summary: should be a string, got the whole number 42"
    assert retry["reason"].endswith(f"retrying with feedback: {problem}")
    first, second = (request.messages[-1].text for request in off_schema.requests)
    assert problem not in first and problem in second, "the retry tells the model what was wrong"


def test_a_hanging_vendor_is_abandoned_within_the_tier_budget(fleet: InProcessFleet) -> None:
    t0 = time.monotonic()
    result = run(fleet, "summarize", "[[sim:hang@claude-*]] silent", tier="interactive")
    elapsed = time.monotonic() - t0
    assert result.ok and attempts(result) == [("claude-haiku", "timeout"), ("gpt-luna", "ok")]
    assert elapsed < FIRST_TOKEN_TIMEOUT_S + 3, f"took {elapsed:.1f}s, budget {FIRST_TOKEN_TIMEOUT_S}s"


def test_job_deadline_expires_with_a_reason(fleet: InProcessFleet) -> None:
    result = run(fleet, "summarize", "[[sim:hang]] forever", tier="batch", deadline_s=1.0)
    assert result.status is JobStatus.EXPIRED and "deadline" in (result.error or "")


def stale_deliveries(provider: str) -> float:
    return REGISTRY.get_sample_value("toolbag_stale_deliveries_total", {"provider": provider}) or 0.0


def test_a_cancelled_running_job_drops_its_late_completion(fleet: InProcessFleet) -> None:
    job = fleet.client.submit("summarize", input={"text": "[[sim:slow_first_token:500]] slow"}, tier="batch")
    before = stale_deliveries("gemini")

    def cancel_once_running() -> None:
        deadline = time.monotonic() + 10
        while job.status() is not JobStatus.RUNNING and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fleet.client.cancel(job.id)

    canceller = threading.Thread(target=cancel_once_running)
    canceller.start()
    fleet.run_until_idle()  # the attempt runs in this thread, is cancelled from the other, then answers
    canceller.join()
    result = job.result(0)
    assert result.status is JobStatus.CANCELLED and attempts(result) == []
    assert stale_deliveries("gemini") == before + 1, "the late completion was dropped and counted"


# -- where a process boundary is the point ----------------------------------------------------------------


@pytest.fixture(scope="module")
def process_fleet(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Three gemini worker processes and a supervisor process, started together (tests take workers away)."""
    with running_fleet(redis_server, tmp_path_factory.mktemp("procs"), providers=()) as fleet:
        for n in (1, 2, 3):
            fleet.worker("gemini", name=f"worker-gemini-{n}")
        fleet.wait_workers(3)
        yield fleet


def holder(fleet: Fleet, job: Job) -> str:
    """The name of the worker process running ``job``'s attempt, once it runs."""
    deadline = time.monotonic() + 10
    while job.status() is not JobStatus.RUNNING:
        assert time.monotonic() < deadline, f"{job} never ran"
        time.sleep(0.02)
    worker = fleet.client.store.get(job.id).worker
    [name] = [n for n, p in fleet.procs.items() if n.startswith("worker") and worker.endswith(f":{p.pid}")]
    return name


def test_worker_killed_mid_attempt_is_recovered_within_two_lease_ttls(process_fleet: Fleet) -> None:
    fleet = process_fleet
    job = fleet.client.submit("classify", input={"text": "[[sim:hang:2@gemini-3.5*]] x"}, tier="standard")
    fleet.kill(holder(fleet, job), signal.SIGKILL)
    killed_at = time.monotonic()
    lease_ttl_s = fleet.config.fleet.lease_ttl_s
    while not any(h.get("outcome") == "lost" for h in fleet.client.store.history(job.id)):
        assert time.monotonic() - killed_at < 2 * lease_ttl_s, "the dead worker's attempt was not recovered"
        time.sleep(0.05)
    result = job.result(60)
    assert result.ok, result
    outcomes = [o for _, o in attempts(result)]
    assert outcomes[0] == "lost" and outcomes[-1] == "ok"


def test_sigterm_is_a_warm_shutdown_that_finishes_in_flight_attempts(process_fleet: Fleet) -> None:
    fleet = process_fleet
    job = fleet.client.submit("classify", input={"text": "[[sim:slow_first_token:1500@gemini-3.5*]] x"},
                              tier="standard")
    name = holder(fleet, job)
    worker = fleet.procs[name]
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, fleet.log(name)
    result = job.result(5)
    assert result.ok and attempts(result) == [("gemini-lite", "ok")]
    live = fleet.client.store.live_workers(60)
    assert not [m for m in live if m.endswith(f":{worker.pid}")], "a stopped worker withdraws its presence"


def test_message_popped_by_a_worker_killed_before_kombu_recorded_it_is_requeued(process_fleet: Fleet) -> None:
    """kombu's BRPOP takes the message off the list before it writes ``unacked``: a worker SIGKILLed between
    the two leaves a queued job with no message anywhere. The supervisor puts it back."""
    fleet = process_fleet
    job = fleet.client.submit("classify", input={"text": "lost in the pop"}, tier="standard",
                              candidates=("gpt-luna",))  # no openai worker yet: nobody takes it first
    store = fleet.client.store
    assert store.redis.rpop(store.keys.queue(store.get(job.id).queue)) is not None  # what the dying BRPOP took
    fleet.worker("openai")
    result = job.result(fleet.config.fleet.unclaimed_delivery_s + 20)
    assert result.ok, result
    requeues = [a for a in result.attempts if a["type"] == "decision" and a.get("action") == "requeue"]
    assert len(requeues) == 1 and "lost with a worker" in requeues[0]["reason"], result.attempts
    assert attempts(result) == [("gpt-luna", "ok")]
