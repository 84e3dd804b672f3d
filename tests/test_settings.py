"""Every ``TOOLBAG_*`` variable is checked before a command runs: a bad one is one line naming the variable and
the fix, exit 2 (real ``toolbag`` processes)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fleet import REPO


def toolbag(env: dict[str, str], *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TOOLBAG_")}
    return subprocess.run([sys.executable, "-m", "toolbag.cli", *args], env={**base, **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("variable", "value", "fix"), [
    ("TOOLBAG_METRICS_PORT", "abc", "0 to 65535"),
    ("TOOLBAG_METRICS_PORT", "70000", "0 to 65535"),
    ("TOOLBAG_REDIS_URL", "notaurl", "redis://host:6379/0"),
    ("TOOLBAG_REDIS_URL", "redis://localhost:sixty/0", "redis://host:6379/0"),
    ("TOOLBAG_CONFIG", "/no/such/toolbag.yaml", "path of a toolbag.yaml"),
    ("TOOLBAG_SIMULATOR_URL", "localhost:8900", "http://127.0.0.1:8900"),
    ("TOOLBAG_LOG_LEVEL", "loud", "DEBUG, INFO"),
    ("TOOLBAG_POLICY", "/no/such/policy.yaml", "ships with toolbag"),
    ("TOOLBAG_TOOLS", "/no/such/tools.yaml", "ships with toolbag"),
    ("TOOLBAG_SKILLS_DIR", "/no/such/skills", "folder of skills"),
    ("TOOLBAG_AUDIT_JSONL", "/no/such/dir/audit.jsonl", "folder that exists"),
])
def test_a_bad_variable_is_one_line_and_exit_2(variable: str, value: str, fix: str) -> None:
    done = toolbag({variable: value}, "worker", "--provider", "anthropic")
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {variable}: ") and fix in lines[0], lines


def test_a_redis_url_with_a_password_is_never_echoed() -> None:
    done = toolbag({"TOOLBAG_REDIS_URL": "redis://:hunter2secret@localhost:nope/0"}, "queues")
    assert done.returncode == 2 and "TOOLBAG_REDIS_URL" in done.stderr
    assert "hunter2" not in done.stderr


def test_a_worker_whose_metrics_port_is_taken_is_one_line_and_exit_2(redis_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = toolbag({"TOOLBAG_REDIS_URL": redis_url, "TOOLBAG_METRICS_PORT": str(port)},
                       "worker", "--provider", "anthropic")
    assert done.returncode == 2, (done.stdout, done.stderr)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(port) in errors[0] and "TOOLBAG_METRICS_PORT" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
