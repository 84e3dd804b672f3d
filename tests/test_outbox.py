"""Webhooks through the outbox: a real Redis stream, real sender threads, a real local HTTP receiver.

A receiver that is down loses nothing: every notification waits in the stream and is delivered once it is
back. Of two senders only the lock holder posts, so nothing arrives twice. One that keeps failing is given up
on after ``give_up_s``, kept in the failed list and counted. An escalation's notification is written by the
same store step that marks the job escalated: it exists exactly when the escalation does."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
import redis

from tests.conftest import free_port
from toolbag.escalations.outbox import DELIVERY_HEADER, Outbox, OutboxSender, entry_fields
from toolbag.jobs import JobStatus
from toolbag.store import JobStore, Keys, NewJob
from toolbag.telemetry import metrics


class Receiver:
    """An HTTP receiver on a fixed port that can be started late; records (delivery id, body) per POST."""

    def __init__(self, status: int = 204) -> None:
        self.port = free_port()
        self.status = status
        self.posts: list[tuple[str, dict[str, Any]]] = []

    @contextmanager
    def up(self) -> Iterator[None]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                receiver.posts.append((self.headers[DELIVERY_HEADER], body))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        server = HTTPServer(("127.0.0.1", self.port), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield
        finally:
            server.shutdown()
            server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


def counted(result: str) -> float:
    return metrics.WEBHOOK_DELIVERIES.labels(result)._value.get()  # type: ignore[no-any-return]


@pytest.fixture
def outbox(redis_url: str) -> Iterator[Outbox]:
    client = redis.Redis.from_url(redis_url)
    yield Outbox(client, Keys(f"o{uuid.uuid4().hex[:6]}:"))
    client.close()


def wait_until(check: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return bool(check())


def receiver_down_then_up(outbox: Outbox, down_s: float) -> None:
    receiver = Receiver()
    senders = [OutboxSender(outbox, poll_s=0.05, backoff_s=0.2, max_backoff_s=2.0) for _ in range(2)]
    retried = counted("retried")
    for sender in senders:
        sender.start()
    try:
        for i in range(20):
            outbox.add(receiver.url, {"event": "escalated", "job_id": f"job-{i}"})
        time.sleep(down_s)  # the receiver is down: every try fails, nothing is lost
        assert outbox.pending() == 20
        assert counted("retried") > retried
        with receiver.up():
            assert wait_until(lambda: outbox.pending() == 0, 30), outbox.pending()
    finally:
        for sender in senders:
            sender.stop()
    ids = [delivery for delivery, _ in receiver.posts]
    assert sorted(body["job_id"] for _, body in receiver.posts) == sorted(f"job-{i}" for i in range(20))
    assert len(set(ids)) == len(ids) == 20, "a notification arrived twice (two senders posted)"
    assert outbox.failed() == []


def test_a_receiver_down_loses_nothing_and_nothing_arrives_twice(outbox: Outbox) -> None:
    receiver_down_then_up(outbox, down_s=3)


@pytest.mark.soak
@pytest.mark.slow
def test_a_receiver_down_for_a_minute_loses_nothing(outbox: Outbox) -> None:
    receiver_down_then_up(outbox, down_s=60)


def test_a_receiver_that_keeps_failing_is_given_up_on_and_counted(outbox: Outbox) -> None:
    receiver = Receiver(status=500)
    sender = OutboxSender(outbox, poll_s=0.05, backoff_s=0.1, max_backoff_s=0.2, give_up_s=1.0)
    failed = counted("failed")
    with receiver.up():
        delivery = outbox.add(receiver.url, {"event": "escalated", "job_id": "doomed"})
        sender.start()
        try:
            assert wait_until(lambda: outbox.pending() == 0, 20)
        finally:
            sender.stop()
    assert len(receiver.posts) >= 2 and {d for d, _ in receiver.posts} == {delivery}  # retried, same id
    [kept] = outbox.failed()
    assert kept["delivery_id"] == delivery and kept["reason"] == "HTTP 500"
    assert json.loads(kept["body"])["job_id"] == "doomed"
    assert counted("failed") == failed + 1


@pytest.fixture
def store(outbox: Outbox) -> JobStore:
    """A job store on the outbox's Redis and prefix, holding job ``j1`` waiting for the supervisor (token 1)."""
    store = JobStore(outbox.redis, Keys(outbox.stream.removesuffix("outbox")), job_ttl_s=60)
    store.submit(NewJob(job_id="j1", queue="openai.standard", deadline_s=60, idempotency_key=None, caller="c",
                        fields={"capability": "summarize", "tier": "standard", "input": "{}", "model": "gpt-luna",
                                "provider": "openai", "queue": "openai.standard", "plan": '["gpt-luna"]'}))
    assert store.claim("j1", "1", "openai.standard", 5, "w") is not None
    assert store.end_attempt("j1", "1", "refused", "{}").ok
    return store


