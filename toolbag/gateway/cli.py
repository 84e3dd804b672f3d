"""``toolbag permissions …``, ``toolbag audit …`` and ``toolbag tools …`` (mounted by :mod:`toolbag.cli`).

Exit codes: 0 ok (``explain``: allowed), 1 denied (``explain``), 2 bad usage or config, or a refused ``publish``.
Everything printed that comes from a policy, a tool or a person is data, never Rich markup.
"""

from __future__ import annotations

import getpass
import json
import re
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
import typer
from rich.console import Console
from rich.text import Text

from toolbag.cli.fail import fail, one_line
from toolbag.cli.tables import Column, legible_table
from toolbag.config import Config, ConfigError, load_config, redis_url
from toolbag.gateway.audit import AuditFilter, RedisAuditReader, read_jsonl
from toolbag.gateway.live import PolicyStore
from toolbag.gateway.policy import Policy, PolicyError, Subject, default_policy_path, load_policy_file
from toolbag.gateway.settings import load_gateway_settings
from toolbag.store.keys import Keys

__all__ = ["audit_app", "permissions_app", "tools_app"]

permissions_app = typer.Typer(no_args_is_help=True, add_completion=False,
                              help="The tool policy: explain a decision, list grants, publish, show the live version.")
audit_app = typer.Typer(no_args_is_help=True, add_completion=False,
                        help="The gateway's audit trail: tail it or query it.")
tools_app = typer.Typer(no_args_is_help=True, add_completion=False, help="The tools the gateway can reach.")
console = Console(soft_wrap=True, markup=False, highlight=False, emoji=False)
err_console = Console(stderr=True, soft_wrap=True, markup=False, highlight=False, emoji=False)

EXIT_DENIED = 1  # ``explain``: denied. An answer, not a usage error.


def _cells(*values: object) -> list[str]:
    return [str(v) for v in values]


def _config() -> Config:
    try:
        return load_config()
    except ConfigError as err:
        fail(str(err))


def _redis_and_keys(config: Config) -> tuple[redis.Redis, Keys]:
    from toolbag.store.connection import redis_client

    return redis_client(redis_url(), socket_connect_timeout_s=3, socket_timeout_s=10), Keys(config.fleet.key_prefix)


def _policy(config: Config, file: Path | None) -> tuple[Policy, str]:
    """``--file``, else the live policy in Redis, else the local policy file; and a line saying which."""
    if file is not None:
        try:
            return load_policy_file(file), f"file {file}"
        except PolicyError as err:
            fail(str(err))
    try:
        client, keys = _redis_and_keys(config)
        live = PolicyStore(client, keys).load()
        if live is not None:
            return live, f"live policy in redis ({keys.policy})"
    except redis.RedisError as err:
        err_console.print(Text(f"redis unreachable ({type(err).__name__}); using the local file", style="yellow"))
    except PolicyError as err:
        fail(str(err))
    path = default_policy_path()
    if path is None:
        return Policy.empty(), "no policy anywhere (everything denied)"
    try:
        return load_policy_file(path), f"local file {path} (not published)"
    except PolicyError as err:
        fail(str(err))


def _subject(config: Config, agent: str, model: str, provider: str | None) -> Subject:
    """``model`` is a config model name, or ``provider/model-id``."""
    if model in config.models:
        m = config.models[model]
        return Subject(agent, provider or m.provider, model, m.model_id)
    if "/" in model:
        prov, model_id = model.split("/", 1)
        return Subject(agent, provider or prov, model_id, model_id)
    return Subject(agent, provider or "", model, model)


# ------------------------------------------------------------------------------------ permissions


