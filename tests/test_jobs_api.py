"""The front door's native job API, its keys (tiers, rpm, rotation) and overload, on a real fleet."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2 as httpx
import openai
import pytest
from prometheus_client import REGISTRY

from tests.api_door import FrontDoor, front_door
from tests.fleet import REPO
from toolbag.api.errors import JOB_ID_HEADER
from toolbag.api.openapi import openapi_document
from toolbag.jobs import JobStatus

PROMPT = "The export button does nothing when I click it."
QUEUE_DEPTH = 2  # the batch tier's max_queue_depth in this fleet
STUCK_MODEL = "local-llama"  # no worker serves its provider here: its jobs wait in the queue


@pytest.fixture(scope="module")
def door(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FrontDoor]:
    with front_door(redis_server, tmp_path_factory.mktemp("jobs-api"), providers=("anthropic", "openai", "gemini"),
                    tiers={"batch": {"max_queue_depth": QUEUE_DEPTH}}) as door:
        yield door


def sse_events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    events, name = [], ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
    return events


def overloads(tier: str, reason: str) -> float:
    return REGISTRY.get_sample_value("toolbag_api_overload_total", {"tier": tier, "reason": reason}) or 0.0


def job_keys(door: FrontDoor) -> int:
    store = door.fleet.client.store
    return sum(1 for _ in store.redis.scan_iter(match=f"{store.keys.prefix}job:*", count=1000))


def test_submit_read_and_follow_a_job(door: FrontDoor) -> None:
    with door.http() as http:
        created = http.post("/jobs", json={"capability": "summarize", "input": {"text": PROMPT},
                                           "tier": "interactive", "idempotency_key": "native-1"})
        assert created.status_code == 201, created.text
        job_id = created.json()["job_id"]
        assert created.headers[JOB_ID_HEADER] == job_id and created.json()["created"] is True
        with http.stream("GET", f"/jobs/{job_id}/events") as response:
            assert response.status_code == 200
            events = sse_events(response)
        view = http.get(f"/jobs/{job_id}").json()
        again = http.post("/jobs", json={"capability": "summarize", "input": {"text": PROMPT},
                                         "tier": "interactive", "idempotency_key": "native-1"})
    assert view["status"] == "succeeded" and view["caller"] == "sdk-tests" and view["output"]
    assert [a["type"] for a in view["attempts"]][0] == "attempt" and view["usage"]["output_tokens"] > 0
    text = "".join(data["text"] for name, data in events if name == "text")
    assert text == view["output"]
    assert [name for name, _ in events][-2:] == ["attempt_end", "end"]
    assert events[-1][1]["status"] == "succeeded" and events[-1][1]["output"] == view["output"]
    assert again.status_code == 200 and again.json() == {"job_id": job_id, "status": "succeeded", "created": False}


def test_bad_job_bodies_are_422_naming_the_field_and_write_nothing(door: FrontDoor) -> None:
    before = job_keys(door)
    cases = [
        ({"capability": "summarize"}, "input"),
        ({"capability": "summarize", "input": "x", "tier": "urgent"}, "tier"),
        ({"capability": "summarize", "input": "x", "colour": "red"}, "colour"),
        ({"capability": "no-such", "input": "x"}, "capability"),
        ({"capability": "summarize", "input": "x", "deadline_s": 0.1}, "deadline_s"),
    ]
    with door.http() as http:
        for body, field in cases:
            answer = http.post("/jobs", json=body)
            assert answer.status_code == 422, (body, answer.text)
            error = answer.json()["error"]
            assert error["message"].startswith(field) and "\n" not in error["message"], error
        malformed = http.post("/jobs", content=b"{nope", headers={"content-type": "application/json"})
        assert malformed.status_code == 400 and "not valid JSON" in malformed.json()["error"]["message"]
        batch = http.post("/jobs:batch", json={"jobs": [{"capability": "summarize", "input": "a"},
                                                        {"capability": "summarize", "input": "b", "tier": "x"}]})
        assert batch.status_code == 422 and batch.json()["error"]["message"].startswith("jobs[1].tier")
        batch = http.post("/jobs:batch", json={"jobs": [{"capability": "summarize", "input": "a"},
                                                        {"capability": "nope", "input": "b"}]})
        assert batch.status_code == 422 and batch.json()["error"]["message"].startswith("jobs[1].capability")
        assert http.get("/jobs/0123abcd").status_code == 404
        assert http.get("/jobs/not-an-id!").status_code == 404
    assert job_keys(door) == before


def test_batch_submits_all_and_cancel_stops_a_waiting_job(door: FrontDoor) -> None:
    with door.http() as http:
        batch = http.post("/jobs:batch", json={"jobs": [{"capability": "summarize", "input": {"text": t}}
                                                        for t in ("one", "two", "three")]})
        assert batch.status_code == 201, batch.text
        ids = [j["job_id"] for j in batch.json()["jobs"]]
        results = [door.fleet.client.result(job_id, 30) for job_id in ids]
        assert all(r.ok for r in results) and len(set(ids)) == 3
        stuck = door.fleet.client.submit("chat", input={"text": "waits"}, candidates=(STUCK_MODEL,),
                                         caller="sdk-tests", tier="standard")
        cancelled = http.delete(f"/jobs/{stuck.id}")
        assert cancelled.json() == {"job_id": stuck.id, "cancelled": True, "status": "cancelled"}
        assert http.delete(f"/jobs/{stuck.id}").json()["cancelled"] is False


def test_a_key_sees_only_its_callers_jobs(door: FrontDoor) -> None:
    with door.http() as http:
        job_id = http.post("/jobs", json={"capability": "summarize", "input": "mine"}).json()["job_id"]
    with door.http(door.new_key("someone-else")) as other:
        assert other.get(f"/jobs/{job_id}").status_code == 404
        assert other.delete(f"/jobs/{job_id}").status_code == 404
    with door.http(door.new_key("ops", inbox=True)) as ops:
        assert ops.get(f"/jobs/{job_id}").json()["caller"] == "sdk-tests"


def test_the_escalation_inbox(door: FrontDoor) -> None:
    escalate = {"capability": "summarize", "input": {"text": "[[sim:refusal]] nobody will"}, "tier": "interactive"}
    with door.http() as http:
        first = http.post("/jobs", json=escalate).json()["job_id"]
        second = http.post("/jobs", json=escalate).json()["job_id"]
        third = http.post("/jobs", json=escalate).json()["job_id"]
        for job_id in (first, second, third):
            assert door.fleet.client.result(job_id, 30).status is JobStatus.ESCALATED
        assert http.get("/escalations").status_code == 403
    with door.http(door.new_key("ops", inbox=True)) as ops:
        listed = {e["job_id"] for e in ops.get("/escalations").json()["escalations"]}
        assert {first, second, third} <= listed
        shown = ops.get(f"/escalations/{first}").json()
        assert shown["reason"] and shown["input"] == escalate["input"] and shown["attempts"]
        assert ops.post(f"/escalations/{first}/resolve", json={"output": "by hand"}).status_code == 200
        assert ops.post(f"/escalations/{second}/reject", json={"reason": "spam"}).status_code == 200
        retried = ops.post(f"/escalations/{third}/retry", json={"model": "gpt-luna"})
        assert retried.json() == {"job_id": third, "action": "retry", "model": "gpt-luna"}
        assert ops.post(f"/escalations/{first}/resolve", json={"output": "x"}).status_code == 409
        assert ops.post(f"/escalations/{second}/retry", json={"model": "nope"}).status_code in (409, 422)
        assert ops.post(f"/escalations/{second}/reject", json={}).json()["error"]["message"].startswith("reason")
    resolved = door.fleet.client.result(first, 5)
    assert resolved.ok and resolved.output == "by hand" and resolved.model == "ops"
    assert door.fleet.client.result(second, 5).status is JobStatus.FAILED


def test_openapi_is_served_and_equals_the_committed_document(door: FrontDoor) -> None:
    committed = json.loads((REPO / "docs" / "openapi.json").read_text())
    with door.http() as http:
        served = http.get("/openapi.json").json()
    assert served == committed == json.loads(json.dumps(openapi_document()))
    assert {"/jobs", "/jobs:batch", "/jobs/{job_id}", "/jobs/{job_id}/events", "/escalations"} <= set(served["paths"])


def test_a_keys_tiers_are_enforced_in_each_sdks_shape(door: FrontDoor) -> None:
    key = door.new_key("tier-bound", "standard", tiers=("standard",))
    with pytest.raises(openai.PermissionDeniedError, match="interactive"):
        door.openai(key).chat.completions.create(model="summarize", messages=[{"role": "user", "content": PROMPT}],
                                                 extra_headers={"x-toolbag-tier": "interactive"})
    with pytest.raises(anthropic.PermissionDeniedError, match="interactive"):
        door.anthropic(key).messages.create(model="summarize", max_tokens=50,
                                            messages=[{"role": "user", "content": PROMPT}],
                                            extra_headers={"x-toolbag-tier": "interactive"})
    answer = door.openai(key).chat.completions.create(model="summarize",
                                                      messages=[{"role": "user", "content": PROMPT}])
    assert answer.choices[0].message.content


def test_a_keys_rpm_is_fleet_wide_and_says_when_to_retry(door: FrontDoor) -> None:
    key = door.new_key("limited", rpm=2)
    client = door.openai(key)
    for _ in range(2):
        client.models.list()  # listing models is not a job: it does not count
    client.chat.completions.create(model="summarize", messages=[{"role": "user", "content": "one"}])
    with door.http(key) as http:
        assert http.post("/jobs", json={"capability": "summarize", "input": "two"}).status_code == 201
    before = overloads("interactive", "rpm")
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="summarize", messages=[{"role": "user", "content": "three"}])
    assert 1 <= int(raised.value.response.headers["retry-after"]) <= 60
    with pytest.raises(anthropic.RateLimitError):
        door.anthropic(key).messages.create(model="summarize", max_tokens=10,
                                            messages=[{"role": "user", "content": "four"}])
    assert overloads("interactive", "rpm") == before + 2


def test_a_tier_past_its_queue_depth_is_429_and_counted(door: FrontDoor) -> None:
    client = door.openai()
    stuck = [door.fleet.client.submit("chat", input={"text": "waits"}, candidates=(STUCK_MODEL,), tier="batch")
             for _ in range(QUEUE_DEPTH)]
    before = overloads("batch", "queue_depth")
    try:
        with pytest.raises(openai.RateLimitError, match="overloaded") as raised:
            client.chat.completions.create(model="summarize", messages=[{"role": "user", "content": PROMPT}],
                                           extra_headers={"x-toolbag-tier": "batch"})
        assert int(raised.value.response.headers["retry-after"]) >= 1
        with door.http() as http:
            refused = http.post("/jobs", json={"capability": "summarize", "input": "x", "tier": "batch"})
            assert refused.status_code == 429
        assert overloads("batch", "queue_depth") == before + 2
        other_tier = client.chat.completions.create(model="summarize",
                                                    messages=[{"role": "user", "content": PROMPT}])
        assert other_tier.choices[0].message.content
    finally:
        for job in stuck:
            job.cancel()
    answer = client.chat.completions.create(model="summarize", messages=[{"role": "user", "content": PROMPT}],
                                            extra_headers={"x-toolbag-tier": "batch"})
    assert answer.choices[0].message.content


def toolbag(door: FrontDoor, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "toolbag.cli", *args], env=door.fleet.env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_keys_cli_create_rotate_revoke_and_the_secret_is_nowhere(door: FrontDoor, tmp_path: Path) -> None:
    created = toolbag(door, "keys", "create", "--caller", "rotating", "--tiers", "standard,batch", "--rpm", "100")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["tiers"] == ["standard", "batch"] and key["rpm"] == 100 and key["tier"] is None
    client = door.openai(key["key"])
    answer = client.chat.completions.with_raw_response.create(
        model="summarize", messages=[{"role": "user", "content": PROMPT}], extra_headers={"x-toolbag-tier": "standard"})
    job_id = answer.headers[JOB_ID_HEADER]
    record = door.fleet.client.store.get(job_id)
    assert record.caller == "rotating"

    rotated = toolbag(door, "keys", "rotate", key["id"])
    assert rotated.returncode == 0, rotated.stderr
    new = json.loads(rotated.stdout)
    assert new["replaces"] == key["id"] and new["tiers"] == key["tiers"] and new["rpm"] == 100
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    assert door.openai(new["key"]).models.list().data
    listed = toolbag(door, "keys", "list").stdout
    assert new["id"] in listed and key["id"] not in listed and new["key"] not in listed
    assert toolbag(door, "keys", "revoke", new["id"]).returncode == 0
    with pytest.raises(openai.AuthenticationError):
        door.openai(new["key"]).models.list()

    for bad in (["--caller", "bad caller!"], ["--caller", "x", "--tiers", "gold"], ["--caller", "x", "--rpm", "0"],
                ["--caller", "x", "--tier", "interactive", "--tiers", "batch"]):
        refused = toolbag(door, "keys", "create", *bad)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert toolbag(door, "keys", "rotate", "000000000000").returncode == 2

    redis = door.fleet.client.store.redis
    with door.http() as http:
        exposition = http.get("/metrics").text
    for secret in (key["key"], new["key"], door.key):
        body = secret[4:]
        assert body not in exposition
        for name in redis.scan_iter(match=f"{door.fleet.client.store.keys.prefix}*", count=1000):
            kind = redis.type(name)
            dump = (str(redis.hgetall(name)) if kind == b"hash" else str(redis.xrange(name)) if kind == b"stream"
                    else str(redis.lrange(name, 0, -1)) if kind == b"list" else str(redis.get(name))
                    if kind == b"string" else "")
            assert body not in dump, name
    for log in door.fleet.tmp.glob("**/*.log"):
        assert all(secret[4:] not in log.read_text(errors="replace") for secret in (key["key"], new["key"]))
