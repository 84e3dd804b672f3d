"""``toolbag …``: the command line. Human-readable by default, ``--json`` for scripts."""

from __future__ import annotations

import json
import os
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.text import Text

from toolbag.cli.fail import fail, print_error
from toolbag.cli.ports import check_listenable
from toolbag.cli.tables import Column, legible_table
from toolbag.config import Config, ConfigError, load_config, redis_url

if TYPE_CHECKING:
    from collections.abc import Sequence

    from prometheus_client.registry import Collector

    from toolbag.client import Client

app = typer.Typer(no_args_is_help=True, add_completion=False, help="toolbag: an open multi-model job fleet.")
console = Console(soft_wrap=True, highlight=False, emoji=False)  # job text is printed with markup=False
err_console = Console(stderr=True, soft_wrap=True, highlight=False, emoji=False)


def _config() -> Config:
    try:
        return load_config()
    except ConfigError as err:
        fail(str(err))


def _client() -> Client:
    from toolbag.client import Client

    return Client(_config())


def _parse_input(raw: str) -> Any:
    """``--input``: JSON text, or ``@file`` of UTF-8 JSON. Nesting the client would refuse is refused here too,
    before the parser can run out of stack."""
    from toolbag.client import MAX_INPUT_DEPTH

    if raw.startswith("@"):
        path = Path(raw[1:])
        try:
            raw = path.read_text(encoding="utf-8")
        except OSError as err:
            fail(f"--input: cannot read {path} ({err.strerror})")
        except UnicodeDecodeError as err:
            fail(f"--input: {path} is not UTF-8 text (byte {err.start}: 0x{err.object[err.start]:02x})")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as err:
        fail(f"--input: not valid JSON ({err.msg} at line {err.lineno} column {err.colno})")
    except RecursionError:
        fail(f"--input: nested deeper than {MAX_INPUT_DEPTH} levels")


@app.command()
def submit(
    capability: str = typer.Argument(None, help="What to do (e.g. summarize). Optional with --skill."),
    input: str = typer.Option(..., "--input", "-i", help="JSON input, or @file.json"),  # noqa: A002
    skill: str = typer.Option(None, "--skill", help="Run a skill from skills/"),
    tier: str = typer.Option(None, "--tier", help="interactive | standard | batch"),
    caller: str = typer.Option("cli", "--caller"),
    idempotency_key: str = typer.Option(None, "--idempotency-key"),
    deadline_s: float = typer.Option(None, "--deadline-s"),
    wait: bool = typer.Option(False, "--wait", help="Wait for the result"),
    timeout_s: float = typer.Option(120.0, "--timeout-s", min=0.0, help="How long --wait waits"),
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout"),
) -> None:
    """Submit a job for a capability (or a skill)."""
    from toolbag.jobs import ResultTimeout, SubmitError
    from toolbag.skills import SkillLoadError
    from toolbag.skills.cli import invalid_skill
    from toolbag.store.connection import RedisUnavailable

    client = _client()
    payload = _parse_input(input)
    try:
        job = client.submit(
            capability, input=payload, skill=skill, tier=tier, caller=caller,
            idempotency_key=idempotency_key, deadline_s=deadline_s,
        )
    except SubmitError as err:
        fail(str(err))
        return
    except RedisUnavailable as err:  # retryable: exit 1, not 2 (nothing the caller typed is wrong)
        fail(str(err), code=1)
    except SkillLoadError as err:
        fail(invalid_skill(skill, err))
    if not wait:
        status = job.status().value
        if as_json:
            print(json.dumps({"job_id": job.id, "status": status, "created": job.created}))
        else:
            console.print(f"{job.id} {status}" + ("" if job.created else " (existing job for this idempotency key)"))
        return
    try:
        result = job.result(timeout_s)
    except ResultTimeout as err:
        fail(str(err), code=3)
        return
    if as_json:
        data = result.to_dict()
        data["result"] = {k: data[k] for k in ("provider", "model", "output", "usage", "cost_usd", "error")}
        print(json.dumps(data))
    else:
        _print_result(result.to_dict())
    raise typer.Exit(0 if result.ok else 1)


