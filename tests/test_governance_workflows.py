"""The GitHub workflows: they pass actionlint (with shellcheck on their `run:` scripts), and they run what
the pipeline promises: lint, types, tests on Redis, `toolbag check --locked`, skill evals on the simulator,
helm, docker, and nightly vendor evals only where a key exists.

actionlint and shellcheck come from ``scripts/install-test-tools.sh``; a missing one fails with that hint.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
HINT = "run scripts/install-test-tools.sh (it installs .tools/actionlint and shellcheck)"


def _tool(name: str) -> str:
    local = ROOT / ".tools" / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: {HINT}", pytrace=False)
    return found


def _actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    argv = [_tool("actionlint"), "-no-color", "-oneline", "-shellcheck", _tool("shellcheck"), "-pyflakes=",
            *map(str, files)]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def _workflow(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in job["steps"])


def test_the_workflows_pass_actionlint() -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {"ci.yml", "nightly.yml"}
    proc = _actionlint(*files)
    assert proc.returncode == 0, f"actionlint found problems:\n{proc.stdout}{proc.stderr}"


def test_actionlint_and_shellcheck_do_catch_mistakes(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\n"
        "jobs:\n"
        "  one:\n"
        "    runs-on: ubuntu-24.04\n"
        "    steps:\n"
        "      - run: echo ${{ github.event.nope.title }}\n"
        "      - run: cd $UNSET_DIR && ls\n"
        "      - if: ${{ secrets.TOKEN != '' }}\n"
        "        run: echo hi\n"
        "        timeout: 3\n",
        encoding="utf-8",
    )
    proc = _actionlint(broken)
    assert proc.returncode == 1
    assert 'unexpected key "timeout"' in proc.stdout
    assert 'context "secrets" is not allowed here' in proc.stdout  # a job cannot branch on a secret this way
    assert "shellcheck reported issue" in proc.stdout and "SC2086" in proc.stdout


def test_ci_runs_every_gate() -> None:
    ci = _workflow("ci.yml")
    assert set(ci["on"]) == {"push", "pull_request"}
    jobs = ci["jobs"]
    runs = {name: _runs(job) for name, job in jobs.items()}
    assert "ruff check" in runs["lint"] and "mypy" in runs["lint"] and "actionlint" in runs["lint"]
    assert ".venv/bin/toolbag check --locked" in runs["config"]
    assert "toolbag diff" in runs["config"]
    assert "scripts/test" in runs["tests"]
    assert "redis" in jobs["tests"]["services"]
    assert "--databases 32" in jobs["tests"]["services"]["redis"]["env"]["REDIS_ARGS"]
    assert jobs["tests"]["env"]["TOOLBAG_TEST_REDIS_URL"].startswith("redis://127.0.0.1:6379")
    assert "toolbag dev --no-demo" in runs["evals"] and "toolbag eval --provider all" in runs["evals"]
    assert "redis" in jobs["evals"]["services"]
    assert "helm lint" in runs["helm"] and "helm template" in runs["helm"]
    assert "docker build" in runs["docker"]
    for name, job in jobs.items():
        assert job.get("timeout-minutes"), f"job {name} has no timeout"


def test_nightly_calls_real_vendors_only_when_the_secret_exists() -> None:
    nightly = _workflow("nightly.yml")
    assert "schedule" in nightly["on"]
    job = nightly["jobs"]["vendor-evals"]
    providers = {entry["provider"] for entry in job["strategy"]["matrix"]["include"]}
    assert providers == {"anthropic", "openai", "gemini"}
    assert job["env"]["VENDOR_API_KEY"] == "${{ secrets[matrix.key_env] }}"
    guarded = [step for step in job["steps"] if "VENDOR_API_KEY != ''" in str(step.get("if", ""))]
    unguarded = [step for step in job["steps"] if step not in guarded]
    assert len(unguarded) == 1 and "VENDOR_API_KEY == ''" in unguarded[0]["if"]  # the notice step
    assert any("toolbag eval --provider" in str(step.get("run", "")) for step in guarded)
