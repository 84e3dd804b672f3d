"""Two fleets on ONE Redis database, told apart only by their key prefix: each serves, finds and counts only its
own jobs, its messages stay under its prefix, and every key either fleet writes starts with its prefix."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import redis

from tests.fleet import Fleet, running_fleet
from toolbag.client import Job
from toolbag.jobs import JobNotFound, JobStatus
from toolbag.store.messages import envelope_pointer, unacked_pointer

PROVIDER = "gemini"
MODEL = "gemini-lite"


@dataclass
class Pair:
    a: Fleet
    b: Fleet
    keys_before: set[bytes]
    submitted: dict[str, list[str]] = field(default_factory=dict)  # key prefix -> ids of the jobs submitted to it

    def submit(self, fleet: Fleet, text: str, model: str = MODEL) -> Job:
        job = fleet.client.submit("summarize", input={"text": text}, tier="standard", candidates=(model,))
        self.submitted.setdefault(prefix(fleet), []).append(job.id)
        return job


def prefix(fleet: Fleet) -> str:
    return fleet.config.fleet.key_prefix


def worker_name(fleet: Fleet) -> str:
    """The name the fleet's one worker process serves under (``workers.runtime``)."""
    return f"{PROVIDER}@{socket.gethostname()}:{fleet.procs[f'worker-{PROVIDER}'].pid}"


def field_of(fleet: Fleet, job_id: str, name: str) -> str:
    """One field of the job's record hash, as stored."""
    store = fleet.client.store
    return str(store.redis.hget(store.keys.job(job_id), name).decode())


def values_under(client: redis.Redis, key_prefix: str) -> str:
    """Every key under ``key_prefix`` with its value, as one text."""
    out = []
    for key in client.scan_iter(match=f"{key_prefix}*", count=1000):
        kind = client.type(key).decode()
        value: object = kind
        if kind == "string":
            value = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind in ("list", "zset"):
            value = (client.lrange if kind == "list" else client.zrange)(key, 0, -1)
        elif kind == "set":
            value = client.smembers(key)
        elif kind == "stream":
            value = client.xrange(key)
        out.append(f"{key!r} {value!r}")
    return "\n".join(out)


@pytest.fixture(scope="module")
def pair(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    db = redis.Redis.from_url(redis_server)
    keys_before = set(db.scan_iter(count=1000))
    with running_fleet(redis_server, tmp_path_factory.mktemp("a"), providers=(PROVIDER,)) as a, \
            running_fleet(redis_server, tmp_path_factory.mktemp("b"), providers=(PROVIDER,)) as b:
        assert prefix(a) != prefix(b)
        pair = Pair(a, b, keys_before)
        jobs = [pair.submit(a, f"for A {i}") for i in range(6)] + [pair.submit(b, f"for B {i}") for i in range(4)]
        assert all(job.result(60).ok for job in jobs)
        yield pair
    db.close()


def test_each_fleet_sees_only_its_own_worker(pair: Pair) -> None:
    for fleet in (pair.a, pair.b):
        assert fleet.client.store.live_workers(60) == [f"{PROVIDER}|{worker_name(fleet)}"]
    assert worker_name(pair.a) != worker_name(pair.b)


def test_jobs_are_served_only_by_the_fleet_they_were_submitted_to(pair: Pair) -> None:
    for fleet in (pair.a, pair.b):
        for job_id in pair.submitted[prefix(fleet)]:
            result = Job(fleet.client, job_id).result(5)
            served_by = {a["worker"] for a in result.attempts if a["type"] == "attempt"}
            assert served_by == {worker_name(fleet)}, result.attempts
            assert field_of(fleet, job_id, "worker") == worker_name(fleet)


def test_a_fleet_does_not_find_the_other_fleets_jobs(pair: Pair) -> None:
    for mine, other in ((pair.a, pair.b), (pair.b, pair.a)):
        for job_id in pair.submitted[prefix(other)]:
            with pytest.raises(JobNotFound):
                mine.client.store.get(job_id)
            assert job_id not in values_under(mine.client.store.redis, prefix(mine))


def test_messages_stay_under_their_fleets_prefix(pair: Pair) -> None:
    a, b = pair.a, pair.b
    store = a.client.store
    running = pair.submit(a, "[[sim:hang:2@gemini-*]] slow, so its message sits in A's unacked hash")
    deadline = time.monotonic() + 20
    while running.status() is not JobStatus.RUNNING:
        assert time.monotonic() < deadline, "A's worker never started the job"
        time.sleep(0.02)
    delivered = {p[1] for p in map(unacked_pointer, store.redis.hgetall(store.keys.kombu_unacked).values()) if p}
    # a threads worker keeps the message unacked for the whole attempt; an async worker acknowledges it once the
    # attempt is on its event loop (the lease is the truth from there): either way only A's jobs are there
    assert delivered <= {running.id, *pair.submitted[prefix(a)]}
    stranded = pair.submit(a, "for a model no worker serves", model="gpt-luna")  # its message waits in A's queue
    queue = field_of(a, stranded.id, "queue")
    assert [envelope_pointer(raw) for raw in store.redis.lrange(store.keys.queue(queue), 0, -1)] == [
        (stranded.id, field_of(a, stranded.id, "token"))]
    other = b.client.store
    assert other.redis.llen(other.keys.queue(queue)) == 0
    assert not other.redis.hlen(other.keys.kombu_unacked)
    b_values = values_under(other.redis, prefix(b))
    assert running.id not in b_values and stranded.id not in b_values
    assert a.client.cancel(stranded.id)
    assert running.result(30).ok


def test_each_fleets_stats_count_only_its_own_jobs(pair: Pair) -> None:
    for fleet in (pair.a, pair.b):
        store = fleet.client.store
        counters = {k.decode(): int(v) for k, v in store.redis.hgetall(store.keys.stats).items()}
        jobs = len(pair.submitted[prefix(fleet)])
        assert sum(v for k, v in counters.items() if k.startswith("submitted|")) == jobs, counters
        assert sum(v for k, v in counters.items() if k.startswith("finished|")) == jobs, counters


def test_every_key_either_fleet_wrote_starts_with_its_prefix(pair: Pair) -> None:
    db = pair.a.client.store.redis
    written = set(db.scan_iter(count=1000)) - pair.keys_before
    prefixes = (prefix(pair.a).encode(), prefix(pair.b).encode())
    assert {k for k in written if k.startswith(prefixes[0])} and {k for k in written if k.startswith(prefixes[1])}
    assert sorted(k for k in written if not k.startswith(prefixes)) == []
