"""Bulk runs end to end: the real CLI as a subprocess, real workers and supervisor, real SDKs against the
simulator. The runner is killed (SIGKILL, then SIGINT) midway and resumed: every record must land exactly
once in results ∪ errors, and no record may be paid for twice."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fleet import REPO, Fleet, running_fleet
from toolbag.config import DEFAULT_CONFIG_PATH, TIERS
from toolbag.jobs import JobStatus

MODEL = "gpt-luna"


def _overrides() -> dict[str, Any]:
    """Every capability on one OpenAI model (so two OpenAI workers serve all), unstreamed calls."""
    defaults = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    routes = {cap: {t: {"candidates": [MODEL]} for t in TIERS} for cap in defaults["routes"]}
    tiers = defaults["tiers"]
    for tier in tiers.values():
        tier.update({"connect_timeout_s": 2, "first_token_timeout_s": 5, "total_timeout_s": 10, "stream": False})
    return {"routes": routes, "tiers": tiers}


@pytest.fixture(scope="module")
def fleet(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(redis_server, tmp_path_factory.mktemp("bulk"), providers=(),
                       config_overrides=_overrides()) as f:
        for n in range(2):
            f.worker("openai", concurrency=48, name=f"worker-openai-{n}")
        f.wait_workers(2)
        yield f


def batch_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "toolbag.cli", "batch", "run", *args]


def run_batch(fleet: Fleet, *args: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(batch_cmd(*args), env=fleet.env, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout_s)


def jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def job_keys(fleet: Fleet) -> int:
    pattern = fleet.client.store.keys.job("*")
    return sum(1 for _ in fleet.client.store.redis.scan_iter(pattern, count=1000))


def attempts_of(fleet: Fleet, job_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    pipe = fleet.client.store.redis.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.lrange(fleet.client.store.keys.attempts(job_id), 0, -1)
    return {job_id: [a for a in (json.loads(x) for x in raw) if a["type"] == "attempt"]
            for job_id, raw in zip(job_ids, pipe.execute(), strict=True)}


def vendor_calls(fleet: Fleet) -> int:
    return len(fleet.simulator.log())


def wait_quiet(fleet: Fleet, timeout_s: float = 60) -> None:
    """Until no job of the fleet is queued or running (so the simulator log is final)."""
    store = fleet.client.store
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        busy = sum(store.queue_stats(f"openai.{t}")[0] for t in TIERS) + store.redis.zcard(store.keys.leases)
        if busy == 0:
            return
        time.sleep(0.1)
    raise AssertionError("the fleet did not drain")


def assert_exactly_once(ids: list[Any], results: list[dict[str, Any]], errors: list[dict[str, Any]]) -> None:
    written = [r["id"] for r in results] + [e["id"] for e in errors]
    assert len(written) == len(set(written)), "an id was written twice"
    assert sorted(map(str, written)) == sorted(map(str, ids)), "every input id is written exactly once"


@pytest.mark.soak
@pytest.mark.slow  # 1.5-2.5 min on a busy 2-core box: the fleet's throughput sets it, not the runner's
@pytest.mark.timeout(900)
def test_ten_thousand_lines_end_to_end(fleet: Fleet, tmp_path: Path) -> None:
    n = 10_000
    invalid = {17, 4_000, 9_999}  # not JSON: the line goes to the errors file, the run goes on
    failing = {5, 5_000}  # the simulator answers 400: the supervisor fails the job with the vendor's reason
    src = tmp_path / "docs.jsonl"
    with src.open("w") as f:
        for i in range(n):
            text = f"Document {i}: the quarterly report shows steady growth."
            if i in failing:
                text += " [[sim:bad_request]]"
            line = json.dumps({"id": f"doc-{i}", "text": text})
            f.write((line[:-1] if i in invalid else line) + "\n")
    out = tmp_path / "summaries.jsonl"
    fleet.simulator.clear_log()
    jobs_before = job_keys(fleet)

    done = run_batch(fleet, str(src), "--capability", "summarize", "-o", str(out), "--json",
                     "--max-in-flight", "400")

    assert done.returncode == 1, done.stderr  # some records are in the errors file
    summary = json.loads(done.stdout)
    results, errors = jsonl(out), jsonl(tmp_path / "summaries.errors.jsonl")
    ids = [f"doc-{i}" if i not in invalid else i + 1 for i in range(n)]  # a line that is not JSON: its number
    assert_exactly_once(ids, results, errors)
    assert (summary["ok"], summary["errors"], summary["total"]) == (n - 5, 5, n)
    assert all(r["status"] == "succeeded" and isinstance(r["output"], str) and r["output"] for r in results)
    assert {r["model"] for r in results} == {MODEL}
    by_id = {e["id"]: e for e in errors}
    for i in invalid:
        e = by_id[i + 1]
        assert (e["status"], e["field"], e["job_id"], e["line"]) == ("invalid", "line", None, i + 1)
        assert "not valid JSON" in e["reason"], e["reason"]
    for i in failing:
        e = by_id[f"doc-{i}"]
        assert e["status"] == "failed" and e["job_id"] and "HTTP 400" in e["reason"], e
    wait_quiet(fleet)
    job_ids = [r["job_id"] for r in results] + [by_id[f"doc-{i}"]["job_id"] for i in failing]
    assert job_keys(fleet) - jobs_before == n - len(invalid) == len(set(job_ids)), "one job per valid line"
    attempts = attempts_of(fleet, job_ids)
    assert all(sum(a["outcome"] == "ok" for a in attempts[r["job_id"]]) == 1 for r in results)
    assert vendor_calls(fleet) == sum(len(a) for a in attempts.values())


def test_killed_midway_and_resumed_every_line_exactly_once(fleet: Fleet, tmp_path: Path) -> None:
    n = 1_500
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": f"line {i} of the kill test"}) + "\n" for i in range(n)))
    out = tmp_path / "out.jsonl"
    args = (str(src), "--capability", "summarize", "-o", str(out), "--max-in-flight", "100", "--json")
    fleet.simulator.clear_log()
    jobs_before = job_keys(fleet)

    for sig, at_least in ((signal.SIGKILL, 300), (signal.SIGINT, 800)):
        proc = subprocess.Popen(batch_cmd(*args), env=fleet.env, cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while count_lines(out) < at_least:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.05)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
        written = count_lines(out)
        assert written < n, "killed too late to test a resume"
        if sig == signal.SIGINT:
            assert proc.returncode == 130 and "rerun the same command to continue" in stderr, stderr

    final = run_batch(fleet, *args)
    assert final.returncode == 0, final.stderr
    summary = json.loads(final.stdout)
    assert summary["done_before"] == written and summary["ok"] == n - written
    results = jsonl(out)
    assert_exactly_once(list(range(1, n + 1)), results, jsonl(tmp_path / "out.errors.jsonl"))
    assert [r["line"] for r in results if r["id"] != r["line"]] == []

    wait_quiet(fleet)
    job_ids = [r["job_id"] for r in results]
    assert len(set(job_ids)) == n and job_keys(fleet) - jobs_before == n, "a resubmitted line reused its job"
    attempts = attempts_of(fleet, job_ids)
    assert all(sum(a["outcome"] == "ok" for a in history) == 1 for history in attempts.values())
    assert vendor_calls(fleet) == sum(len(a) for a in attempts.values()), "no line was paid for twice"

    again = run_batch(fleet, *args)
    assert again.returncode == 0 and json.loads(again.stdout)["submitted"] == 0, "a finished run has nothing to do"


def test_csv_in_csv_out_with_errors_and_rerun(fleet: Fleet, tmp_path: Path) -> None:
    src = tmp_path / "tickets.csv"
    rows = [["id", "text", "labels", "notes"]]
    labels = json.dumps(["billing", "bug", "other"])
    for i in range(20):
        rows.append([f"T{i}", f"Ticket {i}: I was charged twice, please refund", labels, f"note {i}"])
    rows.append(["T-bad-labels", "Some text", "billing|bug", ""])
    rows.append(["T-empty", "", labels, ""])
    rows.append(["T-fail", "Please fail [[sim:bad_request]]", labels, ""])
    with src.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    out = tmp_path / "labelled.csv"

    done = run_batch(fleet, str(src), "--skill", "classify", "-o", str(out), "--json")
    assert done.returncode == 1, done.stderr

    with out.open(encoding="utf-8-sig", newline="") as f:
        results = list(csv.DictReader(f))
    with (tmp_path / "labelled.errors.csv").open(encoding="utf-8-sig", newline="") as f:
        errors = list(csv.DictReader(f))
    assert list(results[0]) == ["id", "text", "labels", "notes", "row", "output.label", "output.confidence",
                                "output.reason", "job_id", "model", "cost_usd"]
    assert sorted(r["id"] for r in results) == sorted(f"T{i}" for i in range(20))
    for r in results:
        assert r["output.confidence"] in ("high", "medium", "low") and r["output.label"]
        assert r["notes"] == f"note {r['id'][1:]}" and int(r["row"]) == int(r["id"][1:]) + 2
        assert float(r["cost_usd"]) > 0 and r["model"] == MODEL
    by_id = {e["id"]: e for e in errors}
    assert set(by_id) == {"T-bad-labels", "T-empty", "T-fail"}
    assert (by_id["T-bad-labels"]["status"], by_id["T-bad-labels"]["field"]) == ("invalid", "input.labels")
    assert (by_id["T-empty"]["status"], by_id["T-empty"]["field"]) == ("invalid", "input.text")
    assert by_id["T-fail"]["status"] == "failed" and "HTTP 400" in by_id["T-fail"]["reason"]
    assert by_id["T-fail"]["row"] == "24" and by_id["T-fail"]["job_id"]

    again = run_batch(fleet, str(src), "--skill", "classify", "-o", str(out), "--json")
    summary = json.loads(again.stdout)
    assert again.returncode == 1 and (summary["submitted"], summary["done_before"]) == (0, 23)
    assert count_lines(out) == 21, "a rerun appends nothing (header + 20 rows)"


def test_dry_run_prints_the_count_and_an_estimate(fleet: Fleet, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": "x" * 400}) + "\n" for i in range(10)))
    out = tmp_path / "out.jsonl"
    jobs_before = job_keys(fleet)
    plain = run_batch(fleet, str(src), "--skill", "summarize", "-o", str(out), "--dry-run", "--deadline-s", "172800")
    assert plain.returncode == 0, plain.stderr
    assert "10 jobs to submit" in plain.stdout and "estimate" in plain.stdout and MODEL in plain.stdout
    assert "real time:" in plain.stdout and "10 of 10 jobs in vendor batches; saves up to $" in plain.stdout
    as_json = json.loads(run_batch(fleet, str(src), "--skill", "summarize", "-o", str(out), "--dry-run",
                                   "--json", "--output-tokens", "50", "--deadline-s", "172800").stdout)
    assert as_json["estimate"] is True and as_json["to_submit"] == 10 and as_json["output_tokens"] == 500
    assert as_json["input_tokens"] >= 10 * 100 and as_json["total_usd"] > 0
    both = as_json["vendor_batch"]
    assert both["jobs"] == 10 and both["total_usd"] == pytest.approx(as_json["total_usd"] / 2, rel=1e-3)
    assert both["saving_usd"] == pytest.approx(as_json["total_usd"] - both["total_usd"], abs=1e-6)
    default = run_batch(fleet, str(src), "--skill", "summarize", "-o", str(out), "--dry-run").stdout
    assert "vendor batch:  none of the 10 jobs: the deadline (86400s) leaves less than" in default
    assert job_keys(fleet) == jobs_before, "a dry run submits nothing"


def test_client_map_yields_results_as_they_finish(fleet: Fleet) -> None:
    inputs: list[Any] = [{"text": f"map input {i}"} for i in range(60)]
    inputs[7] = {"text": ""}
    seen = list(fleet.client.map("summarize", inputs, max_in_flight=16))
    assert sorted(r.index for r in seen) == list(range(60))
    bad = [r for r in seen if r.error is not None]
    assert [r.index for r in bad] == [7] and bad[0].result is None and not bad[0].ok
    assert all(r.ok and r.result is not None and r.result.status is JobStatus.SUCCEEDED
               and isinstance(r.output["summary"], str) for r in seen if r.index != 7)

    key = (lambda i, value: f"map-test-{i}")  # noqa: E731
    first = list(fleet.client.map("summarize", inputs[:20], ordered=True, idempotency_key=key, max_in_flight=8))
    assert [r.index for r in first] == list(range(20)), "ordered=True keeps input order"
    wait_quiet(fleet)
    calls = vendor_calls(fleet)
    again = list(fleet.client.map("summarize", inputs[:20], ordered=True, idempotency_key=key))
    assert [r.job_id for r in again] == [r.job_id for r in first], "the same keys reuse the same jobs"
    assert vendor_calls(fleet) == calls, "and pay nothing again"
