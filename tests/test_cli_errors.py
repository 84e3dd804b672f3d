"""Every documented CLI error is one ``error:`` line on stderr and exit 2, also when stderr is a pipe and the
message is long: usage errors, broken skills, a taken metrics port, a refused policy publish."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fleet import REPO
from toolbag.cli.fail import one_line
from toolbag.config import DEFAULT_CONFIG_PATH

SKILLS = REPO / "skills"


@pytest.fixture
def env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    """The embedded config, this test's Redis database, no vendor keys, no policy file, stderr a pipe at 80
    columns; commands run in ``tmp_path``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TOOLBAG_") and not k.endswith("_API_KEY")}
    return {**clean, "TOOLBAG_CONFIG": str(DEFAULT_CONFIG_PATH), "TOOLBAG_REDIS_URL": redis_url,
            "TOOLBAG_SKILLS_DIR": str(SKILLS), "TOOLBAG_TOOLS": str(REPO / "tools.yaml"), "COLUMNS": "80",
            "PYTHONPATH": str(REPO), "TEST_CWD": str(tmp_path)}


def toolbag(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "toolbag.cli", *args], env=env, cwd=env["TEST_CWD"],
                          capture_output=True, text=True, timeout=120)


def assert_one_error_line(done: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_one_line_joins_a_multi_line_message() -> None:
    message = "toolbag.yaml: invalid configuration\n  - routes.x: unknown model\n  - tiers: missing 'batch'\n"
    assert one_line(message) == "toolbag.yaml: invalid configuration; routes.x: unknown model; tiers: missing 'batch'"
    assert one_line("skill at x is not valid (2 problem(s)):\n  - a\n    fix: b") == (
        "skill at x is not valid (2 problem(s)): a; fix: b")


def test_fail_prints_one_line_to_a_pipe_at_any_length() -> None:
    message = "capability: unknown capability 'x'; known: " + ", ".join(f"[cap-{i}] :smile: [/x]" for i in range(60))
    script = ("import sys, typer\nfrom toolbag.cli.fail import fail\n"
              f"try:\n    fail({message + chr(10) + '  - more'!r})\n"
              "except typer.Exit as stop:\n    sys.exit(stop.exit_code)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "80"})
    assert done.returncode == 2
    assert done.stderr == f"error: {message}; more\n", "one line; brackets and :emoji: codes printed as they are"


@pytest.mark.parametrize("args, fragments", [
    (("submit", "summarize"), ("Missing option '--input'", "toolbag.cli submit --help")),
    (("submit", "summarize", "--input", "{}", "--deadline-s", "soon"), ("Invalid value for '--deadline-s'",)),
    (("no-such-command",), ("No such command 'no-such-command'",)),
    (("status", "x", "--no-such-option"), ("No such option: --no-such-option",)),
    (("submit", "no-such-capability", "--input", "{}"), ("unknown capability 'no-such-capability'; known: ",)),
    (("worker", "--provider", "openai", "--metrics-port", "99999"), ("Invalid value for '--metrics-port'", "65535")),
    (("supervisor", "--metrics-port", "-1"), ("Invalid value for '--metrics-port'", "equal to 0")),
    (("simulator", "--port", "99999"), ("Invalid value for '--port'", "65535")),
    (("simulator", "--metrics-port", "70000"), ("Invalid value for '--metrics-port'", "65535")),
    (("api", "--port", "-1"), ("Invalid value for '--port'", "equal to 1")),
    (("dev", "--simulator-port", "0"), ("Invalid value for '--simulator-port'", "equal to 1")),
    (("dev", "--metrics-port", "65536"), ("Invalid value for '--metrics-port'", "65535")),
    (("submit", "summarize", "--input", "{}", "--wait", "--timeout-s", "-1"), ("Invalid value for '--timeout-s'",)),
    (("eval", "summarize", "--timeout-s", "-5"), ("Invalid value for '--timeout-s'",)),
    (("audit", "tail", "--count", "-5"), ("Invalid value for '-n' / '--count'",)),
    (("audit", "query", "--limit", "0"), ("Invalid value for '--limit'",)),
    (("escalations", "list", "--limit", "-1"), ("Invalid value for '--limit'",)),
])
def test_usage_and_submit_errors_are_one_line(env: dict[str, str], args: tuple[str, ...],
                                              fragments: tuple[str, ...]) -> None:
    assert_one_error_line(toolbag(env, *args), *fragments)


@pytest.fixture
def broken_skills(tmp_path: Path) -> Iterator[Path]:
    """A copy of the skills whose summarize has a version that is not semver."""
    root = tmp_path / "skills"
    shutil.copytree(SKILLS, root)
    skill_md = root / "summarize" / "SKILL.md"
    skill_md.write_text(skill_md.read_text().replace('toolbag.version: "1.0.1"', 'toolbag.version: "one"'))
    yield root


@pytest.mark.parametrize("command", ["submit", "batch", "eval"])
def test_an_invalid_skill_is_one_line_with_its_fix(env: dict[str, str], broken_skills: Path, tmp_path: Path,
                                                   command: str) -> None:
    env = {**env, "TOOLBAG_SKILLS_DIR": str(broken_skills)}
    records = tmp_path / "in.jsonl"
    records.write_text('{"text": "hello"}\n')
    args = {
        "submit": ("submit", "--skill", "summarize", "--input", '{"text": "hello"}'),
        "batch": ("batch", "run", str(records), "-o", str(tmp_path / "out.jsonl"), "--skill", "summarize"),
        "eval": ("eval", "summarize"),
    }[command]
    assert_one_error_line(toolbag(env, *args), "skill 'summarize' is not valid", "SKILL.md",
                          "'one' is not a semantic version", "; fix: ")


@pytest.mark.parametrize("command", [("worker", "--provider", "anthropic"), ("supervisor",)])
def test_a_taken_metrics_port_is_one_line_naming_the_port_and_the_option(
    env: dict[str, str], command: tuple[str, ...]
) -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = toolbag(env, *command, "--metrics-port", str(port))
    assert_one_error_line(done, f":{port}", "--metrics-port", "TOOLBAG_METRICS_PORT")


@pytest.mark.parametrize("command", [("api",), ("simulator", "--metrics-port", "0")])
def test_a_server_whose_port_is_taken_or_host_unusable_is_one_line(env: dict[str, str],
                                                                 command: tuple[str, ...]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert_one_error_line(toolbag(env, *command, "--port", str(port)), f"--port: port {port}", "in use")
    assert_one_error_line(toolbag(env, *command, "--host", "no-such-host.invalid"), "--host: cannot resolve")
    assert_one_error_line(toolbag(env, *command, "--host", "192.0.2.1"), "--host: cannot listen on 192.0.2.1")


def test_an_unusable_metrics_host_names_the_host_option(env: dict[str, str]) -> None:
    done = toolbag(env, "worker", "--provider", "anthropic", "--metrics-port", "0", "--metrics-host", "192.0.2.1")
    assert_one_error_line(done, "--metrics-host", "192.0.2.1")


def test_a_refused_publish_is_one_line_and_exit_2(env: dict[str, str], tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 2\nrules: []\n")
    assert toolbag(env, "permissions", "publish", "--file", str(policy)).returncode == 0
    older = tmp_path / "older.yaml"
    older.write_text("version: 1\nrules: []\n")
    assert_one_error_line(toolbag(env, "permissions", "publish", "--file", str(older)),
                          "older than the live version 2", "--force")
    other = tmp_path / "other.yaml"
    other.write_text("version: 2\nrules: []\n# other text\n")
    assert_one_error_line(toolbag(env, "permissions", "publish", "--file", str(other)),
                          "version 2 is live with other text", "raise `version`")


def test_permissions_show_is_a_readable_summary(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text("version: 3\nrules: []\n")  # ./policy.yaml of the command
    before = toolbag(env, "permissions", "show")
    assert before.returncode == 0, before.stderr
    assert before.stdout.splitlines() == [
        "live policy: none published, so every tool call is denied",
        "local policy file: policy.yaml, version 3, not live yet: "
        "`toolbag permissions publish` makes it live",
    ]
    assert toolbag(env, "permissions", "publish").returncode == 0
    shown = toolbag(env, "permissions", "show")
    assert shown.stdout.startswith("live policy: version 3 (sha256:"), shown.stdout
    assert "local policy file: policy.yaml, version 3: the live policy" in shown.stdout
    assert "{" not in shown.stdout and "?@" not in shown.stdout
    assert json.loads(toolbag(env, "permissions", "show", "--json").stdout)["local"]["matches_live"] is True
