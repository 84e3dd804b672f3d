"""A real Prometheus scraping a real fleet: the series and values an SRE relies on, and no secret anywhere.

One fleet for the module: three provider workers and a supervisor (CLI processes, canary API keys, a Redis
user with a password, debug logging), the simulator as its own CLI process with a fault plan of deterministic
sequences, and the Debian ``prometheus`` server scraping all five ``/metrics`` endpoints every second with
toolbag's alert rules loaded.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from tests.fleet import REPO, CliSimulator, Fleet, cli_simulator, free_port, running_fleet, terminate, wait_http
from tests.test_metrics import promtool_check
from toolbag.config import TIERS
from toolbag.providers.registry import resolve_provider

CANARY = "sk-canary-9e3b1f7c2d8a4b6e0f1a3c5e7b9d2f4a"
REDIS_USER, REDIS_PASSWORD = "tbobserved", "redis-canary-pw-3a8d6c1e0f"
PROVIDERS = ("anthropic", "openai", "gemini")
KEY_ENVS = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY", "gemini": "GEMINI_API_KEY"}

# Deterministic faults: each rule fires only on texts carrying its marker, sequences fire exactly once per entry.
FAULT_PLAN = {
    "rules": [
        {"model": "claude-*", "match": "REFUSE", "fault": "refusal"},
        {"model": "gemini-*", "match": "FLAKY", "sequence": ["server_error", "overloaded"]},
        {"model": "gpt-*", "match": "SLOWDOWN", "sequence": ["rate_limit:1", "rate_limit:1"]},
    ]
}
N_REFUSE, N_FLAKY, N_SLOWDOWN, N_PLAIN = 5, 5, 3, 9
N_JOBS = N_REFUSE + N_FLAKY + N_SLOWDOWN + N_PLAIN
EXPECTED_ATTEMPTS = {"refused": N_REFUSE, "server_error": 1, "overloaded": 1, "rate_limited": 2, "ok": N_JOBS}
EXPECTED_FAULTS = {"refusal": N_REFUSE, "server_error": 1, "overloaded": 1, "rate_limit": 2, "ok": N_JOBS}
FAULT_OUTCOME = {"refusal": "refused", "server_error": "server_error", "overloaded": "overloaded",
                 "rate_limit": "rate_limited", "ok": "ok"}


@dataclass
class Observed:
    fleet: Fleet
    simulator: CliSimulator
    prometheus_url: str
    tmp: Path
    keys: dict[str, str]  # API key variable -> canary value
    secrets: list[str]  # every canary: API keys and the Redis password

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def by(self, promql: str, label: str) -> dict[str, float]:
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in self.query(promql)}

    def scalar(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def expect(self, promql: str, expected: float) -> float | None:
        """Assert that ``promql`` (one value) comes to equal ``expected``."""
        value = settle(lambda: self.scalar(promql), float(expected))
        assert value == expected, f"{promql}: {value}, expected {expected}"
        return value

    def expect_by(self, promql: str, label: str, expected: dict[str, float]) -> dict[str, float]:
        """Assert that ``promql``, keyed by ``label``, comes to equal ``expected``."""
        want = {k: float(v) for k, v in expected.items()}
        value: dict[str, float] = settle(lambda: self.by(promql, label), want)
        assert value == want, f"{promql}: {value}, expected {want}"
        return value

    def metrics_urls(self) -> dict[str, str]:
        ports = {**self.fleet.metrics_ports, "simulator": self.simulator.metrics_port}
        return {name: f"http://127.0.0.1:{port}/metrics" for name, port in ports.items()}


def settle(read: Callable[[], Any], expected: Any, timeout_s: float = 45.0) -> Any:
    """``read()`` until it returns ``expected`` (Prometheus scrapes every second) or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    value = read()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.5)
        value = read()
    return value


