"""``toolbag escalations …``: the human inbox at the command line."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from toolbag.cli.tables import Column, legible_table
from toolbag.escalations import Inbox, InboxError

app = typer.Typer(no_args_is_help=True, help="The human escalation inbox.")
console = Console(soft_wrap=True, markup=False, highlight=False, emoji=False)  # job text is data, never markup


@contextmanager
def _inbox() -> Iterator[Inbox]:
    from toolbag.cli.app import _config
    from toolbag.cli.fail import fail
    from toolbag.config import redis_url
    from toolbag.store import JobStore
    from toolbag.store.keys import Keys

    config = _config()
    store = JobStore.from_url(redis_url(), Keys(config.fleet.key_prefix), config.fleet.job_ttl_s)
    try:
        yield Inbox(config, store)
    except InboxError as err:
        fail(str(err))


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json"), limit: int = typer.Option(100, "--limit", min=1)) -> None:
    """Escalated jobs, oldest first."""
    with _inbox() as inbox:
        items = inbox.list(limit)
    if as_json:
        print(json.dumps([{"job_id": e.job_id, "escalated_at": e.escalated_at, "capability": e.capability,
                           "tier": e.tier, "caller": e.caller, "reason": e.reason} for e in items]))
        return
    if not items:
        console.print("no escalated jobs")
        return
    columns = [Column("job"), Column("waiting"), Column("capability"), Column("tier"), Column("caller"),
               Column("reason", whole=False)]
    rows = [(e.job_id, f"{time.time() - e.escalated_at:.0f}s", e.capability, e.tier, e.caller, e.reason)
            for e in items]
    console.print(legible_table(columns, rows, console.width))


@app.command()
def show(job_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """One escalated job: its input, every attempt and decision, and the reason."""
    with _inbox() as inbox:
        e = inbox.show(job_id)
    if as_json:
        print(json.dumps(e.__dict__))
        return
    console.print(f"{e.job_id} {e.capability}/{e.tier} from {e.caller}: {e.reason}")
    console.print(json.dumps(e.input, indent=2))
    for entry in e.attempts:
        console.print(f"  {json.dumps(entry, sort_keys=True)}")


@app.command()
def resolve(job_id: str, output: str = typer.Option(..., "--output", help="The answer, JSON or text"),
            by: str = typer.Option("human", "--by")) -> None:
    """Settle a job with a person's answer; the waiting caller receives it."""
    try:
        value = json.loads(output)
    except json.JSONDecodeError:
        value = output
    with _inbox() as inbox:
        inbox.resolve(job_id, value, by)
    console.print(f"{job_id} resolved")


@app.command()
def reject(job_id: str, reason: str = typer.Option(..., "--reason"), by: str = typer.Option("human", "--by")) -> None:
    """Fail a job with a reason; the waiting caller receives it."""
    with _inbox() as inbox:
        inbox.reject(job_id, reason, by)
    console.print(f"{job_id} rejected")


@app.command()
def retry(job_id: str, model: str = typer.Option(None, "--model", help="Model to try (default: route's first)"),
          by: str = typer.Option("human", "--by")) -> None:
    """Send a job back to the fleet."""
    with _inbox() as inbox:
        target = inbox.retry(job_id, model, by)
    console.print(f"{job_id} queued on {target}")
