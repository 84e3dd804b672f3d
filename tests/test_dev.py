"""``toolbag dev`` picks its Redis as asked: the one TOOLBAG_REDIS_URL names if it answers, a redis-server started
on exactly the local port it names if that port is free, else a private redis-server; never one nobody named."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from tests.fleet import REPO
from toolbag.devfleet.harness import free_port, port_free, terminate


def dev_env(**extra: str) -> dict[str, str]:
    """This environment without vendor keys or toolbag settings (the embedded defaults, the simulator)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLBAG_") and not k.endswith("_API_KEY")}
    return {**env, "COLUMNS": "200", "PYTHONUNBUFFERED": "1", **extra}


@contextmanager
def toolbag_dev(tmp: Path, env: dict[str, str], *args: str) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """``toolbag dev`` as a subprocess, its output in a file; stopped (SIGTERM, as on Ctrl-C) on exit."""
    out = tmp / "dev.out"
    with out.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "toolbag.cli", "dev", *args], env=env, cwd=REPO,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc, out
    finally:
        terminate(proc, grace_s=60)


def wait_for(out: Path, proc: subprocess.Popen[bytes], pattern: str, timeout_s: float = 120.0) -> re.Match[str]:
    deadline = time.monotonic() + timeout_s
    while not (found := re.search(pattern, out.read_text(errors="replace"))):
        assert proc.poll() is None, f"toolbag dev exited {proc.returncode}:\n{out.read_text(errors='replace')}"
        assert time.monotonic() < deadline, f"no {pattern!r} within {timeout_s:g} s:\n{out.read_text()}"
        time.sleep(0.1)
    return found


def stop(proc: subprocess.Popen[bytes], out: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, out.read_text(errors="replace")


def test_starts_redis_on_the_free_port_toolbag_redis_url_names_and_runs_the_demo(tmp_path: Path) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with toolbag_dev(tmp_path, dev_env(TOOLBAG_REDIS_URL=url), "--exit-after-demo") as (proc, out):
        assert proc.wait(timeout=240) == 0, out.read_text(errors="replace")
    text = out.read_text()
    assert f"started redis-server on port {port} for {url}" in text
    assert "demo workload" in text and "succeeded" in text
    assert port_free(port), "the redis-server it started stops with the fleet"
    logs = re.search(r"(/\S*toolbag-dev-[^\s│]+)", text)
    assert logs and not Path(logs.group(1)).exists(), "its temporary logs folder is removed on a clean exit"


def test_uses_the_redis_toolbag_redis_url_names_when_it_answers(redis_url: str, tmp_path: Path) -> None:
    with toolbag_dev(tmp_path, dev_env(TOOLBAG_REDIS_URL=redis_url), "--no-demo") as (proc, out):
        wait_for(out, proc, "fleet running")
        wait_for(out, proc, r"\n  \S*toolbag submit summarize --input")
        assert f"using the Redis at {redis_url}" in out.read_text()
        assert f"  export TOOLBAG_REDIS_URL={redis_url}\n" in out.read_text()
        given = redis.Redis.from_url(redis_url)
        deadline = time.monotonic() + 120
        while not given.zcard("tb:workers"):
            assert time.monotonic() < deadline, "no worker announced itself in the Redis asked for"
            time.sleep(0.1)
        stop(proc, out)


def test_without_toolbag_redis_url_starts_a_private_redis_server(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    with toolbag_dev(tmp_path, dev_env(), "--no-demo", "--logs-dir", str(logs)) as (proc, out):
        started = wait_for(out, proc, r"started a private redis-server at redis://127\.0\.0\.1:(\d+)/0")
        port = int(started.group(1))
        wait_for(out, proc, "fleet running")
        assert redis.Redis(port=port).ping()
        stop(proc, out)
    assert port_free(port)
    assert (logs / "supervisor.log").is_file(), "--logs-dir keeps the logs"


def test_refuses_a_redis_url_that_does_not_answer_on_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        url = f"redis://127.0.0.1:{busy.getsockname()[1]}/0"
        with toolbag_dev(tmp_path, dev_env(TOOLBAG_REDIS_URL=url), "--no-demo") as (proc, out):
            assert proc.wait(timeout=60) == 2
    errors = [line for line in out.read_text().splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and f"No Redis answers at {url}" in errors[0], out.read_text()
