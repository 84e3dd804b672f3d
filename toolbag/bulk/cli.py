"""``toolbag batch run``: a JSONL or CSV file through the fleet, resumable, with progress and a cost estimate.

Everything printed that comes from the input, a skill or a job is data, never Rich markup.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape

from toolbag.cli.fail import fail

if TYPE_CHECKING:
    from rich.progress import Task

    from toolbag.bulk.runner import BatchRun, Counts

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Run a JSONL or CSV file through the fleet: one job per line or row.")
out_console = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)

EXIT_RECORD_ERRORS = 1  # the run finished, and the errors file has records
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM: what is written stays, a rerun continues


@app.command()
def run(
    input_path: Path = typer.Argument(..., metavar="INPUT", help="A .jsonl file (one JSON object a line) or a .csv"),
    output: Path = typer.Option(..., "--output", "-o", help="Results file (appended to; a rerun continues it)"),
    skill: str | None = typer.Option(None, "--skill", help="Run this skill on every record"),
    capability: str | None = typer.Option(None, "--capability", help="Or send every record to this capability"),
    tier: str = typer.Option("batch", "--tier", help="interactive | standard | batch (priced like it can wait)"),
    errors: Path | None = typer.Option(None, "--errors",
                                       help="Failed and invalid records (default: OUTPUT.errors.EXT)"),
    input_format: str | None = typer.Option(None, "--input-format", help="jsonl | csv (default: from the file name)"),
    id_field: str | None = typer.Option(None, "--id-field", "--id-column",
                                        help="The id field/column (default: 'id' if present, else the line or "
                                             "row number)"),
    input_field: str | None = typer.Option(None, "--input-field", help="JSONL: take the job input from this field"),
    keep_id: bool = typer.Option(False, "--keep-id", help="Leave the id field in the job input"),
    max_in_flight: int = typer.Option(500, "--max-in-flight", help="Jobs queued or running at once"),
    caller: str = typer.Option("bulk", "--caller", help="Caller identity (idempotency keys are per caller)"),
    deadline_s: float | None = typer.Option(None, "--deadline-s", help="Per-job deadline (default: the tier's)"),
    salt: str = typer.Option("", "--salt", help="Change it to run records again as new jobs (new keys)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count the jobs and estimate the cost; submit nothing"),
    output_tokens: int | None = typer.Option(None, "--output-tokens",
                                             help="Typical output tokens per job, for --dry-run (default: the cap)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar"),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object"),
) -> None:
    """Run every line (JSONL) or row (CSV) of INPUT as one job; results keep each record's id.

    Records whose job fails, is escalated or does not validate go to the errors file with the reason.
    Rerun the same command after Ctrl-C or a crash: it continues where it stopped, paying nothing twice.
    Exit status: 0 when every record succeeded, 1 when the errors file has any, 2 on bad arguments,
    130 when interrupted.
    """
    from toolbag.bulk.files import FORMATS, InputSpec, guess_format, is_format
    from toolbag.bulk.runner import BatchError, BatchRun, BatchSpec
    from toolbag.cli.app import _client
    from toolbag.skills import SkillLoadError
    from toolbag.skills.cli import invalid_skill

    fmt = input_format or guess_format(input_path)
    if not is_format(fmt):
        fail(f"--input-format: use one of {', '.join(FORMATS)}")
    if input_field is not None and fmt == "csv":
        fail("--input-field applies to JSONL input only")
    spec = BatchSpec(
        input=InputSpec(input_path, fmt, id_field, input_field, keep_id),
        output=output, errors=errors, skill=skill, capability=capability, tier=tier, caller=caller,
        deadline_s=deadline_s, max_in_flight=max_in_flight, salt=salt, output_tokens=output_tokens,
    )
    try:
        batch = BatchRun(_client(), spec)
        if dry_run:
            _print_dry_run(batch, as_json)
            return
        counts = _run_with_progress(batch, quiet)
    except BatchError as err:
        fail(str(err))
    except SkillLoadError as err:
        fail(invalid_skill(spec.skill or "", err))
    except KeyboardInterrupt:
        err_console.print(f"interrupted: results so far are in {spec.output} and {spec.errors_path}; "
                          "rerun the same command to continue")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    summary = {**counts.to_dict(), "output": str(spec.output), "errors_file": str(spec.errors_path)}
    if as_json:
        print(json.dumps(summary))
    elif not quiet:
        any_errors = counts.errors or counts.errors_before
        out_console.print(
            f"{counts.finished}/{counts.total} records done: {counts.ok} ok, {counts.errors} errors this run"
            f" ({counts.done_before} done before, {counts.reused} jobs reused); cost ${counts.cost_usd:.4f};"
            f" {summary['elapsed_s']:.1f}s, {summary['lines_per_s']:,.0f} lines/s\n"
            f"results: {spec.output}" + (f"\nerrors:  {spec.errors_path}" if any_errors else "")
        )
    raise typer.Exit(EXIT_RECORD_ERRORS if counts.errors or counts.errors_before else 0)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM stops a run like Ctrl-C


def _run_with_progress(batch: BatchRun, quiet: bool) -> Counts:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text(f"{task.speed:,.0f}/s" if task.speed else "-/s")

    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), Rate(),
        TextColumn("ETA"), TimeRemainingColumn(),
        TextColumn("[green]ok {task.fields[ok]}[/] [red]failed {task.fields[failed]}[/] ${task.fields[cost]}"),
        console=err_console, disable=quiet or not err_console.is_terminal, transient=False,
    )
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    try:
        with progress:
            task = progress.add_task(escape(batch.spec.input.path.name), total=None, ok=0, failed=0, cost="0.0000")

            def on_step(counts: Counts) -> None:
                progress.update(task, total=counts.total, completed=counts.finished, ok=counts.ok,
                                failed=counts.errors, cost=f"{counts.cost_usd:.4f}")

            return batch.run(on_step)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _print_dry_run(batch: BatchRun, as_json: bool) -> None:
    from toolbag.attempt.tokens import BYTES_PER_TOKEN

    plan = batch.dry_run()
    est = plan.estimate
    if as_json:
        print(json.dumps({"total": plan.total, "done_before": plan.done_before, "to_submit": plan.to_submit,
                          "invalid": len(plan.invalid), "route_first": plan.model_first, **est.to_dict()}))
        return
    spec = batch.spec
    what = f"skill {batch.skill.name} {batch.skill.version}" if batch.skill else f"capability {batch.capability}"
    out_console.print(f"{spec.input.path} ({spec.input.format}): {plan.total} records — {plan.to_submit} jobs to "
                      f"submit, {plan.done_before} already done, {len(plan.invalid)} invalid")
    out_console.print(f"{what}, tier {spec.tier}; route {batch.capability}/{spec.tier} starts at {plan.model_first}")
    for model, share in est.by_model.items():
        m = batch.client.config.models[model]
        out_console.print(f"  {model}: {share.jobs} jobs at ${m.input_usd_per_mtok:g} in / "
                          f"${m.output_usd_per_mtok:g} out per 1M tokens real time, ${m.batch_input_price:g} / "
                          f"${m.batch_output_price:g} in a vendor batch")
    bound = "up to " if est.output_is_cap else "~"
    out_console.print(
        f"estimate (≈{BYTES_PER_TOKEN} bytes a token): ~{est.input_tokens:,} input tokens"
        f" + {bound}{est.output_tokens:,} output tokens"
        + ("  (output at each job's cap; --output-tokens N for a typical size)" if est.output_is_cap else "")
    )
    out_console.print(f"  real time:     ${est.input_usd:.4f} in + ${est.output_usd:.4f} out = "
                      f"{bound}${est.total_usd:.4f}")
    if est.vendor_batch_jobs:
        saved = est.saving_usd / est.total_usd if est.total_usd > 0 else 0.0
        out_console.print(
            f"  vendor batch:  ${est.path_input_usd:.4f} in + ${est.path_output_usd:.4f} out = "
            f"{bound}${est.path_total_usd:.4f} ({est.vendor_batch_jobs} of {est.jobs} jobs in vendor batches; "
            f"saves {bound}${est.saving_usd:.4f}, {saved:.0%})")
    elif est.jobs:
        out_console.print(f"  vendor batch:  none of the {est.jobs} jobs: {plan.realtime_reason}")
    for line, field_name, reason in plan.invalid[:10]:
        where = "" if field_name in reason else f"{field_name}: "
        out_console.print(f"  invalid record {line.number} (id {line.id!r}): {where}{reason}")
    if len(plan.invalid) > 10:
        out_console.print(f"  … and {len(plan.invalid) - 10} more invalid records")


if __name__ == "__main__":  # pragma: no cover
    app(sys.argv[1:])
