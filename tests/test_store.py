"""The job store's transitions against a real Redis: fencing, idempotency, leases, notification."""

from __future__ import annotations

import json
import threading
import time

import pytest
import redis

from toolbag.bulk.pipeline import gone_result
from toolbag.jobs import AttemptRecord, DecisionRecord, JobStatus
from toolbag.store import JobStore, NewJob
from toolbag.store.keys import Keys


@pytest.fixture
def store(redis_url: str) -> JobStore:
    return JobStore(redis.Redis.from_url(redis_url), Keys("t:"), job_ttl_s=60)


def new_job(job_id: str = "j1", key: str | None = None) -> NewJob:
    return NewJob(job_id=job_id, queue="openai.standard", deadline_s=60, idempotency_key=key, caller="c",
                  fields={"capability": "summarize", "tier": "standard", "input": "{}", "model": "gpt-luna",
                          "provider": "openai", "queue": "openai.standard", "plan": '["gpt-luna"]'})


def record(outcome: str = "ok") -> str:
    return AttemptRecord(n=1, model="gpt-luna", provider="openai", outcome=outcome).to_json()


def test_submit_writes_job_and_exactly_one_message(store: JobStore) -> None:
    created, job_id = store.submit(new_job())
    assert created and job_id == "j1"
    job = store.get("j1")
    assert job.status == "queued" and job.token == "1"
    messages = store.redis.lrange(store.keys.queue("openai.standard"), 0, -1)
    assert len(messages) == 1
    envelope = json.loads(messages[0])
    assert envelope["headers"]["task"] == "toolbag.attempt"
    assert store.queue_stats("openai.standard")[0] == 1


def test_idempotency_key_returns_the_same_job_without_a_second_message(store: JobStore) -> None:
    assert store.submit(new_job("a", key="k")) == (True, "a")
    assert store.submit(new_job("b", key="k")) == (False, "a")
    assert store.redis.llen(store.keys.queue("openai.standard")) == 1
    assert not store.redis.exists(store.keys.job("b"))


@pytest.mark.parametrize(("ttl_s", "deadline_ms"), [
    (9_300_000_000_000_000, 60_000), (0, 60_000), ("nan", 60_000), ("inf", 60_000), (60, "nan"), (60, "inf"),
    (60, 0), (60, 10**17), (60, "1.5"),
])
def test_submit_refuses_bad_numbers_before_writing_anything(store: JobStore, ttl_s: object, deadline_ms: object
                                                            ) -> None:
    """An idempotency ttl or a deadline Redis cannot keep must not leave a queued job without its message."""
    keys, argv = store._submit_args([new_job(key="k")])
    argv[0], argv[4] = ttl_s, deadline_ms  # the batch's ttl; the first job's deadline
    with pytest.raises(redis.ResponseError, match="submit: the"):
        store._submit(keys=keys, args=argv)
    assert store.redis.dbsize() == 0
    with pytest.raises(ValueError, match="job_ttl_s"):
        JobStore(store.redis, store.keys, job_ttl_s=9_300_000_000_000_000)


def test_a_batch_with_one_bad_deadline_writes_none_of_its_jobs(store: JobStore) -> None:
    keys, argv = store._submit_args([new_job("a"), new_job("b")])
    second_deadline = argv.index("b") + 3
    argv[second_deadline] = "nan"
    with pytest.raises(redis.ResponseError, match="submit: the deadline"):
        store._submit(keys=keys, args=argv)
    assert store.redis.dbsize() == 0


@pytest.mark.parametrize("shared", ["queue", "waiting", "deadlines", "stats", "idempotency"])
def test_a_batch_meeting_a_key_of_another_type_writes_none_of_its_jobs(store: JobStore, shared: str) -> None:
    """A shared key of the wrong type is found before the first write: no job of the batch is left without its
    message or its index entries."""
    key = {"queue": store.keys.queue("openai.standard"), "waiting": store.keys.waiting("openai.standard"),
           "deadlines": store.keys.deadlines, "stats": store.keys.stats,
           "idempotency": store.keys.idem("c", "late")}[shared]
    if shared == "idempotency":
        store.redis.rpush(key, "not mine")
    else:
        store.redis.set(key, "not mine")
    with pytest.raises(redis.ResponseError, match="nothing was submitted"):
        store.submit_many([new_job("a"), new_job("b"), new_job("c", key="late")])
    assert store.redis.dbsize() == 1


