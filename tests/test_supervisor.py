"""The supervisor in a real fleet: every outcome becomes a routed event, never a stalled job."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import free_port
from tests.fleet import Fleet, running_fleet
from toolbag.config import DEFAULT_CONFIG_PATH
from toolbag.escalations import Inbox
from toolbag.jobs import JobStatus


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


@pytest.fixture(scope="module")
def fleet(redis_server: str, tmp_path_factory: pytest.TempPathFactory, webhook: str) -> Iterator[Fleet]:
    routes = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())["routes"]
    routes["ctx"] = {"standard": {"candidates": ["gpt-luna", "claude-haiku", "gemini-flash"]}}
    routes["solo"] = {"batch": {"candidates": ["gemini-lite"]}, "standard": {"candidates": ["gemini-lite"]}}
    fleet_cfg = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())["fleet"]
    fleet_cfg.update({"lease_ttl_s": 2, "key_prefix": "sv:", "escalation_webhook_url": webhook})
    with running_fleet(f"{redis_server}/29", tmp_path_factory.mktemp("sup"),
                       providers=("anthropic", "openai", "gemini"),
                       config_overrides={"routes": routes, "fleet": fleet_cfg}) as f:
        yield f


def attempts(result: Any) -> list[tuple[str, str]]:
    return [(a["model"], a["outcome"]) for a in result.attempts if a["type"] == "attempt"]


def test_refusal_is_rerouted_to_another_vendor(fleet: Fleet) -> None:
    job = fleet.client.submit("summarize", input={"text": "[[sim:refusal@claude-*]] hard text"}, tier="interactive")
    result = job.result(30)
    assert result.ok and result.provider != "anthropic"
    assert attempts(result) == [("claude-haiku", "refused"), ("gpt-luna", "ok")]
    decision = [a for a in result.attempts if a["type"] == "decision"][0]
    assert decision["action"] == "reroute" and "refused" in decision["reason"]


def test_all_refuse_escalates_then_a_human_resolves_for_the_waiting_caller(fleet: Fleet) -> None:
    Hook.received.clear()
    job = fleet.client.submit("summarize", input={"text": "[[sim:refusal]] nobody will"}, tier="interactive")
    first = job.result(30)
    assert first.status is JobStatus.ESCALATED
    assert {m for m, o in attempts(first)} == {"claude-haiku", "gpt-luna", "gemini-lite"}
    assert all(o == "refused" for _, o in attempts(first))
    inbox = Inbox(fleet.config, fleet.client.store)
    assert job.id in [e.job_id for e in inbox.list()]
    got: list[Any] = []
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
    kinds = [e["kind"] for e in fleet.client.store.audit_tail(200) if e.get("job") == job.id]
    assert "escalated" in kinds and "resolution" in kinds and kinds.count("decision") >= 2


def test_escalated_job_retried_by_a_human_goes_back_to_the_fleet(fleet: Fleet) -> None:
    job = fleet.client.submit("solo", input={"text": "[[sim:refusal@gemini-3.5*]] x"}, tier="standard")
    assert job.result(30).status is JobStatus.ESCALATED
    inbox = Inbox(fleet.config, fleet.client.store)
    with pytest.raises(Exception, match="unknown model"):
        inbox.retry(job.id, "no-such-model")
    assert inbox.retry(job.id, "gpt-luna") == "gpt-luna"
    result = job.result(30)
    assert result.ok and result.model == "gpt-luna"
    inbox2 = fleet.client.submit("solo", input={"text": "[[sim:refusal]] y"}, tier="standard")
    assert inbox2.result(30).status is JobStatus.ESCALATED
    inbox.reject(inbox2.id, "not our business")
    rejected = inbox2.result(5)
    assert rejected.status is JobStatus.FAILED and "not our business" in (rejected.error or "")


def test_bad_request_fails_at_once_with_the_vendor_reason(fleet: Fleet) -> None:
    result = fleet.client.submit("summarize", input={"text": "[[sim:bad_request]] x"}).result(30)
    assert result.status is JobStatus.FAILED and result.error and "bad request" in result.error
    assert len(attempts(result)) == 1


def test_context_too_long_skips_smaller_windows(fleet: Fleet) -> None:
    result = fleet.client.submit("ctx", input={"text": "[[sim:context_length@gpt-*]] long"}).result(30)
    assert result.ok
    assert attempts(result) == [("gpt-luna", "context_too_long"), ("gemini-flash", "ok")]


def test_rate_limited_batch_job_waits_then_runs_on_the_same_model(fleet: Fleet) -> None:
    fleet.simulator.set_faults({"rules": [{"model": "gemini-3.5*", "match": "patience", "sequence": ["rate_limit:1"]}]})
    try:
        t0 = time.monotonic()
        result = fleet.client.submit("solo", input={"text": "patience please"}, tier="batch").result(30)
        assert result.ok and attempts(result) == [("gemini-lite", "rate_limited"), ("gemini-lite", "ok")]
        assert time.monotonic() - t0 >= 0.9, "the job waited for retry-after in the delayed set"
        wait = [a for a in result.attempts if a["type"] == "decision"][0]
        assert wait["action"] == "wait" and wait["delay_s"] == pytest.approx(1.0)
    finally:
        fleet.simulator.clear_faults()


def test_overloaded_retries_the_same_model_once_then_reroutes(fleet: Fleet) -> None:
    result = fleet.client.submit("summarize", input={"text": "[[sim:overloaded@claude-*]] busy"},
                                 tier="interactive").result(30)
    assert result.ok
    assert attempts(result) == [("claude-haiku", "overloaded"), ("claude-haiku", "overloaded"), ("gpt-luna", "ok")]


def test_a_hanging_vendor_is_abandoned_within_the_tier_budget(fleet: Fleet) -> None:
    t0 = time.monotonic()
    result = fleet.client.submit("summarize", input={"text": "[[sim:hang@claude-*]] silent"},
                                 tier="interactive").result(30)
    elapsed = time.monotonic() - t0
    assert result.ok and attempts(result)[0] == ("claude-haiku", "timeout")
    first_token_s = fleet.config.tiers["interactive"].first_token_timeout_s
    assert elapsed < first_token_s + 5, f"took {elapsed:.1f}s, budget {first_token_s}s"


def test_job_deadline_expires_with_a_reason(fleet: Fleet) -> None:
    result = fleet.client.submit("summarize", input={"text": "[[sim:hang]] forever"}, tier="batch",
                                 deadline_s=1.5).result(20)
    assert result.status is JobStatus.EXPIRED and "deadline" in (result.error or "")


def test_cancel_a_running_job(fleet: Fleet) -> None:
    job = fleet.client.submit("summarize", input={"text": "[[sim:hang:3]] slow"}, tier="batch")
    deadline = time.monotonic() + 10
    while job.status() is not JobStatus.RUNNING and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fleet.client.cancel(job.id)
    assert job.result(5).status is JobStatus.CANCELLED
    time.sleep(3.5)  # the abandoned call returns; its completion must be dropped
    assert fleet.client.store.get(job.id)["status"] == "cancelled"


def test_worker_killed_mid_attempt_is_recovered_within_two_lease_ttls(redis_server: str, tmp_path: Path) -> None:
    with running_fleet(f"{redis_server}/28", tmp_path, providers=("gemini",)) as fleet:
        job = fleet.client.submit("classify", input={"text": "[[sim:hang:2@gemini-3.5*]] x"}, tier="standard")
        deadline = time.monotonic() + 10
        while job.status() is not JobStatus.RUNNING and time.monotonic() < deadline:
            time.sleep(0.02)
        fleet.kill("worker-gemini", signal.SIGKILL)
        killed_at = time.monotonic()
        fleet.worker("gemini", name="worker-gemini-2")
        lease_ttl_s = fleet.config.fleet.lease_ttl_s
        while not any(h.get("outcome") == "lost" for h in fleet.client.store.history(job.id)):
            assert time.monotonic() - killed_at < 2 * lease_ttl_s, "the dead worker's attempt was not recovered"
            time.sleep(0.05)
        result = job.result(60)
        assert result.ok, result
        outcomes = [o for _, o in attempts(result)]
        assert outcomes[0] == "lost" and outcomes[-1] == "ok"


def test_sigterm_is_a_warm_shutdown_that_finishes_in_flight_attempts(redis_server: str, tmp_path: Path) -> None:
    with running_fleet(f"{redis_server}/28", tmp_path, providers=("gemini",)) as fleet:
        job = fleet.client.submit("classify", input={"text": "[[sim:slow_first_token:1500@gemini-3.5*]] x"},
                                  tier="standard")
        deadline = time.monotonic() + 10
        while job.status() is not JobStatus.RUNNING and time.monotonic() < deadline:
            time.sleep(0.02)
        worker = fleet.procs["worker-gemini"]
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, fleet.log("worker-gemini")
        result = job.result(5)
        assert result.ok and [(m, o) for m, o in attempts(result)] == [("gemini-lite", "ok")]
        assert not fleet.client.store.live_workers(60), "a stopped worker withdraws its presence"


def test_message_popped_by_a_worker_killed_before_kombu_recorded_it_is_requeued(
        redis_server: str, tmp_path: Path) -> None:
    """kombu's BRPOP takes the message off the list before it writes ``unacked``: a worker SIGKILLed between
    the two leaves a queued job with no message anywhere. The supervisor puts it back."""
    with running_fleet(f"{redis_server}/28", tmp_path, providers=("gemini",)) as fleet:
        fleet.kill("worker-gemini", signal.SIGKILL)
        job = fleet.client.submit("classify", input={"text": "lost in the pop"}, tier="standard")
        queue = fleet.client.store.get(job.id)["queue"]
        store = fleet.client.store
        assert store.redis.rpop(store.keys.queue(queue)) is not None  # what the dying worker's BRPOP took
        fleet.worker("gemini", name="worker-gemini-2")
        result = job.result(fleet.config.fleet.unclaimed_delivery_s + 20)
        assert result.ok, result
        requeues = [a for a in result.attempts if a["type"] == "decision" and a.get("action") == "requeue"]
        assert len(requeues) == 1 and "lost with a worker" in requeues[0]["reason"], result.attempts
        assert [o for _, o in attempts(result)] == ["ok"]
