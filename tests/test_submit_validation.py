"""Every bad submission is refused at the edge with the field and the reason; nothing is enqueued."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from toolbag.client import Client, JobRequest
from toolbag.config import load_config
from toolbag.jobs import JobStatus, SubmitError


def only_counted(client: Client, field: str) -> bool:
    """True when Redis holds nothing but one rejection of ``field`` in the fleet-wide counters."""
    stats = client.store.keys.stats
    keys = [k.decode() for k in client.store.redis.keys("*")]
    counts = client.store.redis.hgetall(stats)
    return keys == [stats] and counts == {f"rejected|{field}".encode(): b"1"}


def nested(depth: int) -> Any:
    value: Any = {"text": "x"}
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.fixture
def client(redis_url: str) -> Client:
    return Client(load_config(), redis_url)


@pytest.mark.parametrize(
    ("kwargs", "field", "phrase"),
    [
        ({"capability": "teleport", "input": {"text": "x"}}, "capability", "unknown capability 'teleport'"),
        ({"capability": None, "input": {"text": "x"}}, "capability", "give a capability or a skill"),
        ({"capability": "summarize", "input": {"text": "x"}, "tier": "urgent"}, "tier", "unknown tier 'urgent'"),
        ({"capability": "summarize", "input": None}, "input", "is required"),
        ({"capability": "summarize", "input": {"x": {1, 2}}}, "input", "JSON-serializable"),
        ({"capability": "summarize", "input": {"x": float("nan")}}, "input", "JSON-serializable"),
        ({"capability": "summarize", "input": {"text": "x" * 1_100_000}}, "input", "exceeds the limit"),
        ({"capability": "summarize", "input": {"text": "x"}, "deadline_s": -1}, "deadline_s", "positive"),
        ({"capability": "summarize", "input": {"text": "x"}, "tier": "interactive", "deadline_s": 10_000},
         "deadline_s", "exceeds the interactive tier's maximum"),
        ({"capability": "summarize", "input": {"text": "x"}, "caller": "bad caller!"}, "caller", "characters"),
        ({"capability": "summarize", "input": {"text": "x"}, "idempotency_key": ""}, "idempotency_key", "non-empty"),
        ({"skill": "no-such-skill", "input": {"text": "x"}}, "skill", "unknown skill 'no-such-skill'"),
        ({"capability": ["summarize"], "input": {"text": "x"}}, "capability", "must be a string, got list"),
        ({"skill": 7, "input": {"text": "x"}}, "skill", "must be a string, got int"),
        ({"capability": "summarize", "input": {"text": "x"}, "candidates": 5}, "candidates", "list of model names"),
        ({"capability": "summarize", "input": nested(5000)}, "input", "nested deeper than 100 levels"),
        ({"capability": "summarize", "input": {"text": "x\ud800"}}, "input", "not valid Unicode"),
        ({"capability": "summarize", "input": {"te\udfffxt": "x"}}, "input", "not valid Unicode"),
        ({"capability": "summarize", "input": {"text": "x"}, "idempotency_key": "k\ud800"}, "idempotency_key",
         "not valid Unicode"),
        ({"capability": "summarize", "input": {"text": "x"}, "caller": "c\udc80"}, "caller", "not valid Unicode"),
        ({"capability": "summarize", "input": {"text": "x"}, "deadline_s": float("nan")}, "deadline_s", "positive"),
        ({"capability": "summarize", "input": {"text": "x"}, "deadline_s": float("inf")}, "deadline_s", "maximum"),
        ({"capability": "summarize", "input": {"text": "x"}, "deadline_s": 10**400}, "deadline_s", "maximum"),
        ({"capability": "summarize", "input": {"text": "x"}, "deadline_s": 1e-6}, "deadline_s", "at least 1s"),
    ],
)
def test_bad_submission_names_field_and_reason(client: Client, kwargs: dict[str, Any], field: str, phrase: str) -> None:
    capability = kwargs.pop("capability", None)
    with pytest.raises(SubmitError) as caught:
        client.submit(capability, **kwargs)
    assert caught.value.field == field
    assert phrase in str(caught.value)
    assert only_counted(client, field), "a refused job must leave nothing behind but its count"


def test_submit_many_refuses_the_whole_chunk_before_enqueueing(client: Client) -> None:
    with pytest.raises(SubmitError):
        client.submit_many([
            JobRequest("summarize", {"text": "fine"}),
            JobRequest("summarize", {"text": "bad"}, tier="nope"),
        ])
    assert only_counted(client, "tier")


def test_submit_many_names_an_unknown_field(client: Client) -> None:
    with pytest.raises(SubmitError, match="unknown field 'priority'"):
        client.submit_many([{"capability": "summarize", "input": {"text": "x"}, "priority": 9}])
    assert only_counted(client, "request")


def test_good_submission_is_queued_on_the_first_candidates_provider(client: Client, redis_url: str) -> None:
    job = client.submit("summarize", input={"text": "hello"}, tier="interactive")
    assert job.status() is JobStatus.QUEUED
    record = client.store.get(job.id)
    assert (record.model, record.provider, record.queue) == ("claude-haiku", "anthropic",
                                                                      "anthropic.interactive")
    assert redis.Redis.from_url(redis_url).llen(client.store.keys.queue("anthropic.interactive")) == 1


def test_cli_reports_bad_input_without_traceback(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from toolbag.cli.app import app

    monkeypatch.setenv("TOOLBAG_REDIS_URL", redis_url)
    runner = CliRunner()
    res = runner.invoke(app, ["submit", "summarize", "--input", "{not json"])
    assert res.exit_code == 2
    assert "--input: not valid JSON" in res.output
    res = runner.invoke(app, ["submit", "teleport", "--input", "{}"])
    assert res.exit_code == 2 and "capability: unknown capability 'teleport'" in res.output
    assert "Traceback" not in res.output


def test_cli_refuses_unreadable_input_in_one_line(redis_url: str, monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from toolbag.cli.app import app

    monkeypatch.setenv("TOOLBAG_REDIS_URL", redis_url)
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(b'{"text": "caf\xe9"}')
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 5000 + "]" * 5000)
    cases = {
        ("--input", f"@{latin1}"): "is not UTF-8 text (byte 13: 0xe9)",
        ("--input", f"@{deep}"): "--input: nested deeper than 100 levels",
        ("--input", "[" * 150 + "]" * 150): "input: is nested deeper than 100 levels",
        ("--input", '{"text": "x"}', "--deadline-s", "nan"): "deadline_s: must be a positive number",
    }
    for args, phrase in cases.items():
        res = CliRunner().invoke(app, ["submit", "summarize", *args])
        assert res.exit_code == 2, (args, res.output)
        assert phrase in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert redis.Redis.from_url(redis_url).keys("*job:*") == []


def test_bad_config_file_names_file_field_and_reason(tmp_path: Any) -> None:
    from toolbag.config import ConfigError

    path = tmp_path / "toolbag.yaml"
    path.write_text(
        "providers: {a: {kind: anthropic, base_url: 'not a url'}}\n"
        "models: {m: {provider: a, model_id: x, context_window: -5}}\n"
        "routes: {}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert str(path) in message
    assert "providers.a.base_url" in message and "http(s) URL" in message
    assert "models.m.context_window" in message
    path.write_text("providers: {a: {kind: anthropic}}\nmodels: {m: {provider: zz, model_id: x}}\nroutes: {}\n")
    with pytest.raises(ConfigError, match="models.m.provider: unknown provider 'zz'"):
        load_config(path)


def test_skills_are_found_from_any_working_directory(client: Client, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOOLBAG_SKILLS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./skills here
    fresh = Client(client.config, store=client.store)
    job = fresh.submit(skill="summarize", input={"text": "from elsewhere"})
    assert fresh.store.get(job.id).skill == "summarize"


def test_a_broken_skill_is_a_submit_error_naming_its_first_problem(client: Client, tmp_path: Path) -> None:
    broken = tmp_path / "skills" / "summarize"
    broken.mkdir(parents=True)
    (broken / "SKILL.md").write_text("---\nname: summarize\n---\nno metadata\n")
    fresh = Client(client.config, store=client.store, skills_root=str(tmp_path / "skills"))
    with pytest.raises(SubmitError) as caught:
        fresh.submit(skill="summarize", input={"text": "x"})
    assert caught.value.field == "skill" and "is not valid" in caught.value.reason
    assert "\n" not in str(caught.value)


def test_client_skill_is_the_skill_a_job_runs_or_a_submit_error(client: Client, tmp_path: Path) -> None:
    assert client.skill("summarize").name == "summarize"
    with pytest.raises(SubmitError) as caught:
        client.skill("no-such-skill")
    assert caught.value.field == "skill" and "unknown skill 'no-such-skill'" in caught.value.reason
    assert client.store.redis.dbsize() == 0, "looking a skill up writes nothing"