def test_submit_many_is_the_same_as_submitting_one_by_one(store: JobStore) -> None:
    """Batched script calls (shared clock read, one write per shared key) leave what one submit per job leaves:
    every job, its message in order, its waiting and deadline entries, the counters; an idempotency key given
    twice in one batch makes one job."""
    jobs = [new_job(f"m{i}") for i in range(230)]
    jobs[7] = new_job("m7", key="same")
    jobs[150] = new_job("m150", key="same")  # in a later script call than m7
    jobs[8] = new_job("m8", key="twice")
    jobs[9] = new_job("m9", key="twice")  # in the same call as m8
    store.redis.config_resetstat()
    replies = store.submit_many(jobs)
    stats = store.redis.info("commandstats")
    assert int(stats["cmdstat_evalsha"]["calls"]) == 3  # 100 jobs per call
    assert int(stats["cmdstat_time"]["calls"]) == 3
    assert replies[150] == (False, "m7") and replies[9] == (False, "m8")
    created = [job_id for ok, job_id in replies if ok]
    assert len(created) == 228
    queue = store.keys.queue("openai.standard")
    pointers = [json.loads(m)["headers"]["argsrepr"] for m in reversed(store.redis.lrange(queue, 0, -1))]
    assert pointers == [repr([job_id, "1"]) for job_id in created]  # pushed in the order given
    assert store.redis.zcard(store.keys.waiting("openai.standard")) == 228
    assert store.redis.zcard(store.keys.deadlines) == 228
    assert store.redis.hget(store.keys.stats, "submitted|standard|summarize") == b"228"
    assert not store.redis.exists(store.keys.job("m150")) and not store.redis.exists(store.keys.job("m9"))
    assert {store.get(job_id).status for job_id in created} == {JobStatus.QUEUED}


def test_claim_is_fenced_by_token_and_status(store: JobStore) -> None:
    store.submit(new_job())
    assert store.claim("j1", "2", "openai.standard", 5, "w") is None  # wrong token
    claimed = store.claim("j1", "1", "openai.standard", 5, "w")
    assert claimed is not None and claimed.status == "running"
    assert store.claim("j1", "1", "openai.standard", 5, "w2") is None  # duplicate delivery
    assert store.queue_stats("openai.standard")[0] == 0


def test_complete_once_and_wake_waiter(store: JobStore) -> None:
    store.submit(new_job())
    store.claim("j1", "1", "openai.standard", 5, "w")
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(store.wait("j1", 5)))
    waiter.start()
    time.sleep(0.1)
    assert store.complete("j1", "1", "out", {"model": "gpt-luna"}, record()).ok
    waiter.join(5)
    assert woke == [True]
    second = store.complete("j1", "1", "again", {}, record())
    assert not second.ok and second.status == "succeeded"
    assert store.get("j1").output == json.dumps("out")
    assert store.wait("j1", 0.1)  # a later waiter wakes at once: the token is kept
    assert store.redis.zcard(store.keys.leases) == 0


def test_end_attempt_pushes_decision_and_dispatch_requeues_with_new_token(store: JobStore) -> None:
    store.submit(new_job())
    store.redis.delete(store.keys.queue("openai.standard"))
    store.claim("j1", "1", "openai.standard", 5, "w")
    assert store.end_attempt("j1", "1", "refused", record("refused")).ok
    assert store.get("j1").status == "deciding"
    assert store.redis.llen(store.keys.supervisor_queue) == 1
    assert not store.end_attempt("j1", "1", "refused", record("refused")).ok  # fenced
    done = store.dispatch("j1", "1", model="claude-haiku", provider="anthropic", queue="anthropic.standard",
                          record_json=DecisionRecord("reroute", "refused", "claude-haiku").to_json())
    assert done.ok
    job = store.get("j1")
    assert (job.status, job.token, job.model) == ("queued", "2", "claude-haiku")
    assert store.redis.llen(store.keys.queue("anthropic.standard")) == 1
    assert store.claim("j1", "1", "anthropic.standard", 5, "w") is None  # old token is stale
    assert store.claim("j1", "2", "anthropic.standard", 5, "w") is not None
    kinds = [h["type"] for h in store.history("j1")]
    assert kinds == ["attempt", "decision"]


def test_delayed_dispatch_then_promote_once(store: JobStore) -> None:
    store.submit(new_job())
    store.claim("j1", "1", "openai.standard", 5, "w")
    store.end_attempt("j1", "1", "rate_limited", record("rate_limited"))
    store.redis.delete(store.keys.queue("openai.standard"))
    assert store.dispatch("j1", "1", model="gpt-luna", provider="openai", queue="openai.standard",
                          record_json="{}", delay_s=0.2).ok
    assert store.get("j1").status == "waiting"
    assert store.due_delayed() == []
    time.sleep(0.25)
    assert store.due_delayed() == ["j1"]
    assert store.promote("j1").ok
    assert not store.promote("j1").ok  # a second supervisor finds nothing to do
    assert store.redis.llen(store.keys.queue("openai.standard")) == 1
    assert store.get("j1").status == "queued"


def test_expired_lease_is_found_and_renewal_is_fenced(store: JobStore) -> None:
    store.submit(new_job())
    store.claim("j1", "1", "openai.standard", 0.1, "w")
    time.sleep(0.15)
    assert store.expired_leases() == [("j1", "1")]
    assert store.renew_leases(["j1:1"], 5) == []  # still there: renewed
    assert store.expired_leases() == []
    store.end_attempt("j1", "1", "lost", record("lost"))
    assert store.renew_leases(["j1:1"], 5) == ["j1:1"]  # gone: reported, not resurrected
    assert store.redis.zcard(store.keys.leases) == 0


