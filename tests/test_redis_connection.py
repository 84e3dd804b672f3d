"""One Redis URL for every connection: plain and Sentinel forms, errors that name the problem and never the
password; orphaned decision messages reclaimed; a worker started while Redis is away waits for it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fleet import REPO, fleet_config_dict
from tests.redis_nodes import RedisNode
from toolbag.config import parse_config
from toolbag.jobs import JobStatus
from toolbag.store import JobStore, Keys
from toolbag.store.connection import (
    RedisUrlError,
    celery_broker,
    describe,
    parse_redis_url,
    redis_client,
)
from toolbag.store.messages import DECIDE_TASK, decide_pointer
from toolbag.store.orphans import orphaned_decisions, reclaim_decision


def test_plain_url_is_used_as_given() -> None:
    address = parse_redis_url("redis://:pw@10.0.0.5:6380/3")
    assert not address.is_sentinel
    assert celery_broker("redis://:pw@10.0.0.5:6380/3") == ("redis://:pw@10.0.0.5:6380/3", {})


def test_sentinel_url_names_sentinels_master_and_db() -> None:
    url = "redis+sentinel://user:s3cret@s1:26380,s2,10.0.0.7:26381/mymaster/2"
    address = parse_redis_url(url)
    assert address.sentinels == (("s1", 26380), ("s2", 26379), ("10.0.0.7", 26381))
    assert (address.master_name, address.db, address.username, address.password) == ("mymaster", 2, "user", "s3cret")
    assert "s3cret" not in repr(address)
    broker, options = celery_broker(url)
    assert broker == ("sentinel://user:s3cret@s1:26380/2;sentinel://user:s3cret@s2:26379/2;"
                      "sentinel://user:s3cret@10.0.0.7:26381/2")
    assert options["master_name"] == "mymaster"
    client = redis_client(url)  # no connection is made until a command
    assert client.connection_pool.service_name == "mymaster"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("url", "problem"), [
    ("http://localhost:6379", "the scheme must be"),
    ("redis+sentinel://:pw@s1:26379", "no master name"),
    ("redis+sentinel://:pw@s1:x/mymaster", "is not host:port"),
    ("redis+sentinel://:pw@s1/mymaster/zero", "/<master-name>[/<db number>]"),
    ("redis://:pw@localhost:6379/notadb", "redis url"),
])
def test_bad_urls_name_the_problem_and_hide_the_password(url: str, problem: str) -> None:
    with pytest.raises(RedisUrlError) as err:
        parse_redis_url(url)
    assert problem in str(err.value)
    assert "pw@" not in str(err.value)


def test_describe_hides_only_the_password() -> None:
    assert describe("redis://user:hunter2@h:1/0") == "redis://user:***@h:1/0"
    assert describe("redis://h:1/0") == "redis://h:1/0"
    assert describe(":hunter2@h:1") == ":***@h:1"  # no scheme: still never shown


def test_orphaned_decision_goes_back_on_the_supervisor_queue(redis_url: str) -> None:
    """A decision message delivered to a supervisor that died: back on the queue once older than the bound,
    dropped from kombu's unacked set; one for a job that moved on is dropped and not re-sent."""
    store = JobStore.from_url(redis_url, Keys("orph:"))
    r = store.redis
    now_s = store.now_ms() / 1000
    from toolbag.store.messages import decide_message

    for job_id, status, token in (("j-deciding", "deciding", "3"), ("j-done", "succeeded", "4")):
        r.hset(store.keys.job(job_id), mapping={"id": job_id, "status": status, "token": token})
        raw = f'[{decide_message(job_id, "3")}, "", "toolbag.supervisor"]'
        r.hset(store.keys.kombu_unacked, f"tag-{job_id}", raw)
        r.zadd(store.keys.kombu_unacked_index, {f"tag-{job_id}": now_s - 30})
    assert orphaned_decisions(store, older_than_s=60) == []
    found = sorted(orphaned_decisions(store, older_than_s=10))
    assert found == [("tag-j-deciding", "j-deciding", "3"), ("tag-j-done", "j-done", "3")]
    assert [reclaim_decision(store, *row) for row in found] == [True, False]
    assert r.hlen(store.keys.kombu_unacked) == 0 and r.zcard(store.keys.kombu_unacked_index) == 0
    queued = [decide_pointer(m) for m in r.lrange(store.keys.supervisor_queue, 0, -1)]
    assert queued == [("j-deciding", "3")], DECIDE_TASK
    assert JobStatus(store.get("j-deciding").status) is JobStatus.DECIDING


def test_worker_started_while_redis_is_away_waits_for_it(tmp_path: Path) -> None:
    """One line while Redis is away, then the worker starts by itself when it comes."""
    node = RedisNode(tmp_path / "redis")
    env = {"TOOLBAG_REDIS_URL": f"{node.url}/0", "TOOLBAG_METRICS_PORT": "0", "PYTHONUNBUFFERED": "1",
           "PATH": "/usr/bin:/bin"}
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "toolbag.cli", "worker", "--provider", "local", "-c", "1"],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "redis is unavailable" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        time.sleep(1.5)
        text = log.read_text()
        assert text.count("redis is unavailable") == 1 and "Traceback" not in text, text
        node.start()
        deadline = time.monotonic() + 60
        while "worker started" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        assert "redis is back" in log.read_text() and "worker started" in log.read_text(), log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        node.stop()


RUN_BROKEN_WORKER = """
from celery import Celery, bootsteps
from workers.run import run_worker

class Broken(bootsteps.StartStopStep):
    def start(self, worker):
        raise RuntimeError("an unrecoverable error")

app = Celery("broken", broker="memory://", set_as_current=False)
app.conf.worker_redirect_stdouts = False
app.steps["worker"].add(Broken)
raise SystemExit(run_worker(app, ["worker", "-P", "solo", "--without-gossip", "--without-mingle",
                                  "--without-heartbeat", "-l", "critical"]))
"""


def test_a_worker_that_dies_of_an_unrecoverable_error_exits_non_zero() -> None:
    """Celery's ``worker_main`` dropped the exit code (a dead worker exited 0); ``run_worker`` keeps it."""
    done = subprocess.run([sys.executable, "-c", RUN_BROKEN_WORKER], cwd=REPO, capture_output=True, timeout=120)
    assert done.returncode == 1, done.stderr.decode()[-2000:]


def test_the_front_door_answers_503_retryable_while_redis_is_away() -> None:
    """The SDKs see a 503 they retry (``x-should-retry: true``), never a 500, while Redis is unreachable."""
    import anthropic
    import openai
    from starlette.testclient import TestClient

    from toolbag.api.app import create_app
    from toolbag.client import Client
    from toolbag.devfleet.harness import free_port

    config = parse_config(fleet_config_dict("http://127.0.0.1:9"))
    app = create_app(Client(config, f"redis://127.0.0.1:{free_port()}/0"))
    with TestClient(app, raise_server_exceptions=False) as http:
        with pytest.raises(openai.InternalServerError) as oa:
            openai.OpenAI(base_url="http://testserver/v1", api_key="tbk-any", max_retries=0, http_client=http) \
                .chat.completions.create(model="summarize", messages=[{"role": "user", "content": "hi"}])
        assert oa.value.status_code == 503 and oa.value.response.headers["x-should-retry"] == "true"
        with pytest.raises(anthropic.InternalServerError) as an:
            anthropic.Anthropic(base_url="http://testserver", api_key="tbk-any", max_retries=0, http_client=http) \
                .messages.create(model="summarize", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
        assert an.value.status_code == 503
