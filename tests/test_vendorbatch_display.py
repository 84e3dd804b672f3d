"""Which path a job took, shown by ``toolbag status`` and the console's job page: each attempt's path (real time,
or a vendor batch and its id), from attempt records and results written through the store's fenced scripts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass

import pytest
from starlette.testclient import TestClient

from tests.fleet import REPO
from toolbag.client import Client
from toolbag.config import DEFAULT_CONFIG_PATH, load_config
from toolbag.console import ConsoleKeyStore
from toolbag.jobs import AttemptRecord, DecisionRecord, JobStatus, path_label, path_of

BATCH_ID = "msgbatch_01VendorBatchDisplay"
MODEL, PROVIDER = "claude-haiku", "anthropic"


@dataclass(frozen=True)
class Jobs:
    client: Client
    redis_url: str
    batched: str  # served by a vendor batch
    rerouted: str  # a vendor batch expired, then real time served it
    realtime: str  # no path recorded at all (written before paths were): real time


def attempt(n: int, outcome: str, path: str = "realtime", batch_id: str | None = None) -> str:
    return AttemptRecord(n=n, model=MODEL, provider=PROVIDER, outcome=outcome, latency_s=1.5, input_tokens=10,
                         output_tokens=5, cost_usd=0.000003, path=path, batch_id=batch_id).to_json()


def result(path: str | None, batch_id: str | None = None) -> dict[str, object]:
    extra: dict[str, object] = {} if path is None else {"path": path}
    if batch_id:
        extra["batch_id"] = batch_id
    return {"provider": PROVIDER, "model": MODEL, "usage": {"input_tokens": 10, "output_tokens": 5},
            "cost_usd": 0.000003, **extra}


def claimed(client: Client, job_id: str) -> str:
    record = client.store.get(job_id)
    assert client.store.claim(job_id, record.token, record.queue, 30, "display-worker") is not None
    return record.token


@pytest.fixture
def jobs(redis_url: str) -> Jobs:
    client = Client(load_config(DEFAULT_CONFIG_PATH), redis_url)
    ids = []
    for n in range(3):
        ids.append(client.submit("summarize", input={"text": f"path display {n}"}, tier="batch",
                                 caller="display").id)
    batched, rerouted, realtime = ids
    token = claimed(client, batched)
    assert client.store.complete(batched, token, "a summary", result("vendor_batch", BATCH_ID),
                                 attempt(1, "ok", "vendor_batch", BATCH_ID)).ok
    token = claimed(client, rerouted)
    assert client.store.end_attempt(rerouted, token, "expired", attempt(1, "expired", "vendor_batch", BATCH_ID)).ok
    record = client.store.get(rerouted)
    assert record.status is JobStatus.DECIDING
    decision = DecisionRecord("retry", "the vendor batch expired: real time", MODEL).to_json()
    assert client.store.dispatch(rerouted, record.token, model=MODEL, provider=PROVIDER,
                                 queue=f"{PROVIDER}.batch", record_json=decision).ok
    token = claimed(client, rerouted)
    assert client.store.complete(rerouted, token, "a summary", result("realtime"), attempt(2, "ok")).ok
    token = claimed(client, realtime)
    legacy = json.loads(attempt(1, "ok"))
    legacy.pop("path")
    assert client.store.complete(realtime, token, "a summary", result(None), json.dumps(legacy)).ok
    return Jobs(client, redis_url, batched, rerouted, realtime)


def test_the_path_of_an_entry_defaults_to_real_time() -> None:
    assert path_of({"path": "vendor_batch", "batch_id": "b1"}) == ("vendor_batch", "b1")
    assert path_of({"path": "realtime"}) == path_of({}) == ("realtime", None)
    assert path_label({"path": "vendor_batch", "batch_id": "b1"}) == "vendor batch b1"
    assert path_label({"path": "vendor_batch"}) == "vendor batch" and path_label({}) == "real time"
    assert "batch_id" not in json.loads(attempt(1, "ok")), "a real-time attempt records no batch id"


def status(jobs: Jobs, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TOOLBAG_REDIS_URL": jobs.redis_url,
           "TOOLBAG_CONFIG": str(DEFAULT_CONFIG_PATH), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "toolbag.cli", "status", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_status_shows_each_attempts_path(jobs: Jobs) -> None:
    shown = status(jobs, jobs.batched)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert f"via vendor batch {BATCH_ID}" in lines[0], "the path that served the job, on the first line"
    assert any(line.strip().startswith("attempt 1:") and f"via vendor batch {BATCH_ID}" in line for line in lines)

    shown = status(jobs, jobs.rerouted).stdout.splitlines()
    first = next(line for line in shown if line.strip().startswith("attempt 1:"))
    second = next(line for line in shown if line.strip().startswith("attempt 2:"))
    assert "expired" in first and f"via vendor batch {BATCH_ID}" in first
    assert "ok" in second and "via real time" in second
    assert "via real time" in shown[0]

    shown = status(jobs, jobs.realtime).stdout
    assert "via real time" in shown and "vendor batch" not in shown, "no path recorded: real time"

    data = json.loads(status(jobs, jobs.rerouted, "--json").stdout)
    paths = [(a.get("path"), a.get("batch_id")) for a in data["attempts"] if a["type"] == "attempt"]
    assert paths == [("vendor_batch", BATCH_ID), ("realtime", None)]


def test_the_console_job_page_shows_each_attempts_path(jobs: Jobs) -> None:
    from toolbag.api.app import create_app

    app = create_app(jobs.client)
    _, secret = ConsoleKeyStore(jobs.client.store.redis, jobs.client.store.keys).create("path-viewer", "viewer")
    browser = TestClient(app, follow_redirects=False)
    login = browser.get("/console/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', login.text)
    assert csrf is not None
    assert browser.post("/console/login", data={"key": secret, "csrf": csrf.group(1)}).status_code == 303

    page = browser.get(f"/console/jobs/{jobs.batched}").text
    facts = re.search(r'id="job-path">(.*?)</td>', page, re.S)
    assert facts is not None and "vendor batch" in facts.group(1) and BATCH_ID in facts.group(1)
    assert re.search(rf'class="path vendor_batch">vendor batch <code>{BATCH_ID}</code>', page)

    page = browser.get(f"/console/jobs/{jobs.rerouted}").text
    spans = re.findall(r'<span class="path (\w+)">', page)
    assert spans == ["vendor_batch", "realtime"], "one path per attempt, in order"
    facts = re.search(r'id="job-path">(.*?)</td>', page, re.S)
    assert facts is not None and facts.group(1).strip() == "real time"

    page = browser.get(f"/console/jobs/{jobs.realtime}").text
    assert re.findall(r'<span class="path (\w+)">', page) == ["realtime"]