def test_finish_cancels_any_non_terminal_job_and_is_final(store: JobStore) -> None:
    store.submit(new_job())
    done = store.finish("j1", JobStatus.CANCELLED, "by caller", "{}")
    assert done.ok
    assert store.claim("j1", "1", "openai.standard", 5, "w") is None
    assert not store.finish("j1", JobStatus.EXPIRED, "late", "{}").ok
    assert store.get("j1").status == "cancelled"
    assert store.queue_stats("openai.standard")[0] == 0


def test_orphaned_delivery_is_reclaimed_with_a_new_token(store: JobStore) -> None:
    """A worker died after kombu delivered the message but before the claim: the job is re-enqueued."""
    import time as _time

    store.submit(new_job())
    message = store.redis.rpop(store.keys.queue("openai.standard"))  # what the dead worker's BRPOP took
    store.redis.hset(store.keys.kombu_unacked, "tag-1", json.dumps([json.loads(message), "", "openai.standard"]))
    store.redis.zadd(store.keys.kombu_unacked_index, {"tag-1": _time.time() - 60})
    assert store.orphaned_deliveries(older_than_s=120) == []
    orphans = store.orphaned_deliveries(older_than_s=10)
    assert orphans == [("tag-1", "openai.standard", "j1", "1")]
    assert store.reclaim(*orphans[0], record_json="{}").ok
    assert store.get("j1").token == "2" and store.redis.llen(store.keys.queue("openai.standard")) == 1
    assert not store.redis.exists(store.keys.kombu_unacked_index, store.keys.kombu_unacked)
    assert store.claim("j1", "1", "openai.standard", 5, "w") is None
    assert store.claim("j1", "2", "openai.standard", 5, "w") is not None


def test_vanished_message_is_found_only_when_it_is_nowhere(store: JobStore) -> None:
    """A job popped off its queue by a worker that died before kombu recorded the delivery is found; jobs
    still on the list, delivered (unacked) or no longer queued are not."""
    import time as _time

    queue = "openai.standard"
    for job_id in ("j1", "j2", "j3"):
        store.submit(new_job(job_id))
        _time.sleep(0.005)  # distinct push times (ms)
    assert store.vanished_pointers(queue, older_than_s=0) == []  # all three on the list
    popped = store.redis.rpop(store.keys.queue(queue))  # j1: taken by a worker that died at once
    assert store.vanished_pointers(queue, older_than_s=0) == [("j1", "1")]
    assert store.vanished_pointers(queue, older_than_s=60) == []  # too young to judge
    delivered = store.redis.rpop(store.keys.queue(queue))  # j2: delivered and recorded, not yet claimed
    store.redis.hset(store.keys.kombu_unacked, "tag-2", json.dumps([json.loads(delivered), "", queue]))
    store.redis.zadd(store.keys.kombu_unacked_index, {"tag-2": _time.time()})
    assert store.vanished_pointers(queue, older_than_s=0) == [("j1", "1")]
    store.redis.rpush(store.keys.queue(queue), popped)  # a stale copy of j1's message comes back to the tail ...
    assert store.reclaim("", queue, "j1", "1", record_json="{}").ok  # ... after j1 was re-pushed (token 2)
    assert store.vanished_pointers(queue, older_than_s=0) == []  # stale tail: no bound, no guess
    store.redis.rpop(store.keys.queue(queue))
    assert store.vanished_pointers(queue, older_than_s=0) == []  # j1 (token 2) is behind j3 on the list
    store.redis.delete(store.keys.queue(queue))  # the list empties: j3 and j1 popped by dying workers
    _time.sleep(0.005)  # j1 was re-pushed this millisecond: "older than 0 s" needs one to pass
    assert sorted(store.vanished_pointers(queue, older_than_s=0)) == [("j1", "2"), ("j3", "1")]
    assert store.claim("j3", "1", queue, 5, "w") is not None  # running jobs are not queued
    assert store.vanished_pointers(queue, older_than_s=0) == [("j1", "2")]


def test_a_transition_names_the_status_as_a_job_status_or_says_why_there_is_none(store: JobStore) -> None:
    store.submit(new_job())
    store.claim("j1", "1", "openai.standard", 5, "w")
    done = store.complete("j1", "1", "out", {"model": "gpt-luna"}, record())
    assert done.ok and done.status is JobStatus.SUCCEEDED and not done.missing
    stale = store.finish("j1", JobStatus.CANCELLED, "too late", DecisionRecord("cancel", "too late").to_json())
    assert not stale.ok and stale.status is JobStatus.SUCCEEDED and stale.reason == ""
    gone = store.finish("nope", JobStatus.CANCELLED, "no job", DecisionRecord("cancel", "no job").to_json())
    assert not gone.ok and gone.status is None and gone.missing
    assert store.promote("nope").missing


def test_a_result_made_without_its_record_has_no_tier() -> None:
    gone = gone_result("j9")
    assert gone.status is JobStatus.EXPIRED and gone.tier is None and gone.to_dict()["tier"] is None
