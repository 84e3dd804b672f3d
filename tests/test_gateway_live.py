"""The live policy in Redis (publish rules, revocation seen on the next check, local file published when
newer) and the audit sinks and readers, against a real Redis."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from toolbag.gateway.audit import (
    AuditError,
    AuditFilter,
    AuditRecord,
    FanoutAudit,
    JsonlAuditSink,
    RedisAuditReader,
    RedisAuditSink,
    args_digest,
    read_jsonl,
)
from toolbag.gateway.live import LivePolicy, PolicyStore
from toolbag.gateway.policy import PolicyError, Subject, parse_policy
from toolbag.store.keys import Keys

WHO = Subject("analyst", "anthropic", "claude-haiku", "claude-haiku-5-5")


def policy_text(version: int, tools: str = '["math.eval"]') -> str:
    return f"version: {version}\nrules:\n  - {{id: grant, agents: [analyst], tools: {tools}}}\n"


@pytest.fixture
def store(redis_url: str) -> Iterator[PolicyStore]:
    client = redis.Redis.from_url(redis_url)
    yield PolicyStore(client, Keys(f"lv{uuid.uuid4().hex[:6]}:"))
    client.close()


def test_publish_rules(store: PolicyStore) -> None:
    v1, v2 = parse_policy(policy_text(1)), parse_policy(policy_text(2, '["clock.now"]'))
    assert store.publish(v1).status == "published"
    assert store.publish(v1).status == "unchanged"
    assert store.publish(v2).status == "published"
    refused = store.publish(v1)
    assert (refused.status, refused.ok, refused.live_version) == ("older", False, 2)
    same_version_other_text = parse_policy(policy_text(2, '["kv.get"]'))
    assert store.publish(same_version_other_text).status == "conflict"
    assert store.publish(v1, force=True).status == "published"  # a deliberate rollback
    live = store.load()
    assert live is not None and live.version == 1 and live.digest == v1.digest
    info = store.info()
    assert info["version"] == "1" and "text" not in info and int(info["published_ms"]) > 0
    publishes = [e for _, e in RedisAuditReader(store.client, store.keys).query(AuditFilter(kinds=("policy",)))]
    assert [e["policy_version"] for e in publishes] == ["1", "2", "1"]  # newest first
    assert "forced" in publishes[0]["reason"] and "replaced version 2" in publishes[0]["reason"]
    with pytest.raises(PolicyError, match="empty"):
        store.publish(parse_policy("version: 1\n").__class__.empty())


def test_a_revocation_is_seen_on_the_next_check(store: PolicyStore) -> None:
    live = LivePolicy(store, None)
    assert live.current().decide(WHO, "math.eval", {}).rule_id == ""  # nothing published: everything denied
    store.publish(parse_policy(policy_text(1)))
    assert live.current().decide(WHO, "math.eval", {}).allowed
    store.publish(parse_policy(policy_text(2, '["clock.now"]')))
    assert not live.current().decide(WHO, "math.eval", {}).allowed  # no restart, no wait
    # a copy may be reused for offers within max_age_s, never for calls
    store.publish(parse_policy(policy_text(3)))
    assert live.current(max_age_s=60).version == 2
    assert live.current().version == 3


def test_a_newer_local_file_is_published_and_an_older_one_is_not(store: PolicyStore, tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(policy_text(5))
    live = LivePolicy(store, path)
    live.sync_file()
    assert store.load() is not None and store.load().version == 5  # type: ignore[union-attr]
    path.write_text(policy_text(6, '["clock.now"]'))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert live.current().version == 6  # the edit was noticed and published on this check
    store.publish(parse_policy(policy_text(9)))
    path.write_text(policy_text(7, '["kv.get"]') + "# stale host\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2_000_000))
    assert live.current().version == 9  # a stale file cannot roll the fleet back


def test_an_invalid_local_file_fails_at_start_and_is_ignored_later(store: PolicyStore, tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\nrules:\n  - {id: x, tools: [a]}\n")
    with pytest.raises(PolicyError, match="agents"):
        LivePolicy(None, path).sync_file()
    with pytest.raises(PolicyError, match="agents"):
        LivePolicy(store, path).sync_file()
    with pytest.raises(PolicyError, match="no such"):
        LivePolicy(store, tmp_path / "missing.yaml").sync_file()
    path.write_text(policy_text(3))
    running = LivePolicy(store, path)
    running.sync_file()
    path.write_text("version: [broken")  # a bad edit on a running worker: the live policy keeps applying
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert running.current().version == 3
    path.write_text(policy_text(1))
    live = LivePolicy(None, path)
    assert live.current().decide(WHO, "math.eval", {}).allowed


def test_unreachable_redis_is_a_policy_error(tmp_path: Path) -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    with pytest.raises(PolicyError, match="unavailable"):
        LivePolicy(PolicyStore(dead, Keys()), None).current()


# ------------------------------------------------------------------------------------------ audit


def record(**fields: object) -> AuditRecord:
    return AuditRecord(kind="tool", event="decision", **fields)  # type: ignore[arg-type]


def test_redis_sink_and_reader(store: PolicyStore) -> None:
    sink = RedisAuditSink(store.client, store.keys)
    for n in range(30):
        sink.write(record(agent="a" if n % 2 else "b", tool=f"t.{n % 3}", decision="allow" if n % 5 else "deny",
                          job_id=f"job{n}", step=n))
    store.client.xadd(store.keys.audit, {"kind": "completed", "job": "job7"})  # a fleet record
    reader = RedisAuditReader(store.client, store.keys)
    tail = reader.tail(5, AuditFilter(kinds=("tool",)))
    assert [e["step"] for _, e in tail] == ["25", "26", "27", "28", "29"]
    denied = [e for _, e in reader.query(AuditFilter(decision="deny", agent="b"))]
    assert [e["step"] for e in denied] == ["20", "10", "0"] and all(e["decision"] == "deny" for e in denied)
    assert len(list(reader.query(AuditFilter(tool="t.[12]"), limit=100))) == 20
    assert len(list(reader.query(AuditFilter(job_id="job7")))) == 2  # the gateway's and the fleet's record
    now_ms = int(time.time() * 1000)
    assert list(reader.query(AuditFilter(since_ms=now_ms + 60_000))) == []
    assert len(list(reader.query(AuditFilter(until_ms=now_ms + 60_000), limit=1000))) == 31
    last = reader.last_id()
    sink.write(record(agent="late"))
    assert [e["agent"] for _, e in reader.follow(last, block_ms=100)] == ["late"]


def test_query_pages_through_a_long_stream(store: PolicyStore) -> None:
    pipe = store.client.pipeline()
    for n in range(2500):
        pipe.xadd(store.keys.audit, record(step=n, agent="x" if n == 3 else "y").fields())  # type: ignore[arg-type]
    pipe.execute()
    reader = RedisAuditReader(store.client, store.keys)
    assert [e["step"] for _, e in reader.query(AuditFilter(agent="x"))] == ["3"]
    assert len(list(reader.query(AuditFilter(), limit=5000))) == 2500


def test_jsonl_sink_fanout_and_failures(store: PolicyStore, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    fan = FanoutAudit([RedisAuditSink(store.client, store.keys), JsonlAuditSink(path)])
    fan.write(record(agent="a", args_digest=args_digest({"b": 1, "a": [2]})))
    fan.write(record(agent="b", decision="deny"))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["agent"] for r in lines] == ["a", "b"] and lines[0]["ts_ms"]
    assert lines[0]["args_digest"] == args_digest({"a": [2], "b": 1})
    assert [r["agent"] for r in read_jsonl(path, AuditFilter(decision="deny"))] == ["b"]
    broken = FanoutAudit([RedisAuditSink(store.client, store.keys), JsonlAuditSink(tmp_path / "no" / "dir.jsonl")])
    with pytest.raises(AuditError, match="dir.jsonl"):
        broken.write(record(agent="c"))
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    with pytest.raises(AuditError, match="audit stream"):
        RedisAuditSink(dead, store.keys).write(record(agent="d"))
