"""``toolbag spend``: spend against the fleet's, teams' and callers' budgets, today and this month, or per
day since a date."""

from __future__ import annotations

import json
import re
import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import typer
from rich.console import Console

from toolbag.budgets.ledger import Budgets, Scope, ScopeSpend
from toolbag.budgets.periods import DAY_KEEP_S, Period, day_period, periods

_NAME = re.compile(r"^[A-Za-z0-9._@/+-]{1,128}$")


def spend(
    caller: str | None = typer.Option(None, "--caller", help="Only this caller (and the budgets it counts in)."),
    team: str | None = typer.Option(None, "--team", help="Only this configured team."),
    since: str | None = typer.Option(None, "--since", help="Spend per day from this date (YYYY-MM-DD) to today."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document instead of a table."),
) -> None:
    """Spend, holds of jobs in flight, limits and what is left, per budget (USD)."""
    from toolbag.cli.app import _config
    from toolbag.cli.fail import fail
    from toolbag.cli.tables import Column, legible_table
    from toolbag.config import redis_url
    from toolbag.store import JobStore
    from toolbag.store.keys import Keys

    config = _config()
    if config.budgets is None:
        fail("budgets: not configured (add a budgets section to toolbag.yaml; see docs/budgets.md)")
    settings = config.budgets
    if caller is not None and not _NAME.match(caller):
        fail("--caller: 1-128 characters from letters, digits and . _ @ / + -")
    if team is not None and team not in settings.teams:
        fail(f"--team: unknown team {team!r} (known: {', '.join(sorted(settings.teams)) or 'none'})")
    zone = ZoneInfo(settings.time_zone)
    today = datetime.now(zone).date()
    first: date | None = None
    if since is not None:
        try:
            first = date.fromisoformat(since)
        except ValueError:
            fail(f"--since: not a date (YYYY-MM-DD): {since!r}")
        if first > today:
            fail(f"--since: {since} is after today ({today.isoformat()} in {settings.time_zone})")
        if (today - first).days * 86_400 >= DAY_KEEP_S:
            fail(f"--since: daily spend is kept {DAY_KEEP_S // 86_400} days; {since} is older")
    store = JobStore.from_url(redis_url(), Keys(config.fleet.key_prefix), config.fleet.job_ttl_s)
    budgets = Budgets(config, store.redis, store.keys)
    scopes: list[Scope]
    if caller is not None:
        scopes = [s for s in budgets.scopes(caller) if team is None or s.kind != "team" or s.name == team]
    elif team is not None:
        scopes = [s for s in budgets.configured_scopes() if s.key == f"team:{team}"]
    else:
        scopes = budgets.configured_scopes()
    chosen: list[Period]
    if first is not None:
        chosen = [day_period(first + timedelta(days=n), zone) for n in range((today - first).days + 1)]
    else:
        chosen = list(periods(time.time(), settings.time_zone))
    rows = budgets.spend(scopes, chosen)
    if as_json:
        print(json.dumps({"time_zone": settings.time_zone, "budgets": [r.to_json() for r in rows]}))
        return
    columns = [Column(h) for h in ("budget", "period", "spent", "held", "limit", "remaining", "resets at")]
    Console(highlight=False, soft_wrap=True).print(
        legible_table(columns, [_cells(r) for r in rows], Console().width))


def _cells(row: ScopeSpend) -> tuple[str, ...]:
    def usd(value: float | None) -> str:
        return "-" if value is None else f"${value:.4f}"

    return (row.scope, row.period, usd(row.spent_usd), usd(row.reserved_usd), usd(row.limit_usd),
            usd(row.remaining_usd), row.resets_at)


def register(app: typer.Typer) -> None:
    app.command("spend")(spend)