@contextmanager
def prometheus_server(tmp: Path, targets: dict[str, list[int]]) -> Iterator[str]:
    """The Debian ``prometheus`` server scraping ``targets`` (job -> ports) every second, with toolbag's rules."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the prometheus server is missing: run scripts/install-test-tools.sh (Debian package prometheus)")
    rules_dir = REPO / "deploy" / "prometheus"
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules_dir / "rules.yml"), str(rules_dir / "budget.yml")],
        "scrape_configs": [
            {"job_name": f"toolbag-{job}", "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in ports]}]}
            for job, ports in targets.items()
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(tmp / "prometheus.out", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/-/ready", timeout_s=60)
        yield url
    finally:
        terminate(proc)
        log.close()


def _workload(fleet: Fleet) -> None:
    client = fleet.client
    jobs = [client.submit("obs-refusal", input={"text": f"REFUSE {i}"}) for i in range(N_REFUSE)]
    jobs += [client.submit("obs-flaky", input={"text": f"FLAKY {i}"}, tier="batch") for i in range(N_FLAKY)]
    jobs += [client.submit("obs-slowdown", input={"text": f"SLOWDOWN {i}"}) for i in range(N_SLOWDOWN)]
    jobs += [client.submit(f"probe-{PROVIDERS[i % 3]}", input={"text": f"plain {i}"}, tier=TIERS[i % 3],
                           caller=f"caller-{i}") for i in range(N_PLAIN)]
    results = [job.result(90) for job in jobs]
    assert all(r.ok for r in results), [(r.status, r.error) for r in results if not r.ok]


@pytest.fixture(scope="module")
def observed(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    tmp = tmp_path_factory.mktemp("observed")
    admin = redis.Redis.from_url(redis_server)
    admin.execute_command("ACL", "SETUSER", REDIS_USER, "on", f">{REDIS_PASSWORD}", "~*", "&*", "+@all")
    secured_url = redis_server.replace("redis://", f"redis://{REDIS_USER}:{REDIS_PASSWORD}@")
    keys = {env: f"{CANARY}-{provider}" for provider, env in KEY_ENVS.items()}
    (tmp / "faults.yaml").write_text(yaml.safe_dump(FAULT_PLAN))
    try:
        with cli_simulator(tmp, tmp / "faults.yaml") as sim:
            providers = {"anthropic": {"kind": "anthropic", "base_url": sim.url},
                         "openai": {"kind": "openai", "base_url": f"{sim.url}/v1"},
                         "gemini": {"kind": "gemini", "base_url": sim.url}}
            models = {"claude-haiku": "anthropic", "gpt-luna": "openai", "gemini-flash": "gemini"}
            routes = {f"probe-{p}": {t: {"candidates": [m]} for t in TIERS} for m, p in models.items()}
            routes["obs-refusal"] = {t: {"candidates": ["claude-haiku", "gpt-luna"]} for t in TIERS}
            routes["obs-flaky"] = {t: {"candidates": ["gemini-flash"]} for t in TIERS}
            routes["obs-slowdown"] = {t: {"candidates": ["gpt-luna"]} for t in TIERS}
            from tests.fleet import fleet_config_dict

            base = fleet_config_dict(sim.url)
            overrides = {
                "providers": providers,
                "models": {name: spec for name, spec in base["models"].items() if name in models},
                "routes": routes,
            }
            with running_fleet(secured_url, tmp, providers=PROVIDERS, simulator=sim, metrics_ports=True,
                               env={**keys, "TOOLBAG_LOG_LEVEL": "DEBUG"}, config_overrides=overrides) as fleet:
                targets = {"worker": [fleet.metrics_ports[f"worker-{p}"] for p in PROVIDERS],
                           "supervisor": [fleet.metrics_ports["supervisor"]], "simulator": [sim.metrics_port]}
                for url in [f"http://127.0.0.1:{p}/metrics" for ports in targets.values() for p in ports]:
                    wait_http(url)
                with prometheus_server(tmp, targets) as prometheus_url:
                    _workload(fleet)
                    yield Observed(fleet, sim, prometheus_url, tmp, keys, [*keys.values(), REDIS_PASSWORD])
    finally:
        admin.execute_command("ACL", "DELUSER", REDIS_USER)


def test_prometheus_sees_the_workload(observed: Observed) -> None:
    o = observed
    # A scrape can miss its 1 s timeout on a loaded machine (its series go stale for a second): every read
    # below waits, boundedly, for the expected value and then asserts it.
    o.expect_by("sum by (job) (up)", "job", {"toolbag-worker": 3, "toolbag-supervisor": 1, "toolbag-simulator": 1})

    # Jobs finished equals jobs submitted: fleet-wide counts from Redis, exported by the supervisor.
    o.expect("sum(toolbag_jobs_submitted_total)", N_JOBS)
    o.expect("sum(toolbag_jobs_finished_total)", N_JOBS)
    o.expect_by("sum by (status) (toolbag_jobs_finished_total)", "status", {"succeeded": N_JOBS})
    o.expect_by("sum by (capability) (toolbag_jobs_submitted_total)", "capability", {
        "obs-refusal": N_REFUSE, "obs-flaky": N_FLAKY, "obs-slowdown": N_SLOWDOWN,
        "probe-anthropic": 3, "probe-openai": 3, "probe-gemini": 3})

    # Attempts by outcome are exactly what the simulator injected, seen from both sides.
    attempts = o.expect_by("sum by (outcome) (toolbag_attempts_total)", "outcome", EXPECTED_ATTEMPTS)
    faults = o.expect_by("sum by (fault) (toolbag_simulator_requests_total)", "fault", EXPECTED_FAULTS)
    assert {FAULT_OUTCOME[f]: n for f, n in faults.items()} == attempts
    o.expect_by('sum by (provider) (toolbag_attempts_total{outcome="refused"})', "provider", {"anthropic": N_REFUSE})
    o.expect_by('sum by (from_provider) (toolbag_reroutes_total{to_provider="openai"})', "from_provider",
                {"anthropic": N_REFUSE})
    o.expect_by("sum by (provider) (toolbag_sdk_errors_total)", "provider",
                {"anthropic": N_REFUSE, "gemini": 2, "openai": 2})
    # one queue wait per claim: every attempt, plus every hand-back (a job that met the 429's cooldown and was
    # handed back to the delayed set rather than wait in-process: a matter of milliseconds either way)
    o.expect("sum(toolbag_queue_wait_seconds_count) - (sum(toolbag_ratelimit_deferrals_total) or vector(0))"
             " - (sum(toolbag_ratelimit_spillovers_total) or vector(0))", N_JOBS + 2 + 2 + N_REFUSE)
    o.expect("sum(toolbag_job_duration_seconds_count)", N_JOBS)
    o.expect("sum(toolbag_tokens_total) > bool 0", 1)
    o.expect("sum(toolbag_cost_usd_total) > bool 0", 1)

    # Every process says who it is; the supervisor's gauges settle to an empty fleet with live workers.
    o.expect_by("toolbag_build_info", "role", {"worker:anthropic": 1, "worker:openai": 1, "worker:gemini": 1,
                                               "supervisor": 1, "simulator": 1})
    o.expect("sum(toolbag_queue_depth)", 0)
    o.expect("count(toolbag_queue_depth)", len(PROVIDERS) * len(TIERS))
    o.expect("sum(toolbag_delayed_jobs)", 0)
    o.expect_by("max by (provider) (toolbag_workers_up)", "provider", {p: 1 for p in PROVIDERS})
    o.expect("sum(toolbag_inflight_attempts)", 0)

    # The alert and recording rules evaluate against these real series without errors, and none fires.
    with urllib.request.urlopen(f"{o.prometheus_url}/api/v1/rules", timeout=10) as resp:
        groups = json.load(resp)["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) > 10 and all(rule["health"] == "ok" for rule in rules), [
        (r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not o.query('ALERTS{alertstate="firing"}')


def test_promtool_accepts_every_metrics_page(observed: Observed) -> None:
    for name, url in observed.metrics_urls().items():
        with urllib.request.urlopen(url, timeout=10) as resp:
            page = resp.read().decode()
        assert "toolbag_build_info" in page, name
        promtool_check(page)


def _redis_dump(client: redis.Redis) -> str:
    """Every key and value in the database, as text."""
    out = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        value: Any
        if kind == "string":
            value = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "set":
            value = client.smembers(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = client.xrange(key)
        else:
            value = kind
        out.append(f"{key!r} {value!r}")
    return "\n".join(out)


def test_no_secret_in_logs_metrics_job_records_or_audit(observed: Observed) -> None:
    o = observed
    fleet = o.fleet
    for provider in PROVIDERS:  # the workers call the vendors with the canary keys, not the simulator's
        resolved = resolve_provider(provider, fleet.config, o.keys)
        assert resolved.source == "env" and resolved.api_key in o.secrets
    # Failures whose vendor errors talk about keys, then read everything the fleet wrote.
    jobs = [fleet.client.submit(f"probe-{p}", input={"text": f"[[sim:{fault}]] {p}"}, tier="interactive")
            for p in PROVIDERS for fault in ("auth", "permission", "bad_request")]
    results = [job.result(60) for job in jobs]
    assert any(a.get("outcome") == "auth" for r in results for a in r.attempts)
    pages = {}
    for name, url in o.metrics_urls().items():
        with urllib.request.urlopen(url, timeout=10) as resp:
            pages[name] = resp.read().decode()
    store = fleet.client.store
    dump = _redis_dump(store.redis)
    assert all(job.id in dump for job in jobs) and store.redis.xlen(store.keys.audit) > 0
    logs = {path.name: path.read_text(errors="replace") for path in o.tmp.glob("*.log")}
    assert {"worker-anthropic.log", "worker-openai.log", "worker-gemini.log", "supervisor.log",
            "simulator.log"} <= set(logs)
    attempt_lines = [json.loads(line) for text in logs.values() for line in text.splitlines()
                     if line.startswith("{") and '"event": "attempt"' in line]
    assert any(line["outcome"] == "auth" and line["job_id"] in {j.id for j in jobs} for line in attempt_lines)
    for where, text in [*logs.items(), *pages.items(), ("redis", dump)]:
        for secret in o.secrets:
            assert secret not in text, f"a secret appears in {where}"
