"""Token deltas through Redis: a worker publishes each streamed attempt's text, ``job.stream()`` reads it."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from tests.fleet import Fleet, running_fleet
from toolbag.attempt.deltas import MAXLEN, AttemptEnd, RedisDeltaSink, TextDelta
from toolbag.jobs import JobStatus

REFUSE_MIDWAY = "please refuse-me-midway"


def set_faults(fleet: Fleet, plan: dict[str, object]) -> None:
    request = urllib.request.Request(f"{fleet.simulator.url}/_sim/faults", data=json.dumps(plan).encode(),
                                     method="POST", headers={"content-type": "application/json"})
    urllib.request.urlopen(request).close()


@pytest.fixture(scope="module")
def fleet(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(redis_server, tmp_path_factory.mktemp("deltas"), providers=("anthropic", "openai"),
                       concurrency=4) as f:
        set_faults(f, {"rules": [{"model": "claude-*", "fault": "midstream_refusal", "match": "refuse-me-midway"}]})
        yield f


def test_streamed_text_equals_the_output(fleet: Fleet) -> None:
    job = fleet.client.submit("summarize", input={"text": "The export button does nothing at all."},
                              tier="interactive")
    events = list(job.stream(timeout_s=30))
    result = job.result(timeout_s=30)
    assert result.status is JobStatus.SUCCEEDED
    texts = [e for e in events if isinstance(e, TextDelta)]
    assert texts and "".join(e.text for e in texts) == result.output
    assert {e.model for e in texts} == {result.model}
    assert isinstance(events[-1], AttemptEnd) and events[-1].ok


def test_a_refusal_after_text_is_an_attempt_boundary_not_a_concatenation(fleet: Fleet) -> None:
    job = fleet.client.submit("summarize", input={"text": REFUSE_MIDWAY}, tier="interactive")
    events = list(job.stream(timeout_s=30))
    result = job.result(timeout_s=30)
    assert result.status is JobStatus.SUCCEEDED and result.model == "gpt-luna"
    ends = [e for e in events if isinstance(e, AttemptEnd)]
    assert [(e.model, e.outcome) for e in ends] == [("claude-haiku", "refused"), ("gpt-luna", "ok")]
    first = events.index(ends[0])
    assert any(isinstance(e, TextDelta) for e in events[:first])  # the refused attempt had sent text
    after = "".join(e.text for e in events[first:] if isinstance(e, TextDelta))
    assert after == result.output


def test_the_sink_batches_trims_and_expires(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    sink = RedisDeltaSink(client, "t:deltas:j1", attempt=1, model="m", ttl_s=60)
    for _ in range(1000):
        sink.write("ab")
    sink.end("ok")
    entries = client.xrange("t:deltas:j1")
    assert len(entries) < 50  # 1000 pieces, a handful of XADDs
    assert b"".join(fields[b"text"] for _, fields in entries[:-1]) == b"ab" * 1000
    assert entries[-1][1][b"kind"] == b"end" and entries[-1][1][b"outcome"] == b"ok"
    assert 0 < client.ttl("t:deltas:j1") <= 60
    assert MAXLEN >= 1000
