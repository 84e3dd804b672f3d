"""``toolbag alive``: a worker's consumer loop touches its alive file; the probe fails when the loop stops
while Redis answers, and passes when Redis is the one that is gone (real worker process, real Redis)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.fleet import REPO, running_fleet


def alive(env: dict[str, str], path: Path, max_age_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "toolbag.cli", "alive", "--file", str(path), "--max-age-s",
                           str(max_age_s)], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)


def test_alive_fails_when_the_consumer_loop_stops_and_redis_answers(redis_server: str, tmp_path: Path) -> None:
    path = tmp_path / "alive"
    with running_fleet(redis_server, tmp_path, providers=("anthropic",), concurrency=2, supervisor=False,
                       env={"TOOLBAG_ALIVE_FILE": str(path)}) as fleet:
        deadline = time.monotonic() + 30
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        first = path.stat().st_mtime
        time.sleep(6)
        assert path.stat().st_mtime > first, "the consumer's loop does not touch the file"
        done = alive(fleet.env, path, 3)
        assert done.returncode == 0 and done.stdout.startswith("ok"), (done.stdout, done.stderr)
        worker = fleet.procs["worker-anthropic"]
        os.kill(worker.pid, signal.SIGSTOP)  # the loop stops turning (as a wedged consumer's does)
        try:
            time.sleep(5)
            wedged = alive(fleet.env, path, 3)
            assert wedged.returncode == 1, (wedged.stdout, wedged.stderr)
            assert wedged.stderr.startswith("error: the consumer's loop has not run for"), wedged.stderr
            redis_gone = alive({**fleet.env, "TOOLBAG_REDIS_URL": "redis://127.0.0.1:1/0"}, path, 3)
            assert redis_gone.returncode == 0 and "Redis is unreachable" in redis_gone.stdout, redis_gone.stdout
        finally:
            os.kill(worker.pid, signal.SIGCONT)
        deadline = time.monotonic() + 20
        while alive(fleet.env, path, 3).returncode != 0:
            assert time.monotonic() < deadline, "the consumer did not resume touching the file"
            time.sleep(0.5)
