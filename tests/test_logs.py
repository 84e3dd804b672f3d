"""Logs: one JSON object per line with the job's fields; secrets scrubbed before anything is written.

The end-to-end check (the real fleet with canary keys never shows one in logs, metrics, job records or
audit entries) shares the observed fleet of tests/test_prometheus_scrape.py.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from toolbag.attempt.leases import LeaseKeeper
from toolbag.attempt.runner import AttemptRunner
from toolbag.config import TIERS, parse_config
from toolbag.providers.registry import build_adapter
from toolbag.simulator.server import SimulatorServer
from toolbag.store import JobStore
from toolbag.telemetry import logs

CANARY = "sk-canary-5f1d9c0b7e2a4d6f8a1b3c5d7e9f0a2b"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Configure toolbag's JSON logging into a buffer, with ``CANARY`` as a configured key; undo afterwards."""
    stream = io.StringIO()
    root, toolbag_logger = logging.getLogger(), logging.getLogger("toolbag")
    saved = (root.level, toolbag_logger.level)
    handler = logs.configure("worker:test", "DEBUG", stream=stream,
                             environ={"ANTHROPIC_API_KEY": CANARY, "TOOLBAG_REDIS_URL": "redis://:hunter2-secret@h/0"})
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        toolbag_logger.setLevel(saved[1])


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_record_is_one_json_object_with_its_fields(captured: io.StringIO) -> None:
    log = logging.getLogger("toolbag.worker")
    log.info(json.dumps({"event": "attempt", "job_id": "j1", "attempt": 2, "provider": "openai",
                         "model": "gpt-luna", "outcome": "ok"}))
    log.warning("lease renewal failed", extra={"job_id": "j2", "attempt": 1})
    log.info("%d jobs in %s", 3, "batch")
    first, second, third = _lines(captured)
    assert first["msg"] == "attempt" and first["level"] == "info" and first["logger"] == "toolbag.worker"
    assert {k: first[k] for k in ("job_id", "attempt", "provider", "model", "outcome")} == {
        "job_id": "j1", "attempt": 2, "provider": "openai", "model": "gpt-luna", "outcome": "ok"}
    assert first["role"] == "worker:test" and isinstance(first["pid"], int) and first["ts"].endswith("Z")
    assert second["msg"] == "lease renewal failed" and second["job_id"] == "j2" and second["level"] == "warning"
    assert third["msg"] == "3 jobs in batch"


def test_secrets_are_scrubbed_from_messages_arguments_fields_and_tracebacks(captured: io.StringIO) -> None:
    log = logging.getLogger("toolbag.worker")
    log.info(f"key is {CANARY}")
    log.info("key is %s", CANARY)
    log.info("call", extra={"headers": {"x-api-key": CANARY}, "url": "redis://:hunter2-secret@h/0"})
    log.info(json.dumps({"event": "attempt", "reason": f"401 for key {CANARY}"}))
    try:
        raise RuntimeError(f"vendor said: bad key {CANARY}")
    except RuntimeError:
        log.exception("attempt crashed")
    logging.getLogger("openai._base_client").debug("Request options: %r", {"api_key": CANARY})
    text = captured.getvalue()
    assert CANARY not in text and "hunter2-secret" not in text
    lines = _lines(captured)
    assert len(lines) == 6
    assert lines[0]["msg"] == "key is ***" and lines[1]["msg"] == "key is ***"
    assert lines[2]["headers"] == {"x-api-key": "***"} and lines[2]["url"] == "redis://:***@h/0"
    assert lines[3]["reason"] == "401 for key ***"
    assert "RuntimeError: vendor said: bad key ***" in lines[4]["exc"]


def test_secret_values_come_from_the_config_and_secret_looking_variables() -> None:
    config = parse_config({"providers": {"acme": {"kind": "openai-compatible", "api_key_env": "ACME_CREDENTIAL",
                                                  "base_url": "http://127.0.0.1:1/v1"}},
                           "models": {"m": {"provider": "acme", "model_id": "m"}},
                           "routes": {"chat": {t: {"candidates": ["m"]} for t in TIERS}}})
    environ = {"ACME_CREDENTIAL": "acme-0123456789", "OPENAI_API_KEY": "sk-openai-0123456789",
               "SLACK_TOKEN": "xoxb-0123456789", "SHORT_API_KEY": "abc", "HOME": "/home/someone"}
    assert sorted(logs.secret_values(config, environ)) == sorted(
        ["acme-0123456789", "sk-openai-0123456789", "xoxb-0123456789"]
    ), "short values and ordinary variables are left alone"


def test_the_attempt_runner_logs_job_attempt_provider_model_outcome(captured: io.StringIO, redis_url: str) -> None:
    from tests.fleet import fleet_config_dict
    from toolbag.client import Client
    from toolbag.store.keys import Keys

    with SimulatorServer() as sim:
        data = fleet_config_dict(sim.url)
        data["routes"]["logged"] = {t: {"candidates": ["gpt-luna"]} for t in TIERS}
        config = parse_config(data)
        store = JobStore.from_url(redis_url, Keys(config.fleet.key_prefix))
        client = Client(config, redis_url)
        runner = AttemptRunner(config, store, "openai", build_adapter("openai", config), LeaseKeeper(store, 2), "w")
        ok = client.submit("logged", input={"text": "fine"})
        failing = client.submit("logged", input={"text": "[[sim:server_error]] no"})
        for job in (ok, failing):
            runner.run(job.id, "1", "openai.standard")
    attempts = [line for line in _lines(captured) if line.get("event") == "attempt"]
    by_job = {line["job_id"]: line for line in attempts}
    assert set(by_job) == {ok.id, failing.id}
    for job, outcome in ((ok, "ok"), (failing, "server_error")):
        line = by_job[job.id]
        assert (line["attempt"], line["provider"], line["model"], line["outcome"]) == (1, "openai", "gpt-luna",
                                                                                        outcome)
        assert line["logger"] == "toolbag.worker" and line["level"] == "info"
