"""The CLI against a real fleet: submit --wait --json, status, queues, escalations."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fleet import REPO, Fleet, running_fleet


@pytest.fixture(scope="module")
def fleet(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(redis_server, tmp_path_factory.mktemp("cli"),
                       providers=("anthropic", "openai", "gemini")) as f:
        yield f


def toolbag(fleet: Fleet, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with stdout and stderr piped, at 80 columns."""
    return subprocess.run([sys.executable, "-m", "toolbag.cli", *args], env={**fleet.env, "COLUMNS": "80"},
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def test_submit_wait_json_prints_one_object_with_the_serving_model(fleet: Fleet, tmp_path: Path) -> None:
    payload = tmp_path / "in.json"
    payload.write_text(json.dumps({"text": "hello from a file"}))
    done = toolbag(fleet, "submit", "summarize", "--input", f"@{payload}", "--tier", "interactive", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["status"] == "succeeded" and data["job_id"]
    assert data["result"]["provider"] == "anthropic" and data["result"]["model"] == "claude-haiku"
    assert "hello from a file" in data["result"]["output"]

    status = toolbag(fleet, "status", data["job_id"], "--json")
    assert json.loads(status.stdout)["status"] == "succeeded"
    human = toolbag(fleet, "status", data["job_id"])
    assert "claude-haiku" in human.stdout and "attempt 1" in human.stdout


def test_queues_and_escalation_inbox_commands(fleet: Fleet) -> None:
    queues = json.loads(toolbag(fleet, "queues", "--json").stdout)
    assert {q["queue"] for q in queues["queues"]} >= {"anthropic.interactive", "gemini.batch"}
    done = toolbag(fleet, "submit", "summarize", "--input", '{"text": "[[sim:refusal]] no"}', "--wait", "--json")
    assert done.returncode == 1
    job_id = json.loads(done.stdout)["job_id"]
    listed = json.loads(toolbag(fleet, "escalations", "list", "--json").stdout)
    assert job_id in [e["job_id"] for e in listed]
    shown = toolbag(fleet, "escalations", "show", job_id)
    assert "refused" in shown.stdout
    assert "[[sim:refusal]] no" in shown.stdout, "job text is data: brackets are printed, never eaten as markup"
    piped = toolbag(fleet, "escalations", "list").stdout.splitlines()
    row = next((line.split() for line in piped if line.startswith(job_id)), None)
    assert row is not None and row[2:4] == ["summarize", "standard"], "id and short fields whole at 80 columns"
    resolved = toolbag(fleet, "escalations", "resolve", job_id, "--output", '{"answer": 42}')
    assert resolved.returncode == 0
    final = json.loads(toolbag(fleet, "status", job_id, "--json").stdout)
    assert final["status"] == "succeeded" and final["output"] == {"answer": 42}
    again = toolbag(fleet, "escalations", "reject", job_id, "--reason", "late")
    assert again.returncode == 2 and "not escalated" in again.stderr


def test_human_output_prints_bracketed_job_text_as_it_is(fleet: Fleet) -> None:
    text = "[bold]not bold[/bold] [/x] [[double]] [link=x]y[/link]"
    done = toolbag(fleet, "submit", "summarize", "--input", json.dumps({"text": text}), "--tier", "interactive",
                   "--wait")
    assert done.returncode == 0, done.stderr
    assert "[bold]not bold[/bold]" in done.stdout and "[/x]" in done.stdout, done.stdout
    assert "[claude-haiku" in done.stdout, "the simulator's [model-id] tag survives"


@pytest.mark.parametrize("args", [
    ("escalations", "show", "no-such-job"),
    ("status", "no-such-job"),
    ("submit", "no-such-capability", "--input", "{}"),
    ("submit", "summarize", "--input", "{not json"),
])
def test_documented_errors_are_one_line_and_exit_2(fleet: Fleet, args: tuple[str, ...]) -> None:
    done = toolbag(fleet, *args)
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr


def test_show_refuses_a_job_that_never_escalated(fleet: Fleet) -> None:
    done = json.loads(toolbag(fleet, "submit", "summarize", "--input", '{"text": "fine"}', "--wait", "--json").stdout)
    shown = toolbag(fleet, "escalations", "show", done["job_id"])
    assert shown.returncode == 2 and "not escalated" in shown.stderr
