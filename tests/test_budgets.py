"""Budgets: config errors, reservation and settlement in Redis, refusal at submit, the bound on overspend
with several processes racing, and `toolbag spend`."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from toolbag.budgets import Budgets, periods
from toolbag.budgets.ledger import NANO
from toolbag.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config, parse_config
from toolbag.jobs import SubmitError
from toolbag.store.keys import Keys
from toolbag.testing import InProcessFleet, short_waits

REPO = Path(__file__).resolve().parent.parent


def config_with(budgets: dict[str, Any], **models: dict[str, Any]) -> Config:
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["budgets"] = budgets
    for name, patch in models.items():
        data["models"][name].update(patch)
    return parse_config(data)


def test_a_caller_of_an_unknown_team_is_named() -> None:
    with pytest.raises(ConfigError, match=r"callers\.bot\.team: unknown team 'sales'"):
        config_with({"teams": {"support": {"daily_usd": 5}}, "callers": {"bot": {"team": "sales"}}})


def test_an_unknown_time_zone_is_named() -> None:
    with pytest.raises(ConfigError, match=r"budgets\.time_zone: .*unknown time zone 'Mars/Olympus'"):
        config_with({"time_zone": "Mars/Olympus"})


def test_a_negative_limit_is_named() -> None:
    with pytest.raises(ConfigError, match=r"budgets\.teams\.support\.daily_usd"):
        config_with({"teams": {"support": {"daily_usd": -1}}})


def _ledger(config: Config, url: str, prefix: str = "tb:") -> Budgets:
    return Budgets(config, redis.Redis.from_url(url), Keys(prefix))


def _spent(ledger: Budgets, scope: str) -> tuple[float, float]:
    """(spent, held) of ``scope`` today."""
    chosen = [s for s in ledger.configured_scopes() if s.key == scope]
    today = periods(time.time(), ledger.settings.time_zone)[0]
    rows = ledger.spend(chosen, [today])
    return rows[0].spent_usd, rows[0].reserved_usd


def test_reserve_settle_and_give_back(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    config = config_with({"teams": {"support": {"daily_usd": 1.0, "soft_ratio": 0.5}},
                          "callers": {"bot": {"team": "support"}}})
    ledger = _ledger(config, redis_url)
    ledger.reserve("j1", "bot", 0.4, hold_s=60)
    ledger.reserve("j2", "bot", 0.4, hold_s=60)
    assert _spent(ledger, "team:support") == (0.0, pytest.approx(0.8))
    with caplog.at_level(logging.WARNING, logger="toolbag.budgets"):
        ledger.settle("j1", "bot", 0.25, final=True)  # actual below the estimate: the rest is given back
        ledger.settle("j2", "bot", 0.3, final=True)  # crosses the soft limit (0.5): logged once
        ledger.reserve("j3", "bot", 0.1, hold_s=60)
        ledger.settle("j3", "bot", 0.1, final=True)
    assert _spent(ledger, "team:support") == (pytest.approx(0.65), 0.0)
    assert _spent(ledger, "fleet") == (pytest.approx(0.65), 0.0)
    soft = [r for r in caplog.records if "budget_soft_limit" in r.getMessage() and "team:support" in r.getMessage()]
    assert len(soft) == 1
    ledger.reserve("j4", "bot", 0.5, hold_s=60)  # 0.65 spent + 0.5 held: over, but it was admitted below the limit
    with pytest.raises(Exception, match=r"team:support day budget of \$1\.00 reached .* resets at "):
        ledger.reserve("j5", "bot", 0.01, hold_s=60)
    ledger.release("j4")
    ledger.reserve("j5", "bot", 0.01, hold_s=60)


def test_a_soft_limit_crossed_puts_one_notification_in_the_outbox(redis_url: str) -> None:
    from toolbag.escalations.outbox import Outbox

    config = config_with({"webhook_url": "http://127.0.0.1:9/budget",
                          "teams": {"support": {"daily_usd": 1.0, "soft_ratio": 0.5}},
                          "callers": {"bot": {"team": "support"}}})
    keys = Keys(f"soft{os.getpid()}{time.monotonic_ns()}:")
    ledger = Budgets(config, redis.Redis.from_url(redis_url), keys)
    outbox = Outbox(redis.Redis.from_url(redis_url), keys)
    for n, cost in enumerate((0.3, 0.3, 0.3)):  # the second charge crosses 0.5; the third is past it already
        ledger.reserve(f"j{n}", "bot", cost, hold_s=60)
        ledger.settle(f"j{n}", "bot", cost, final=True)
        assert outbox.pending() == (0 if n == 0 else 1)
    [note] = outbox.due(now_ms=int(time.time() * 1000) + 60_000)
    body = json.loads(note.body)
    assert note.url == "http://127.0.0.1:9/budget"
    assert body["event"] == "budget_soft_limit" and body["budget"] == "team:support"
    assert body["spent_usd"] == pytest.approx(0.6) and body["limit_usd"] == pytest.approx(1.0)


def test_a_budget_webhook_that_is_not_http_is_named() -> None:
    with pytest.raises(ConfigError, match=r"budgets\.webhook_url: .*http"):
        config_with({"webhook_url": "ftp://example.com/hook"})


def _race(url: str, budgets: dict[str, Any], worker: int, amount: float, out: Any) -> None:
    """One producer-and-worker: reserve a job, then settle its actual cost (the estimate), until refused."""
    ledger = _ledger(config_with(budgets), url)
    admitted = 0
    while True:
        job = f"w{worker}-{admitted}"
        try:
            ledger.reserve(job, f"caller-{worker % 2}", amount, hold_s=60)
        except Exception:
            break
        ledger.settle(job, f"caller-{worker % 2}", amount, final=True)
        admitted += 1
    out.put(admitted)


def test_racing_processes_overspend_by_at_most_one_reservation(redis_url: str) -> None:
    budgets = {"fleet": {"daily_usd": 2.0}, "teams": {"all": {}}, "callers": {"caller-0": {"team": "all"}}}
    amount = 0.03  # 2.0 is not a multiple: the last admitted job crosses the limit
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(redis_url, budgets, n, amount, out)) for n in range(4)]
    for p in procs:
        p.start()
    admitted = sum(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    ledger = _ledger(config_with(budgets), redis_url)
    spent, reserved = _spent(ledger, "fleet")
    assert reserved == 0.0
    assert spent == pytest.approx(admitted * amount)
    assert 2.0 <= spent <= 2.0 + amount + 1e-9, spent


def test_submit_is_refused_when_the_budget_is_spent_and_jobs_in_flight_finish(redis_url: str) -> None:
    budgets = {"time_zone": "Europe/Berlin", "teams": {"support": {"daily_usd": 0.05}},
               "callers": {"bot": {"team": "support"}}}
    config = short_waits(config_with(budgets, **{"claude-haiku": {"input_usd_per_mtok": 100.0,
                                                                  "output_usd_per_mtok": 100.0}}))
    with InProcessFleet(config, redis_url) as fleet:
        first = fleet.client.submit("summarize", input={"text": "hello"}, tier="interactive", caller="bot")
        held = fleet.client.budgets
        assert held is not None
        jobs = [first]
        with pytest.raises(SubmitError) as refused:
            for _ in range(50):  # each reserves up to 1024 output tokens at $100/M: about $0.1
                jobs.append(fleet.client.submit("summarize", input={"text": "hello"}, tier="interactive",
                                                caller="bot"))
        assert refused.value.field == "budget"
        assert "team:support day budget of $0.05 reached" in str(refused.value)
        assert "resets at" in str(refused.value) and "+01:00" in str(refused.value)
        fleet.run_until_idle()
        results = [j.result(timeout_s=0) for j in jobs]
        assert all(r.ok for r in results)  # admitted jobs finish
        spent, reserved = _spent(held, "team:support")
        assert reserved == 0.0
        assert spent == pytest.approx(sum(r.cost_usd for r in results), abs=len(results) / NANO)
        other = fleet.client.submit("summarize", input={"text": "hello"}, tier="interactive", caller="someone-else")
        fleet.run_until_idle()
        assert other.result(timeout_s=0).ok  # another team's caller is not refused


def test_a_cancelled_jobs_reservation_is_given_back(redis_url: str) -> None:
    config = short_waits(config_with({"fleet": {"daily_usd": 100.0}}))
    with InProcessFleet(config, redis_url) as fleet:
        job = fleet.client.submit("summarize", input={"text": "hello"}, caller="bot")
        ledger = fleet.client.budgets
        assert ledger is not None
        assert _spent(ledger, "fleet")[1] > 0
        fleet.client.cancel(job.id)
        fleet.store.redis.zadd(fleet.store.keys.budget_pending, {job.id: 0})  # due now instead of in 5 s
        ledger.reserve("next", "bot", 0.001, hold_s=60)  # a reservation looks at due ones first
        assert _spent(ledger, "fleet")[1] == pytest.approx(0.001)


def test_spend_cli(redis_url: str, tmp_path: Path) -> None:
    budgets = {"teams": {"support": {"daily_usd": 1.0, "monthly_usd": 20.0}}, "callers": {"bot": {"team": "support"}}}
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["budgets"] = budgets
    path = tmp_path / "toolbag.yaml"
    path.write_text(yaml.safe_dump(data))
    ledger = _ledger(load_config(path), redis_url)
    ledger.reserve("j1", "bot", 0.2, hold_s=60)
    ledger.settle("j1", "bot", 0.125, final=True)
    env = {**os.environ, "TOOLBAG_CONFIG": str(path), "TOOLBAG_REDIS_URL": redis_url}

    def spend(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "toolbag.cli", "spend", *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)

    done = spend("--team", "support", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["budgets"]
    assert [(r["scope"], r["period"][:2], r["spent_usd"], r["remaining_usd"]) for r in rows] == [
        ("team:support", "d:", 0.125, 0.875), ("team:support", "m:", 0.125, 19.875)]
    done = spend("--caller", "bot", "--since", "2026-01-01")
    assert done.returncode == 2 and "--since" in done.stderr and "kept 62 days" in done.stderr
    done = spend("--team", "nobody")
    assert done.returncode == 2 and "--team: unknown team 'nobody'" in done.stderr
    done = spend()
    assert done.returncode == 0 and "caller:bot" in done.stdout and "$0.1250" in done.stdout


def test_a_fleet_of_worker_processes_overspends_by_at_most_one_reservation(redis_server: str, tmp_path: Path) -> None:
    """Three producers race two worker processes against a $0.60 fleet budget until it refuses them."""
    import threading

    from tests.fleet import running_fleet
    from toolbag.config import TIERS

    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    models = data["models"]
    models["gpt-luna"].update({"input_usd_per_mtok": 1000.0, "output_usd_per_mtok": 1000.0})
    routes = data["routes"]
    routes["spend"] = {t: {"candidates": ["gpt-luna"]} for t in TIERS}
    overrides = {"models": models, "routes": routes, "budgets": {"fleet": {"daily_usd": 0.6}}}
    with running_fleet(redis_server, tmp_path, providers=("openai",), concurrency=8,
                       config_overrides=overrides) as fleet:
        fleet.worker("openai", 8, name="worker-openai-2")
        fleet.wait_workers(2)
        client = fleet.client
        ledger = client.budgets
        jobs: list[Any] = []
        refusals: list[str] = []
        reservation = 0.0

        def produce(n: int) -> None:
            nonlocal reservation
            for i in range(400):
                payload = {"messages": [{"role": "user", "content": f"note {n}-{i}"}], "max_output_tokens": 16}
                try:
                    jobs.append(client.submit("spend", input=payload, tier="standard", caller=f"p{n}"))
                except SubmitError as err:
                    refusals.append(str(err))
                    if ledger is not None and _spent(ledger, "fleet")[1] == 0.0:
                        return  # refused with nothing in flight: the budget is spent
                    time.sleep(0.05)

        producers = [threading.Thread(target=produce, args=(n,)) for n in range(3)]
        for p in producers:
            p.start()
        for p in producers:
            p.join(timeout=120)
        results = [j.result(timeout_s=60) for j in jobs]
        assert all(r.ok for r in results)
        assert ledger is not None
        from toolbag.attempt.request import build_request
        from toolbag.budgets.estimate import reservation_usd

        request = build_request(client.config, capability="spend", tier="standard", model="gpt-luna",
                                job_input={"messages": [{"role": "user", "content": "note 0-000"}],
                                           "max_output_tokens": 16})
        reservation = reservation_usd(client.config, ["gpt-luna"], request)
        spent, held = _spent(ledger, "fleet")
        assert held == 0.0
        assert spent == pytest.approx(sum(r.cost_usd for r in results), abs=len(results) / NANO)
        assert refusals and "fleet day budget of $0.60 reached" in refusals[-1]
        assert 0.6 - reservation <= spent <= 0.6 + reservation, (spent, reservation, len(results))
