"""The wheel as a packager installs it: built from this checkout, installed into a clean virtualenv outside the
repository with pip's configured package indexes and the pinned ``constraints.txt`` (as the image installs),
and run from a directory with no toolbag files.

First the core alone (what a producer installs): the starter skills are listed and a ``--skill`` job is
submitted. Then the ``all`` extra: ``toolbag dev --exit-after-demo`` runs the fleet, which also runs that job."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fleet import REPO

pytestmark = [pytest.mark.slow, pytest.mark.soak]  # a wheel build and two installs: about two minutes


def run(args: list[str], cwd: Path, env: dict[str, str], timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_the_wheel_works_from_any_directory(tmp_path: Path, redis_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOOLBAG_", "VIRTUAL_ENV", "PYTHONPATH"))}
    dist = tmp_path / "dist"
    shutil.rmtree(REPO / "build", ignore_errors=True)  # setuptools builds in the checkout: never a stale module
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)], tmp_path, env)
    shutil.rmtree(REPO / "build", ignore_errors=True)
    wheel = next(dist.glob("toolbag-*.whl"))
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(REPO / "constraints.txt")]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env["TOOLBAG_REDIS_URL"] = redis_url
    toolbag = str(venv / "bin" / "toolbag")

    run([*pip, str(wheel)], tmp_path, env)  # the core: what a producer needs
    frozen = run([str(venv / "bin" / "python"), "-m", "pip", "freeze"], tmp_path, env).stdout.lower()
    assert "celery" not in frozen and "anthropic" not in frozen, "the core pulled in the worker's dependencies"
    listed = run([toolbag, "skills", "list"], elsewhere, env).stdout
    assert "summarize" in listed and "extract-invoice" in listed, listed
    submitted = run([toolbag, "submit", "--skill", "summarize", "--json", "--input",
                     json.dumps({"text": "A packager installs the wheel and submits from another directory."})],
                    elsewhere, env)
    job_id = json.loads(submitted.stdout)["job_id"]

    run([*pip, f"{wheel}[all]"], tmp_path, env)
    run([toolbag, "dev", "--exit-after-demo", "--redis-url", redis_url], elsewhere, env, timeout_s=300)
    status = json.loads(run([toolbag, "status", job_id, "--json"], elsewhere, env).stdout)
    assert status["status"] == "succeeded", status
    assert not list(elsewhere.iterdir()), "toolbag wrote files into the working directory"
