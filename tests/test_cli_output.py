"""Human output that stays legible piped or at 80 columns: tables never cut ids or short fields, audit commands
print oldest first and say when nothing matches, ``toolbag dev`` says how to run toolbag."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from rich.console import Console
from typer.testing import CliRunner

from toolbag.cli.app import app
from toolbag.cli.tables import Column, legible_table
from toolbag.config import DEFAULT_CONFIG_PATH
from toolbag.devfleet.dev import demo_table, how_to_submit
from toolbag.gateway.policy import load_policy_file
from toolbag.store.keys import Keys

DEMO_ROWS = [
    ("summarize", "interactive", "succeeded", "claude-haiku", "claude-haiku:ok", "0.096s",
     "[claude-haiku] toolbag routes capability jobs across vendors."),
    ("code-review", "batch", "succeeded", "gpt-sol", "gpt-sol:ok", "0.165s", "[gpt-sol] def add(a, b): [/x]"),
    ("summarize", "interactive", "succeeded", "gpt-luna", "claude-haiku:refused → gpt-luna:ok", "0.019s",
     "[gpt-luna] A text one model will not touch."),
]


def piped(renderable: object, width: int) -> str:
    """What a non-terminal of ``width`` columns receives, as the CLI's consoles print it."""
    out = io.StringIO()
    Console(file=out, width=width, soft_wrap=True, emoji=False).print(renderable)
    return out.getvalue()


@pytest.mark.parametrize("width", [80, 100, 200])
def test_the_demo_table_keeps_every_short_field_whole(width: int) -> None:
    text = piped(demo_table(DEMO_ROWS, width), width)
    assert "…" not in text
    assert all(len(line) <= width for line in text.splitlines() if "output:" not in line), text
    for row in DEMO_ROWS:
        for short in row[:4] + row[5:6]:
            assert re.search(rf"(^|[\s│]){re.escape(short)}([\s│]|$)", text, re.M), (short, text)
    assert "[claude-haiku] toolbag routes" in text and "[/x]" in text, "model output is data, never markup"


def test_at_80_columns_the_demo_is_one_line_of_short_fields_per_job_and_the_rest_below() -> None:
    lines = piped(demo_table(DEMO_ROWS, 80), 80).splitlines()
    assert lines[:3] == [
        "demo workload",
        "capability   tier         status     served by     latency",
        "summarize    interactive  succeeded  claude-haiku  0.096s",
    ]
    assert lines[3:5] == ["  attempts: claude-haiku:ok",
                          "  output: [claude-haiku] toolbag routes capability jobs across vendors."]
    assert "  attempts: claude-haiku:refused → gpt-luna:ok" in lines


def test_a_wide_console_gets_a_bordered_table() -> None:
    text = piped(demo_table(DEMO_ROWS, 200), 200)
    assert "┃ capability " in text and "claude-haiku:refused → gpt-luna:ok" in text


@pytest.mark.parametrize("width", [60, 80, 120])
def test_escalation_ids_stay_whole_and_the_reason_wraps_or_goes_below(width: int) -> None:
    job_id = uuid.uuid4().hex
    columns = [Column("job"), Column("waiting"), Column("capability"), Column("tier"), Column("caller"),
               Column("reason", whole=False)]
    reason = "all candidates refused: claude-haiku refused (policy), gpt-luna refused, gemini-lite refused"
    text = piped(legible_table(columns, [(job_id, "12s", "summarize", "interactive", "analyst", reason)], width),
                 width)
    assert all(field in text for field in (job_id, "12s", "summarize", "interactive", "analyst"))
    assert "…" not in text


def test_the_fleet_hint_names_the_toolbag_to_run() -> None:
    hint = how_to_submit("redis://127.0.0.1:6390/0")
    assert "export TOOLBAG_REDIS_URL=redis://127.0.0.1:6390/0" in hint
    assert re.search(r"^  \S*toolbag submit summarize --input '\{\"text\": \"hi\"\}' --wait$", hint, re.M), hint


@pytest.fixture
def audit_env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    client = redis.Redis.from_url(redis_url)
    for n, tool in enumerate(("clock.now", "notes.read", "kv.get")):
        client.xadd(Keys("tb:").audit, {"kind": "tool", "event": "decision", "decision": "allow", "agent": "analyst",
                                        "tool": tool, "ts_ms": str(1_700_000_000_000 + n)})
    client.close()
    return {"TOOLBAG_CONFIG": str(DEFAULT_CONFIG_PATH), "TOOLBAG_REDIS_URL": redis_url, "COLUMNS": "80"}


@pytest.mark.parametrize("command", [["audit", "tail"], ["audit", "query"]])
def test_audit_tail_and_query_print_oldest_first(audit_env: dict[str, str], command: list[str]) -> None:
    result = CliRunner().invoke(app, command, env=audit_env)
    assert result.exit_code == 0, result.output
    tools = [line.split()[-1] for line in result.stdout.splitlines()]
    assert tools == ["clock.now", "notes.read", "kv.get"]
    limited = CliRunner().invoke(app, [*command, "-n" if command[1] == "tail" else "--limit", "2"], env=audit_env)
    assert [line.split()[-1] for line in limited.stdout.splitlines()] == ["notes.read", "kv.get"], "the newest 2"


@pytest.mark.parametrize("command", [["audit", "tail"], ["audit", "query", "--agent", "nobody"],
                                     ["audit", "query", "--agent", "nobody", "--json"]])
def test_an_empty_audit_result_says_so_on_stderr(audit_env: dict[str, str], command: list[str]) -> None:
    if command[1] == "tail":
        redis.Redis.from_url(audit_env["TOOLBAG_REDIS_URL"]).delete(Keys("tb:").audit)
    result = CliRunner().invoke(app, command, env=audit_env)
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr.startswith("no audit records match")


@pytest.mark.parametrize("command", [["permissions", "list"], ["permissions", "list", "--agent", "analyst", "--model",
                                                              "claude-haiku"], ["tools", "list"], ["queues"]])
def test_policy_tool_and_queue_tables_keep_ids_whole_when_piped_at_80_columns(redis_url: str,
                                                                             command: list[str]) -> None:
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "TOOLBAG_CONFIG": str(DEFAULT_CONFIG_PATH), "TOOLBAG_REDIS_URL": redis_url,
           "TOOLBAG_POLICY": str(repo / "policy.yaml"), "TOOLBAG_TOOLS": str(repo / "tools.yaml"), "COLUMNS": "80"}
    done = subprocess.run([sys.executable, "-m", "toolbag.cli", *command], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout, done.stdout
    firsts = {line.split()[0] for line in done.stdout.splitlines() if line.strip()}
    if command == ["permissions", "list"]:
        assert {r.id for r in load_policy_file(repo / "policy.yaml").rules} <= firsts, done.stdout
    if command[0] == "tools":
        assert "local:toolbag.gateway.builtin_tools" in done.stdout.split()