def status_and_notifications(store: JobStore, outbox: Outbox) -> tuple[str, list[Any]]:
    """The job's status and the outbox's entries, read in one transaction."""
    pipe = store.redis.pipeline(transaction=True)
    pipe.hget(store.keys.job("j1"), "status")
    pipe.xrange(outbox.stream)
    status, entries = pipe.execute()
    return status.decode(), entries


def escalate(store: JobStore, token: str, url: str) -> bool:
    payload = {"event": "escalated", "job_id": "j1", "capability": "summarize", "tier": "standard",
               "reason": "every candidate refused"}
    return store.finish("j1", JobStatus.ESCALATED, "every candidate refused", "{}", expected_status=JobStatus.DECIDING,
                        expected_token=token, notification=entry_fields(url, payload)).ok


def test_an_escalation_and_its_notification_are_written_together(store: JobStore, outbox: Outbox) -> None:
    receiver = Receiver()
    assert not escalate(store, "2", receiver.url)  # a stale token: refused, and no notification either
    assert status_and_notifications(store, outbox) == ("deciding", [])
    assert escalate(store, "1", receiver.url)
    status, [(entry, _)] = status_and_notifications(store, outbox)
    assert status == "escalated"
    assert not escalate(store, "1", receiver.url)  # a repeated decision: the job moved on, nothing twice
    assert [e for e, _ in status_and_notifications(store, outbox)[1]] == [entry]
    [note] = outbox.due(int(time.time() * 1000))
    assert (note.delivery_id, note.attempts, note.url) == (entry.decode(), 0, receiver.url)
    with receiver.up():
        assert OutboxSender(outbox).send_due() == 1
    assert receiver.posts == [(entry.decode(), {"event": "escalated", "job_id": "j1", "capability": "summarize",
                                                "tier": "standard", "reason": "every candidate refused"})]
    assert outbox.pending() == 0


def test_an_escalation_whose_notification_cannot_be_written_is_not_made(store: JobStore, outbox: Outbox) -> None:
    outbox.redis.set(outbox.stream, "not a stream")  # the outbox write fails: the job must stay undecided
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        escalate(store, "1", "http://127.0.0.1:9/hook")
    assert store.get("j1").status is JobStatus.DECIDING
    assert store.escalated() == [] and len(store.history("j1")) == 1  # the attempt only, no decision recorded
    outbox.redis.delete(outbox.stream)
    assert escalate(store, "1", "http://127.0.0.1:9/hook")  # the supervisor's retry of the decision succeeds
    assert status_and_notifications(store, outbox)[0] == "escalated" and outbox.pending() == 1


def test_a_finish_without_a_webhook_writes_no_notification(store: JobStore, outbox: Outbox) -> None:
    assert store.finish("j1", JobStatus.ESCALATED, "no webhook configured", "{}").ok
    assert status_and_notifications(store, outbox) == ("escalated", [])


def test_when_a_notification_is_due_is_read_on_redis_time_whatever_the_hosts_clocks(
        outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
    real = time.time
    skew = {"s": 8.0}
    monkeypatch.setattr(time, "time", lambda: real() + skew["s"])
    receiver = Receiver(status=500)
    outbox.add(receiver.url, {"event": "x"})  # written by a host 8 s ahead: due at once all the same
    skew["s"] = 0.0
    with receiver.up():
        assert OutboxSender(outbox, backoff_s=1.0).send_due() == 0 and len(receiver.posts) == 1, "tried at once"
        skew["s"] = 30.0  # a sender 30 s ahead takes over: the retry is not due before its backoff on Redis's clock
        assert OutboxSender(outbox, backoff_s=1.0).send_due() == 0 and len(receiver.posts) == 1, "retried early"
        time.sleep(1.3)
        skew["s"] = -30.0  # a sender 30 s behind: the retry is due once the backoff passed on Redis's clock
        assert OutboxSender(outbox, backoff_s=1.0).send_due() == 0 and len(receiver.posts) == 2, "retry not sent"