def _print_result(r: dict[str, Any]) -> None:
    """A job for a person. Job text (input, output, reasons) is data: printed without markup."""
    from toolbag.jobs import path_label

    plain = partial(console.print, markup=False, highlight=False)
    attempts = [a for a in r.get("attempts", []) if a.get("type") == "attempt"]
    served = next((a for a in reversed(attempts) if a.get("outcome") == "ok"), None)
    plain(f"{r['job_id']} {r['status']}  {r.get('provider') or '-'}/{r.get('model') or '-'}"
          + (f" via {path_label(served)}" if served is not None else "")
          + f"  cost ${r.get('cost_usd', 0):.6f}")
    if r.get("error"):
        plain(f"  error: {r['error']}")
    out = r.get("output")
    if out is not None:
        plain(out if isinstance(out, str) else json.dumps(out, indent=2))
    for a in r.get("attempts", []):
        if a.get("type") == "attempt":
            plain(f"  attempt {a['n']}: {a['model']} {a['outcome']} {a.get('latency_s', 0):.3f}s"
                  f" via {path_label(a)}" + (f" — {a['reason']}" if a.get("reason") else ""))
        else:
            plain(f"  decision: {a['action']} {a.get('model') or ''} — {a['reason']}")


@app.command()
def status(job_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show a job's status, result and attempt history."""
    from toolbag.jobs import JobNotFound

    client = _client()
    try:
        record = client.store.get(job_id)
    except JobNotFound as err:
        fail(str(err))
        return
    if record.status.terminal:
        data = client.result(job_id, 0).to_dict()
    else:
        data = {"job_id": job_id, "status": record.status.value, "capability": record.capability,
                "tier": record.tier, "provider": record.provider, "model": record.model,
                "attempts": client.store.history(job_id), "output": None, "error": None, "cost_usd": 0}
    if as_json:
        print(json.dumps(data))
    else:
        _print_result(data)


@app.command()
def cancel(job_id: str) -> None:
    """Cancel a queued or running job."""
    from toolbag.jobs import JobNotFound

    try:
        done = _client().cancel(job_id)
    except JobNotFound as err:
        fail(str(err))
        return
    console.print("cancelled" if done else "already finished; nothing to cancel")


@app.command()
def queues(as_json: bool = typer.Option(False, "--json")) -> None:
    """Jobs waiting per provider × tier (queued, reserved but not started, or delayed) and the oldest wait."""
    from toolbag.store.queues import queue_stats

    client = _client()
    rows: list[dict[str, Any]] = []
    for q in queue_stats(client.store, client.config.providers):
        rows.append({"queue": q.queue, "provider": q.provider, "tier": q.tier, "depth": q.depth,
                     "waiting": q.waiting, "delayed": q.delayed, "oldest_age_s": q.oldest_age_s,
                     "messages": client.store.redis.llen(client.store.keys.queue(q.queue))})
    delayed = client.store.redis.zcard(client.store.keys.delayed)
    if as_json:
        print(json.dumps({"queues": rows, "delayed": delayed}))
        return
    columns = [Column(name) for name in ("queue", "depth", "waiting", "delayed", "oldest wait", "messages")]
    cells = [(r["queue"], str(r["depth"]), str(r["waiting"]), str(r["delayed"]), f"{r['oldest_age_s']:.1f}s",
              str(r["messages"])) for r in rows]
    console.print(legible_table(columns, cells, console.width))
    console.print(f"delayed (all queues): {delayed}")


METRICS_PORT_ENV = "TOOLBAG_METRICS_PORT"
_METRICS_HOST_HELP = ("Address /metrics listens on (default 0.0.0.0: Prometheus scrapes each process from another "
                      "host or container; 127.0.0.1 keeps it to this machine)")


def _metrics_port(explicit: int | None, default: int) -> int:
    from toolbag.settings import load_settings

    if explicit is not None:
        return explicit
    configured = load_settings().metrics_port  # checked before any command runs (main)
    return default if configured is None else configured


def _serve_metrics(port: int, role: str, host: str, collectors: Sequence[Collector] = ()) -> int:
    """``/metrics`` served, or one error line naming what to change: the port, or the host."""
    from toolbag.telemetry import metrics

    try:
        return metrics.serve(port, role, collectors=collectors, addr=host)
    except metrics.MetricsServeError as err:
        if err.port_taken:
            fail(f"--metrics-port: {err}; choose another with --metrics-port or {METRICS_PORT_ENV} (0 = any free port)")
        fail(f"--metrics-host: {err}")


def _need_worker_extra() -> None:
    """One error line when the fleet's own dependencies were not installed (a producer's install)."""
    import importlib.util

    missing = [name for name in ("celery", "starlette", "openai") if importlib.util.find_spec(name) is None]
    if missing:
        fail(f"this command runs the fleet and needs the worker extra ({', '.join(missing)} missing): "
             "pip install 'toolbag[worker]'")


_LOGLEVEL_HELP = "Level of toolbag's JSON logs (libraries log at WARNING unless DEBUG)"
_EVENTS_HELP = ("Send Celery task events (for Flower, `celery events` and exporters): each attempt shows as "
                "toolbag.attempt:<capability>:<tier>:<model>, failed when the attempt failed. Off by default: "
                "it costs throughput (docs/operating.md)")


def _logs(role: str, loglevel: str, config: Config | None) -> None:
    from toolbag.telemetry import logs

    try:
        logs.configure(role, loglevel, config=config)
    except ValueError as err:
        fail(f"--loglevel: {err}")


def _reachable_redis(who: str) -> None:
    """Wait for Redis before a long-running process starts (one log line while it is away); exit 1 with one
    line when it does not come within ``REDIS_START_WAIT_S``. A bad URL is exit 2."""
    import logging

    from toolbag.store.connection import (
        REDIS_START_WAIT_S,
        OutageLog,
        RedisUrlError,
        describe,
        redis_client,
        wait_until_reachable,
    )

    try:
        client = redis_client(redis_url(), socket_connect_timeout_s=2, socket_timeout_s=2)
    except RedisUrlError as err:
        fail(str(err))
    if not wait_until_reachable(client, REDIS_START_WAIT_S, OutageLog(logging.getLogger("toolbag.redis"), who)):
        fail(f"{who}: redis at {describe(redis_url())} did not answer within {REDIS_START_WAIT_S:g}s", code=1)


def _celery_ended(who: str, code: int) -> None:
    """A Celery worker that ended with an error ends this process with an error too (one line; the log above
    has the cause), so a restart-on-failure manager restarts it."""
    if code:
        fail(f"{who} stopped on an unrecoverable error (celery exit code {code}); see the log above", code=1)


@app.command()
def worker(
    provider: str = typer.Option(..., "--provider", "-p", help="Provider name from toolbag.yaml"),
    concurrency: int = typer.Option(None, "--concurrency", "-c", help="Attempts in flight"),
    attempt_loop: str = typer.Option("async", "--attempt-loop", envvar="TOOLBAG_ATTEMPT_LOOP",
                                     help="async: attempts on one event loop; threads: a thread per attempt"),
    metrics_port: int = typer.Option(None, "--metrics-port", min=0, max=65535,
                                     help="/metrics port (default 9100; 0 = any free)"),
    metrics_host: str = typer.Option("0.0.0.0", "--metrics-host", envvar="TOOLBAG_METRICS_HOST",
                                     help=_METRICS_HOST_HELP),
    loglevel: str = typer.Option("INFO", "--loglevel", envvar="TOOLBAG_LOG_LEVEL", help=_LOGLEVEL_HELP),
    events: bool = typer.Option(False, "--events", help=_EVENTS_HELP),
    alive_file: Path = typer.Option(None, "--alive-file", envvar="TOOLBAG_ALIVE_FILE",
                                    help="Touch this file from the consumer's loop (for `toolbag alive`)"),
) -> None:
    """Run a provider worker: consumes <provider>.interactive, .standard, .batch in that order."""
    _need_worker_extra()
    import logging

    from toolbag.store.connection import UNAVAILABLE_ERRORS
    from workers.app import make_app, worker_queues
    from workers.run import run_worker
    from workers.runtime import ATTEMPT_MODES, pool_threads, start_provider

    attempt_loop = attempt_loop.lower()
    if attempt_loop not in ATTEMPT_MODES:
        fail(f"--attempt-loop must be one of {', '.join(ATTEMPT_MODES)}, got {attempt_loop!r}")
    if concurrency is not None and concurrency < 1:
        fail(f"--concurrency must be at least 1, got {concurrency}")
    config = _config()
    _logs(f"worker:{provider}", loglevel, config)
    if provider not in config.providers:
        fail(f"--provider: unknown provider {provider!r}; configured: {', '.join(sorted(config.providers))}")
    n = concurrency or config.providers[provider].concurrency
    # /metrics first: a taken port stops the worker before it writes anything (a policy it would publish)
    port = _serve_metrics(_metrics_port(metrics_port, 9100), f"worker:{provider}", metrics_host)
    _reachable_redis(f"worker {provider}")
    try:
        runtime = start_provider(config, redis_url(), provider, slots=n, mode=attempt_loop)
    except ConfigError as err:
        fail(str(err))
        return
    except UNAVAILABLE_ERRORS as err:
        fail(f"worker {provider}: redis went away while starting ({type(err).__name__}: {err})", code=1)
    try:
        err_console.print(f"worker {provider}: {n} slots, metrics on {metrics_host}:{port}/metrics")
        logging.getLogger("toolbag.worker").info(
            "worker started", extra={"event": "started", "provider": provider, "slots": n, "metrics_port": port}
        )
        celery_app = make_app(config, redis_url(), task_events=events, alive_file=alive_file)
        code = run_worker(celery_app, [
            "worker", "-P", "threads", "-c", str(pool_threads(attempt_loop, n, task_events=events)),
            "-Q", ",".join(worker_queues(provider)),
            "-n", f"{provider}@%h-{os.getpid()}", "--without-gossip", "--without-mingle",
            "-l", loglevel,
        ])
    finally:
        runtime.stop()
    _celery_ended(f"worker {provider}", code)


@app.command()
def supervisor(
    concurrency: int = typer.Option(16, "--concurrency", "-c"),
    metrics_port: int = typer.Option(None, "--metrics-port", min=0, max=65535,
                                     help="/metrics port (default 9101; 0 = any free)"),
    metrics_host: str = typer.Option("0.0.0.0", "--metrics-host", envvar="TOOLBAG_METRICS_HOST",
                                     help=_METRICS_HOST_HELP),
    loglevel: str = typer.Option("INFO", "--loglevel", envvar="TOOLBAG_LOG_LEVEL", help=_LOGLEVEL_HELP),
    events: bool = typer.Option(False, "--events", help="Send Celery task events (Flower, `celery events`)"),
) -> None:
    """Run the supervisor: decisions after failures, and the sweeps (safe to run two)."""
    _need_worker_extra()
    import logging

    from toolbag.store.connection import UNAVAILABLE_ERRORS
    from toolbag.store.messages import SUPERVISOR_QUEUE
    from toolbag.telemetry import metrics
    from workers.app import make_app
    from workers.run import run_worker
    from workers.runtime import start_supervisor

    config = _config()
    _logs("supervisor", loglevel, config)
    _reachable_redis("supervisor")
    try:
        runtime = start_supervisor(config, redis_url())
    except UNAVAILABLE_ERRORS as err:
        fail(f"supervisor: redis went away while starting ({type(err).__name__}: {err})", code=1)
    try:
        fleet_counters = metrics.FleetCounters(runtime.store.redis, runtime.store.keys.stats)
        port = _serve_metrics(_metrics_port(metrics_port, 9101), "supervisor", metrics_host, [fleet_counters])
        err_console.print(f"supervisor: metrics on {metrics_host}:{port}/metrics")
        logging.getLogger("toolbag.supervisor").info(
            "supervisor started", extra={"event": "started", "metrics_port": port}
        )
        celery_app = make_app(config, redis_url(), task_events=events)
        code = run_worker(celery_app, [
            "worker", "-P", "threads", "-c", str(concurrency), "-Q", SUPERVISOR_QUEUE,
            "-n", f"supervisor@%h-{os.getpid()}", "--without-gossip", "--without-mingle", "-l", loglevel,
        ])
    finally:
        runtime.stop()
    _celery_ended("supervisor", code)


@app.command()
def simulator(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8900, "--port", min=1, max=65535),
    faults: Path = typer.Option(None, "--faults", help="YAML fault plan; `example` = the example that ships "
                                "with toolbag (every option, commented)"),
    metrics_port: int = typer.Option(
        None, "--metrics-port", min=0, max=65535,
        help="/metrics port: requests by vendor, fault and status (default 9102; 0 = any)"
    ),
    loglevel: str = typer.Option("INFO", "--loglevel", envvar="TOOLBAG_LOG_LEVEL", help=_LOGLEVEL_HELP),
) -> None:
    """Serve the Anthropic, OpenAI and Gemini wire protocols on one port, with fault injection."""
    _need_worker_extra()
    from toolbag.simulator.faults import FaultPlan
    from toolbag.simulator.server import serve_forever
    from toolbag.telemetry import metrics

    check_listenable(host, port)
    _logs("simulator", loglevel, None)
    plan = None
    if faults is not None and str(faults) == "example" and not faults.exists():
        faults = Path(__file__).resolve().parents[1] / "simulator" / "faults.example.yaml"
    if faults is not None:
        try:
            plan = FaultPlan.from_file(faults)
        except Exception as err:  # the plan loader phrases its own errors
            fail(str(err))
    try:
        bound = metrics.serve(_metrics_port(metrics_port, 9102), role="simulator", addr=host)
        where = f"metrics on {host}:{bound}/metrics"
    except metrics.MetricsServeError as err:  # a dev tool: a busy metrics port must not stop it
        where = f"no /metrics ({err}; choose another with --metrics-port)"
    err_console.print(f"simulator on http://{host}:{port}, {where}")
    serve_forever(host, port, plan)