@permissions_app.command("explain")
def explain(
    agent: str = typer.Option(..., "--agent", "-a", help="The caller (agent) name"),
    model: str = typer.Option(..., "--model", "-m", help="A model from toolbag.yaml, or provider/model-id"),
    tool: str = typer.Option(..., "--tool", "-t", help="Gateway tool name, e.g. clock.now or notes.read"),
    args: str | None = typer.Option(None, "--args", help="JSON arguments (without: may the tool be offered?)"),
    provider: str | None = typer.Option(None, "--provider", help="Override the provider"),
    file: Path | None = typer.Option(None, "--file", "-f",
                                     help="Explain with this policy file instead of the live one"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Which rule decides whether AGENT on MODEL may call TOOL, and why. Exit 0 allowed, 1 denied."""
    config = _config()
    policy, source = _policy(config, file)
    subject = _subject(config, agent, model, provider)
    arguments: dict[str, Any] | None = None
    if args is not None:
        try:
            parsed = json.loads(args)
        except json.JSONDecodeError as err:
            fail(f"--args: not valid JSON ({err.msg})")
        if not isinstance(parsed, dict):
            fail("--args must be a JSON object")
        arguments = parsed
    decision = policy.decide(subject, tool, arguments)
    if as_json:
        typer.echo(json.dumps({
            "allowed": decision.allowed, "decision": decision.word, "rule": decision.rule_id,
            "reason": decision.reason, "policy_version": decision.policy_version,
            "policy_digest": decision.policy_digest, "policy_source": source,
            "subject": {"agent": subject.agent, "provider": subject.provider, "model": subject.model,
                        "model_id": subject.model_id},
            "tool": tool, "arguments_checked": arguments is not None,
            "rules": [{"id": t.rule_id, "effect": t.effect, "matched": t.matched, "applies": t.applies,
                       "why": t.why} for t in decision.trace],
        }, indent=2))
    else:
        verdict = ("ALLOW", "bold green") if decision.allowed else ("DENY", "bold red")
        what = "call" if arguments is not None else "be offered"
        who = f"{agent} on {subject.provider}/{subject.model}" + (
            f" ({subject.model_id})" if subject.model_id != subject.model else ""
        )
        console.print(Text.assemble(verdict, f"  {who} may {'' if decision.allowed else 'not '}{what} {tool}"))
        decider = f"rule {decision.rule_id!r}" if decision.rule_id else "default deny"
        console.print(f"  decided by: {decider} — {decision.reason}")
        console.print(f"  policy: version {decision.policy_version} {decision.policy_digest[:19]} ({source})")
        if arguments is None and any(r.args for r in policy.rules):
            console.print("  (arguments not given: rules with argument constraints are checked at call time)")
        for t in decision.trace:
            mark = ("applies", "green") if t.applies else ("matches", "yellow") if t.matched else ("no     ", "dim")
            console.print(Text.assemble(f"  {t.rule_id:<28} {t.effect:<5} ", mark, f"  {t.why}"))
    raise typer.Exit(0 if decision.allowed else EXIT_DENIED)


@permissions_app.command("list")
def list_rules(
    agent: str | None = typer.Option(None, "--agent", "-a", help="With --model: the tools this agent is offered"),
    model: str | None = typer.Option(None, "--model", "-m"),
    file: Path | None = typer.Option(None, "--file", "-f"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The policy's rules; with --agent and --model, every known tool and whether it is granted."""
    config = _config()
    policy, source = _policy(config, file)
    if agent is None or model is None:
        if as_json:
            typer.echo(json.dumps({"version": policy.version, "digest": policy.digest, "source": source,
                                   "rules": [r.model_dump(mode="json") for r in policy.rules]}, indent=2))
            return
        console.print(f"policy version {policy.version} {policy.digest[:19]} ({source})")
        columns = [Column("id"), Column("effect"), Column("agents", whole=False), Column("models", whole=False),
                   Column("tools", whole=False), Column("args", whole=False), Column("expires")]
        rules = [_cells(r.id, r.effect, " ".join(r.agents), " ".join(r.models), " ".join(r.tools),
                        ", ".join(r.args) or "-", r.expires.isoformat() if r.expires else "-") for r in policy.rules]
        console.print(legible_table(columns, rules, console.width))
        return
    from toolbag.gateway.registry import ToolRegistry

    subject = _subject(config, agent, model, None)
    registry = ToolRegistry(load_gateway_settings())
    try:
        catalog = registry.catalog()
    finally:
        registry.close()
    rows = [(name, policy.decide(subject, name, None)) for name in catalog]
    if as_json:
        typer.echo(json.dumps([{"tool": n, "offered": d.allowed, "rule": d.rule_id, "reason": d.reason}
                               for n, d in rows], indent=2))
        return
    columns = [Column("tool"), Column("offered"), Column("rule"), Column("reason", whole=False)]
    cells = [_cells(name, "yes" if d.allowed else "no", d.rule_id or "-", d.reason) for name, d in rows]
    console.print(legible_table(columns, cells, console.width))


@permissions_app.command("publish")
def publish(
    file: Path | None = typer.Option(None, "--file", "-f", help="Default: $TOOLBAG_POLICY or ./policy.yaml"),
    force: bool = typer.Option(False, "--force", help="Publish even an older version (a deliberate rollback)"),
) -> None:
    """Make a policy file the fleet's live policy (applies on the next tool call of every worker).

    Exit 2 when refused, with one error line saying what to change: the file is older than the live policy
    (without --force), or has the live version with other text."""
    config = _config()
    path = file or default_policy_path()
    if path is None:
        fail("no policy file: pass --file or create ./policy.yaml")
    try:
        policy = load_policy_file(path)
        client, keys = _redis_and_keys(config)
        store = PolicyStore(client, keys, load_gateway_settings().audit.stream_maxlen)
        result = store.publish(policy, force=force, who=_publishing_user())
    except (PolicyError, ConfigError) as err:
        fail(str(err))
    except redis.RedisError as err:
        fail(f"redis: {err}")
    if result.status == "published":
        console.print(f"published {path}: version {policy.version} {policy.digest[:19]}")
        return
    if result.status == "unchanged":
        console.print(f"unchanged: version {result.live_version} is already live")
        return
    if result.status == "older":
        fail(f"refused: {path} has version {policy.version}, older than the live version {result.live_version}; "
             "raise `version`, or pass --force to roll back on purpose")
    fail(f"refused: version {policy.version} is live with other text; raise `version` in {path}")


def _publishing_user() -> str:
    """Who is publishing, as ``user@host`` (recorded with the live policy and in the audit)."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (a bare container)
        user = "?"
    return f"{user}@{socket.gethostname()}"


@permissions_app.command("show")
def show(as_json: bool = typer.Option(False, "--json")) -> None:
    """The live policy's version, digest and when it was published; and whether the local file matches."""
    config = _config()
    try:
        client, keys = _redis_and_keys(config)
        info = PolicyStore(client, keys).info()
    except redis.RedisError as err:
        fail(f"redis: {err}")
    path = default_policy_path()
    local: dict[str, Any] = {}
    if path is not None:
        try:
            lp = load_policy_file(path)
            local = {"path": str(path), "version": lp.version, "digest": lp.digest,
                     "matches_live": lp.digest == info.get("digest")}
        except PolicyError as err:
            local = {"path": str(path), "error": str(err)}
    if as_json:
        typer.echo(json.dumps({"live": info, "local": local}, indent=2))
        return
    for line in _policy_summary(info, local):
        console.print(line)


_PUBLISHER = re.compile(r"^(?P<user>.*)@(?P<host>[^@]*):(?P<pid>\d+)$")


def _publisher(raw: str) -> str:
    """``user@host:pid`` (how the fleet records who published) in words; anything else as it is."""
    match = _PUBLISHER.match(raw)
    if not match:
        return raw or "an unknown publisher"
    user = match["user"] if match["user"] not in ("", "?") else "an unnamed user"
    return f"{user} on {match['host']} (process {match['pid']})"


def _policy_summary(live: dict[str, str], local: dict[str, Any]) -> list[str]:
    """``permissions show`` for a person: the live policy, then how the local file compares with it."""
    lines = []
    if not live:
        lines.append("live policy: none published, so every tool call is denied")
    else:
        when = datetime.fromtimestamp(int(live.get("published_ms", "0")) / 1000, UTC)
        lines.append(f"live policy: version {live.get('version', '?')} ({live.get('digest', '')[:19]}…)")
        lines.append(f"  from {live.get('source') or 'an unnamed source'}, published "
                     f"{when:%Y-%m-%d %H:%M:%S} UTC by {_publisher(live.get('published_by', ''))}")
    if not local:
        lines.append("local policy file: none ($TOOLBAG_POLICY or ./policy.yaml)")
    elif "error" in local:
        lines.append(f"local policy file: {local['path']} is not valid: {one_line(local['error'])}")
    elif local["matches_live"]:
        lines.append(f"local policy file: {local['path']}, version {local['version']}: the live policy")
    else:
        mine, theirs = int(local["version"]), int(live.get("version", "0"))
        if not live or mine > theirs:
            verdict = "not live yet: `toolbag permissions publish` makes it live"
        elif mine == theirs:
            verdict = "the live version number with other text: raise its version, then publish"
        else:
            verdict = f"older than the live version {theirs}: update it, or `publish --force` to roll back"
        lines.append(f"local policy file: {local['path']}, version {mine}, {verdict}")
    return lines


@permissions_app.command("validate")
def validate(file: Path | None = typer.Option(None, "--file", "-f")) -> None:
    """Check a policy file (for CI); exit 2 with every problem listed when it is invalid."""
    path = file or default_policy_path()
    if path is None:
        fail("no policy file: pass --file or create ./policy.yaml")
    try:
        policy = load_policy_file(path)
    except PolicyError as err:
        fail(str(err))
    console.print(f"{path}: valid, version {policy.version}, {len(policy.rules)} rules")


# -------------------------------------------------------------------------------------------- audit

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def _time_ms(value: str | None) -> int:
    if not value:
        return 0
    match = _RELATIVE.match(value)
    if match:
        seconds = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return int((time.time() - seconds) * 1000)
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        fail(f"time {value!r}: use 15m, 2h, 1d, an ISO time or epoch milliseconds")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _line(e: dict[str, str]) -> str:
    """One audit record as one log-style line (``key=value`` for the optional parts)."""
    ts = datetime.fromtimestamp(int(e.get("ts_ms", "0") or 0) / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    parts = [ts, f"{e.get('kind', '')}/{e.get('event', '')}"]
    if e.get("decision"):
        parts.append(e["decision"].upper())
    if e.get("agent"):
        parts.append(e["agent"])
    if e.get("model"):
        parts.append(f"{e.get('provider', '')}/{e['model']}")
    if e.get("tool"):
        parts.append(e["tool"])
    for label, key in (("rule", "grant"), ("outcome", "outcome"), ("ms", "duration_ms"), ("step", "step"),
                       ("policy", "policy_version"), ("job", "job_id"), ("job", "job")):
        value = e.get(key, "")
        if value and value not in ("0", "0.0"):
            parts.append(f"{label}={value}")
    note = e.get("reason") or e.get("detail") or ""
    if note:
        parts.append(json.dumps(note[:300], ensure_ascii=False))
    return " ".join(parts)


def _print_entries(entries: list[dict[str, str]], as_json: bool) -> None:
    for entry in entries:
        typer.echo(json.dumps(entry, sort_keys=True) if as_json else _line(entry))


def _print_matches(entries: list[dict[str, str]], as_json: bool, flt: AuditFilter) -> None:
    """The records, oldest first; when there are none, one line saying so on stderr (stdout stays data)."""
    if entries:
        _print_entries(entries, as_json)
        return
    only = f" (only {' and '.join(flt.kinds)} records; --all shows every kind)" if flt.kinds == GATEWAY_KINDS else ""
    err_console.print(f"no audit records match{only}")


GATEWAY_KINDS = ("tool", "policy")


def _filter(agent: str | None, tool: str | None, decision: str | None, job: str | None, event: str | None,
            kind: str | None, since: str | None, until: str | None, everything: bool = False) -> AuditFilter:
    kinds: tuple[str, ...] = () if everything else ((kind,) if kind else GATEWAY_KINDS)
    return AuditFilter(agent=agent or "", tool=tool or "", decision=decision or "", job_id=job or "",
                       event=event or "", kinds=kinds, since_ms=_time_ms(since), until_ms=_time_ms(until))


@audit_app.command("tail")
def tail(
    count: int = typer.Option(20, "-n", "--count", min=1, help="How many of the newest records"),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new records (Ctrl-C stops)"),
    agent: str | None = typer.Option(None, "--agent"),
    tool: str | None = typer.Option(None, "--tool"),
    decision: str | None = typer.Option(None, "--decision", help="allow | deny"),
    everything: bool = typer.Option(False, "--all", help="Also the fleet's job records (decisions, completions)"),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line"),
) -> None:
    """The newest gateway audit records, printed oldest first (as `audit query` does)."""
    config = _config()
    client, keys = _redis_and_keys(config)
    reader = RedisAuditReader(client, keys)
    flt = _filter(agent, tool, decision, None, None, None, None, None, everything)
    try:
        last = reader.last_id()
        found = [e for _, e in reader.tail(count, flt)]
        if found or not follow:
            _print_matches(found, as_json, flt)
        while follow:
            batch = reader.follow(last, block_ms=1000)
            if batch:
                last = batch[-1][0]
                shown = [e for _, e in batch if flt.accepts(e)]
                if shown:
                    _print_entries(shown, as_json)
    except redis.RedisError as err:
        fail(f"redis: {err}")
    except KeyboardInterrupt:
        return


@audit_app.command("query")
def query(
    agent: str | None = typer.Option(None, "--agent", help="glob"),
    tool: str | None = typer.Option(None, "--tool", help="glob"),
    decision: str | None = typer.Option(None, "--decision", help="allow | deny"),
    job: str | None = typer.Option(None, "--job", help="job id"),
    event: str | None = typer.Option(None, "--event", help="offer | decision | call | publish"),
    kind: str | None = typer.Option(None, "--kind", help="tool | policy (default both), or a fleet kind"),
    everything: bool = typer.Option(False, "--all", help="Every kind, the fleet's job records too"),
    since: str | None = typer.Option(None, "--since", help="15m, 2h, 1d, ISO time or epoch ms"),
    until: str | None = typer.Option(None, "--until"),
    limit: int = typer.Option(100, "--limit", min=1, help="How many of the newest matching records"),
    file: Path | None = typer.Option(None, "--file", help="Query a JSONL audit file instead of the Redis stream"),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line"),
) -> None:
    """Audit records matching every filter given: the newest --limit of them, printed oldest first (as `audit
    tail` does). None matching: a line saying so on stderr, exit 0."""
    flt = _filter(agent, tool, decision, job, event, kind, since, until, everything)
    if file is not None:
        try:
            entries = read_jsonl(file, flt, limit)
        except OSError as err:
            fail(f"{file}: {err.strerror}")
    else:
        client, keys = _redis_and_keys(_config())
        try:
            entries = [e for _, e in RedisAuditReader(client, keys).query(flt, limit=limit)]
        except redis.RedisError as err:
            fail(f"redis: {err}")
    entries.reverse()  # the readers give newest first
    _print_matches(entries, as_json, flt)


# -------------------------------------------------------------------------------------------- tools


@tools_app.command("list")
def list_tools(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every tool from tools.yaml (local tools and MCP servers), whether or not anyone is granted it."""
    from toolbag.gateway.registry import ToolRegistry

    try:
        registry = ToolRegistry(load_gateway_settings())
    except ConfigError as err:
        fail(str(err))
    try:
        catalog = registry.catalog()
    finally:
        registry.close()
    if as_json:
        typer.echo(json.dumps([{"name": t.name, "source": t.source, "description": t.description,
                                "parameters": t.parameters} for t in catalog.values()], indent=2))
        return
    columns = [Column("tool"), Column("source"), Column("arguments", whole=False), Column("description", whole=False)]
    cells = [_cells(t.name, t.source, ", ".join(t.parameters.get("properties", {})), t.description[:70])
             for t in catalog.values()]
    console.print(legible_table(columns, cells, console.width))
