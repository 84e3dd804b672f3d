"""The completion inbox and the bulk pipeline against a real Redis, without workers: jobs are ended by
the store's own terminal transitions (cancel, or claim + complete), exactly as a worker would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolbag.bulk.files import InputSpec
from toolbag.bulk.pipeline import Finished, Pipeline, Rejected, Submitted
from toolbag.bulk.runner import BatchError, BatchRun, BatchSpec
from toolbag.client import Client, JobRequest
from toolbag.config import load_config
from toolbag.jobs import JobStatus, SubmitError
from toolbag.skills import render

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def client(redis_url: str) -> Client:
    return Client(load_config(), redis_url, skills_root=str(REPO / "skills"))


def test_terminal_transitions_push_the_job_id_to_its_inbox(client: Client) -> None:
    store = client.store
    inbox = store.keys.inbox("t1")
    cancelled = client.submit("summarize", input={"text": "a"}, tier="batch").id
    [done_job, plain] = client.submit_many(
        [JobRequest("summarize", {"text": "b"}), JobRequest("summarize", {"text": "c"}, inbox="other")], inbox="t1"
    )
    assert store.get(done_job.id).inbox == inbox
    assert store.get(plain.id).inbox == store.keys.inbox("other"), "a request's own inbox wins"
    assert store.pop_inbox(inbox, 10, 0) == []
    client.cancel(cancelled)  # no inbox named: nothing pushed
    assert store.pop_inbox(inbox, 10, 0) == []

    record = store.claim(done_job.id, "1", store.get(done_job.id).queue, 10, "test-worker")
    assert record is not None
    assert store.complete(done_job.id, "1", "out", {"cost_usd": 0.0}, json.dumps({"type": "attempt"})).ok
    client.cancel(plain.id)
    for key in (inbox, store.keys.inbox("other")):
        assert 0 < store.redis.ttl(key) <= client.config.fleet.job_ttl_s, "an inbox never lives forever"
    assert store.pop_inbox(inbox, 10, 0.5) == [done_job.id]
    assert store.pop_inbox(store.keys.inbox("other"), 10, 0.5) == [plain.id]
    assert store.pop_inbox(inbox, 10, 0.1) == [], "each id once"


def test_inbox_names_are_checked_at_submit(client: Client) -> None:
    with pytest.raises(SubmitError) as err:
        client.submit_many([JobRequest("summarize", {"text": "x"}, inbox="no spaces allowed")])
    assert err.value.field == "inbox"


def test_pipeline_bounds_jobs_in_flight_and_reports_each_item_once(client: Client) -> None:
    max_in_flight = 10
    pipeline: Pipeline[int] = Pipeline(client, "bound", max_in_flight=max_in_flight, chunk_size=4, wait_s=0.2)
    items = [(i, JobRequest("summarize", {"text": f"doc {i}"} if i != 13 else {"text": ""}, "summarize"))
             for i in range(25)]
    finished: list[int] = []
    rejected: list[int] = []
    submitted: dict[int, str] = {}
    peak = 0
    for events in pipeline.run(items):
        peak = max(peak, pipeline.in_flight)
        live = sum(1 for job_id in submitted.values()
                   if not JobStatus(client.store.get(job_id).status).terminal)
        assert live <= max_in_flight
        for event in events:
            if isinstance(event, Submitted):
                submitted[event.tag] = event.job_id
            elif isinstance(event, Rejected):
                rejected.append(event.tag)
                assert event.error.field.startswith("input")
            elif isinstance(event, Finished):
                finished.append(event.tag)
                assert event.result.status is JobStatus.CANCELLED
        if pipeline.in_flight >= max_in_flight - 1 or len(submitted) + len(rejected) == len(items):
            for job_id in list(pipeline.pending):  # play the fleet: end everything in flight
                client.cancel(job_id)
    assert peak == max_in_flight
    assert rejected == [13], "the empty text fails the skill's schema; the run goes on"
    assert sorted(finished) == [i for i in range(25) if i != 13]
    assert len(set(submitted.values())) == 24


def test_a_reused_job_is_collected_even_when_it_reports_to_another_inbox(client: Client) -> None:
    first = client.submit_many([JobRequest("summarize", {"text": "x"}, idempotency_key="k1", inbox="first-run")])[0]
    done = client.submit_many([JobRequest("summarize", {"text": "y"}, idempotency_key="k2", inbox="first-run")])[0]
    client.cancel(done.id)
    pipeline: Pipeline[str] = Pipeline(client, "second-run", wait_s=0.1, sweep_s=0.0)
    steps = pipeline.run([("a", JobRequest("summarize", {"text": "x"}, idempotency_key="k1")),
                          ("b", JobRequest("summarize", {"text": "y"}, idempotency_key="k2"))])
    events = next(steps)
    assert [(e.tag, e.job_id, e.created) for e in events if isinstance(e, Submitted)] == [
        ("a", first.id, False), ("b", done.id, False)]
    assert [e.tag for e in events if isinstance(e, Finished)] == ["b"], "already finished: read at once"
    client.cancel(first.id)  # pushes to 'first-run', not to this inbox: the sweep finds it
    rest = [e for step in steps for e in step]
    assert [(e.tag, e.result.job_id) for e in rest if isinstance(e, Finished)] == [("a", first.id)]


def test_dry_run_counts_and_prices_the_jobs(client: Client, tmp_path: Path) -> None:
    src = tmp_path / "docs.jsonl"
    lines = [{"id": f"d{i}", "text": "word " * (20 + i)} for i in range(6)] + [{"id": "bad", "text": ""}]
    src.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps({"id": "d0", "output": {}}) + "\n")  # done by an earlier run
    spec = BatchSpec(InputSpec(src, "jsonl"), out, skill="summarize", tier="batch")
    plan = BatchRun(client, spec).dry_run()
    skill = client.skill("summarize")
    model_name = client.config.route("summarize", "batch").candidates[0]
    model = client.config.models[model_name]
    assert (plan.total, plan.done_before, plan.to_submit) == (7, 1, 5)
    assert [(line.id, field) for line, field, _ in plan.invalid] == [("bad", "input.text")]
    est = plan.estimate
    assert list(est.by_model) == [model_name] and est.output_is_cap
    assert est.output_tokens == 5 * skill.max_output_tokens
    longest = render(skill, {"text": lines[5]["text"]})
    assert est.input_tokens > 5 * len(longest.messages[0].text) // 4 // 2
    assert est.total_usd == pytest.approx(model.cost_usd(est.input_tokens, est.output_tokens))
    typical = BatchRun(client, BatchSpec(InputSpec(src, "jsonl"), out, skill="summarize", output_tokens=100))
    assert typical.dry_run().estimate.output_tokens == 500
    assert not out.with_name("out.errors.jsonl").exists(), "a dry run creates no files"
    assert len(out.read_text().splitlines()) == 1


def test_dry_run_prices_vendor_batches_by_the_path_rule(client: Client, tmp_path: Path) -> None:
    """Both ways: every job on a real-time call, and each job on the path the job path's rule gives it (the
    vendor batch price where it qualifies). A deadline that leaves less than the route's bound at the claim
    (the tier's default of a day included), or a non-batch tier, leaves every job real time, and says why."""
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": "word " * 30}) + "\n" for i in range(4)))
    out = tmp_path / "out.jsonl"
    model_name = client.config.route("summarize", "batch").candidates[0]
    model = client.config.models[model_name]
    assert model.features.batch
    two_days = 2 * client.config.route("summarize", "batch").policy.vendor_batch_bound_s
    spec = BatchSpec(InputSpec(src, "jsonl"), out, skill="summarize", tier="batch", deadline_s=two_days)
    plan = BatchRun(client, spec).dry_run()
    est = plan.estimate
    assert est.vendor_batch_jobs == 4 and plan.realtime_reason == ""
    assert est.total_usd == pytest.approx(model.cost_usd(est.input_tokens, est.output_tokens))
    assert est.path_total_usd == pytest.approx(model.cost_usd(est.input_tokens, est.output_tokens, batch=True))
    assert est.saving_usd == pytest.approx(est.total_usd - est.path_total_usd) and est.saving_usd > 0
    assert est.to_dict()["vendor_batch"]["jobs"] == 4
    for spec, why in ((BatchSpec(InputSpec(src, "jsonl"), out, skill="summarize", tier="batch"), "the deadline"),
                      (BatchSpec(InputSpec(src, "jsonl"), out, skill="summarize", tier="batch", deadline_s=3600),
                       "the deadline (3600s)"),
                      (BatchSpec(InputSpec(src, "jsonl"), out, skill="summarize", tier="standard"),
                       "only the batch tier")):
        plan = BatchRun(client, spec).dry_run()
        real = plan.estimate
        assert real.vendor_batch_jobs == 0 and real.saving_usd == 0 and plan.realtime_reason.startswith(why)
        assert real.path_total_usd == pytest.approx(real.total_usd)


def test_batch_arguments_are_checked_before_anything_runs(client: Client, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "x"}\n')
    with pytest.raises(BatchError, match="--skill: unknown skill 'nope'"):
        BatchRun(client, BatchSpec(InputSpec(src, "jsonl"), tmp_path / "o.jsonl", skill="nope"))
    with pytest.raises(BatchError, match="--capability: unknown capability"):
        BatchRun(client, BatchSpec(InputSpec(src, "jsonl"), tmp_path / "o.jsonl", capability="nope"))
    with pytest.raises(BatchError, match="different files"):
        BatchRun(client, BatchSpec(InputSpec(src, "jsonl"), src, capability="summarize"))
    with pytest.raises(BatchError, match="no such file"):
        BatchRun(client, BatchSpec(InputSpec(tmp_path / "missing.jsonl", "jsonl"), tmp_path / "o.jsonl",
                                   capability="summarize"))