@app.command("eval")
def eval_(
    name: str = typer.Argument(None, help="One skill (default: all)"),
    provider: str = typer.Option("all", "--provider", "-p", help="A provider name, or all"),
    semantic: bool = typer.Option(None, "--semantic/--no-semantic",
                                  help="Judge content checks too (default: only for providers with real keys)"),
    timeout_s: float = typer.Option(300.0, "--timeout-s", min=0.0),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run skills' eval cases through the fleet and print a pass table of skill × provider."""
    from toolbag.client import Client
    from toolbag.providers.registry import resolve_provider
    from toolbag.skills import SkillLibrary, SkillLoadError, default_skills_dir
    from toolbag.skills.cli import invalid_skill
    from toolbag.skills.fleet_evals import run_evals

    config = _config()
    providers = list(config.providers) if provider == "all" else [provider]
    unknown = [p for p in providers if p not in config.providers]
    if unknown:
        fail(f"--provider: unknown provider {unknown[0]!r}; configured: {', '.join(config.providers)}")
    library = SkillLibrary(default_skills_dir())
    names = [name] if name else list(library.names())
    if name and name not in library.names():
        fail(f"unknown skill {name!r}; known: {', '.join(library.names())}")
    for skill_name in names:
        try:
            library.get(skill_name)
        except SkillLoadError as err:
            fail(invalid_skill(skill_name, err))
    if semantic is None:
        semantic = all(resolve_provider(p, config).source != "simulator" for p in providers)
    results = run_evals(Client(config), names, providers, semantic=semantic, timeout_s=timeout_s)
    if as_json:
        print(json.dumps([r.__dict__ for r in results]))
    else:
        rows = []
        for skill_name in names:
            cells = [skill_name]
            for p in providers:
                mine = [r for r in results if r.skill == skill_name and r.provider == p]
                passed = sum(r.passed for r in mine)
                cells.append(f"{passed}/{len(mine)}" if mine else "-")
            rows.append(cells)
        console.print(legible_table([Column("skill"), *(Column(p) for p in providers)], rows, console.width,
                                    title=f"evals ({'with' if semantic else 'without'} semantic checks)"))
        for r in results:
            if not r.passed:
                problems = "; ".join(r.problems)
                console.print(Text.assemble(("FAIL", "red"), f" {r.skill}/{r.case} on {r.model}: {problems}"))
    raise typer.Exit(0 if all(r.passed for r in results) else 1)


@app.command()
def alive(
    file: Path = typer.Option(..., "--file", envvar="TOOLBAG_ALIVE_FILE", help="The worker's --alive-file"),
    max_age_s: float = typer.Option(60.0, "--max-age-s", min=1.0, help="Older than this: the consumer is wedged"),
) -> None:
    """Liveness of a worker's consumer: exit 0 while its loop touches --file; exit 1 when the file is older than
    --max-age-s and Redis answers (the consumer is wedged: restart it). With Redis unreachable the consumer
    cannot run either way, so it stays alive: a Redis outage must not restart every worker."""
    import time

    import redis as redis_lib

    try:
        age_s = time.time() - file.stat().st_mtime
    except OSError as err:
        fail(f"--file: cannot read {file} ({err.strerror}); is the worker started with --alive-file {file}?", code=1)
    if age_s <= max_age_s:
        console.print(f"ok: the consumer's loop ran {age_s:.1f} s ago")
        return
    try:
        redis_lib.Redis.from_url(redis_url(), socket_connect_timeout=2, socket_timeout=2).ping()
    except redis_lib.RedisError:
        console.print(f"ok: the consumer's loop last ran {age_s:.0f} s ago, but Redis is unreachable (not the "
                      "worker's fault)")
        return
    fail(f"the consumer's loop has not run for {age_s:.0f} s (more than --max-age-s {max_age_s:g}) while Redis "
         "answers: the consumer is wedged", code=1)


@app.command()
def health() -> None:
    """Exit 0 when the config loads and Redis answers (for container health checks)."""
    import redis as redis_lib

    from toolbag.store.connection import RedisUrlError, describe, redis_client

    _config()
    try:
        redis_client(redis_url(), socket_connect_timeout_s=2, socket_timeout_s=2).ping()
    except RedisUrlError as err:
        fail(str(err))
    except redis_lib.RedisError as err:
        fail(f"redis at {describe(redis_url())} is unreachable: {err}", code=1)
    console.print("ok")


@app.command()
def dev(
    demo: bool = typer.Option(True, "--demo/--no-demo", help="Submit a short demo workload"),
    exit_after_demo: bool = typer.Option(False, "--exit-after-demo", help="Stop once the demo has finished"),
    redis_url_: str = typer.Option(
        None, "--redis-url", help="Redis to use (default $TOOLBAG_REDIS_URL); a free local port is started there, "
        "none given: a private redis-server on a free port"),
    simulator_port: int = typer.Option(None, "--simulator-port", min=1, max=65535,
                                       help="Simulator port (default 8900, else any free)"),
    metrics_port: int = typer.Option(None, "--metrics-port", min=1, max=65535,
                                     help="First /metrics port (default 9100, else free)"),
    logs_dir: Path = typer.Option(None, "--logs-dir", help="Keep the processes' logs in this folder (default: a "
                                  "temporary folder, removed on exit unless something failed)"),
) -> None:
    """Run everything locally: Redis (the one asked for, or a private one), simulator, one worker per provider,
    supervisor."""
    _need_worker_extra()
    from toolbag.devfleet.dev import DevFleetError, run_dev

    try:
        code = run_dev(demo=demo, exit_after_demo=exit_after_demo, redis_url=redis_url_,
                       simulator_port=simulator_port, metrics_port=metrics_port, logs_dir=logs_dir)
    except (ConfigError, DevFleetError) as err:
        fail(str(err))
    sys.exit(code)


def _mount_optional() -> None:
    from toolbag.escalations.cli import app as escalations_app

    app.add_typer(escalations_app, name="escalations", help="The human escalation inbox.")
    from toolbag.bulk.cli import app as bulk_app

    app.add_typer(bulk_app, name="batch", help="Run a JSONL or CSV file through the fleet (resumable).")
    from toolbag.api.cli import register as register_api

    register_api(app)
    from toolbag.console.cli import register as register_console

    register_console(app)
    from toolbag.budgets.cli import register as register_budgets

    register_budgets(app)
    try:
        from toolbag.skills.cli import app as skills_app
    except ImportError:
        return
    app.add_typer(skills_app, name="skills", help="List, show, validate and render skills.")
    from toolbag.gateway.cli import audit_app, permissions_app, tools_app

    app.add_typer(permissions_app, name="permissions", help="Tool policy: explain, list, publish, show.")
    app.add_typer(audit_app, name="audit", help="The tool gateway's audit trail: tail, query.")
    app.add_typer(tools_app, name="tools", help="The tools the gateway can reach.")
    from toolbag.governance.cli import register as register_governance

    register_governance(app)


_mount_optional()


def main() -> None:
    """Run the CLI. A usage error (unknown command or option, a bad value) is one ``error:`` line and exit 2,
    like every other error; a command's own exit code is the process's."""
    from toolbag.settings import SettingsError, load_settings
    from toolbag.store.connection import UNAVAILABLE_ERRORS, RedisUnavailable, describe

    redis_away: tuple[type[Exception], ...] = (RedisUnavailable, *UNAVAILABLE_ERRORS)

    try:
        load_settings()  # every TOOLBAG_* variable, checked before any command runs
    except SettingsError as err:
        print_error(str(err))
        sys.exit(2)
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as err:
        message = err.format_message()
        if message:  # empty: the help was printed instead (a group called without a command)
            context = getattr(err, "ctx", None)
            print_error(message.rstrip(".") + (f"; see `{context.command_path} --help`" if context else ""))
        sys.exit(err.exit_code)
    except typer.Abort:
        print_error("aborted")
        sys.exit(1)
    except redis_away as err:  # retryable: exit 1, not a usage error
        print_error(f"redis at {describe(redis_url())} is unavailable ({type(err).__name__}); start it, or set "
                    "TOOLBAG_REDIS_URL to one that runs, and try again")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
