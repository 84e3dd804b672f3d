"""``toolbag check``, ``toolbag lock`` and ``toolbag diff`` (registered on the main app by :func:`register`).

Exit codes, for CI: 0 everything holds; 1 a problem was found (an invalid source, a tree that differs from
``toolbag.lock``, a change that must be fixed before locking); 2 the command could not run (bad usage, git
cannot show the revision, the lock cannot be written).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import typer

from toolbag.cli.fail import fail
from toolbag.governance.check import CheckReport, Sources, check_tree
from toolbag.governance.drift import Change, diff_locks
from toolbag.governance.lockfile import LOCK_FILE, LockError, build_lock, dump_lock, lock_at_revision, read_lock

__all__ = ["check", "diff", "lock", "register"]

_LOCK_OPTION = typer.Option(Path(LOCK_FILE), "--lock", help="The lock file (default: ./toolbag.lock)")
EXIT_PROBLEM = 1  # a problem was found: the tree or the change must be fixed (not a usage error)
_RELOCK = "if they are intended, run `toolbag lock` and commit toolbag.lock with them (reviewers read its diff)"


def _print_report(report: CheckReport, *, strict: bool) -> None:
    for line in report.summary:
        typer.echo(f"checked  {line}")
    for problem in report.errors:
        typer.echo(f"ERROR    {problem}")
    for problem in report.warnings:
        typer.echo(f"{'ERROR' if strict else 'warning':<8} {problem}")


def _print_changes(changes: list[Change]) -> None:
    for change in changes:
        typer.echo(f"  - {'MUST FIX: ' if change.blocking else ''}{change.text}")


def _count(changes: list[Change]) -> str:
    return f"{len(changes)} change{'s' if len(changes) != 1 else ''}"


def _change_json(change: Change) -> dict[str, Any]:
    return {**dataclasses.asdict(change), "blocking": change.blocking}


def _checked(strict: bool, as_json: bool) -> CheckReport:
    report = check_tree(Sources.discover())
    if not as_json:
        _print_report(report, strict=strict)
    return report


def check(
    locked: bool = typer.Option(False, "--locked", help="Also fail when the tree differs from toolbag.lock"),
    lock_file: Path = _LOCK_OPTION,
    strict: bool = typer.Option(False, "--strict", help="Warnings fail the check too"),
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout"),
) -> None:
    """Validate toolbag.yaml, routes, skills, tools and the policy; with --locked, compare with toolbag.lock.

    Exit 1 when a problem is found (with --strict, a warning too; with --locked, any difference from the lock)."""
    report = _checked(strict, as_json)
    failed = bool(report.errors) or (strict and bool(report.warnings))
    changes: list[Change] = []
    lock_problem = ""
    if locked and report.loaded is not None:
        try:
            current = build_lock(report.loaded)
            committed_text = lock_file.read_text(encoding="utf-8") if lock_file.is_file() else None
            committed = read_lock(lock_file)
        except LockError as err:
            lock_problem = str(err)
        else:
            if committed_text != dump_lock(current):
                changes = diff_locks(committed, current)
                if not changes:
                    lock_problem = f"{lock_file} is not in its canonical form (edited by hand?): run `toolbag lock`"
    elif locked:
        lock_problem = f"{lock_file} was not compared: fix the errors above first"
    failed = failed or bool(changes) or bool(lock_problem)
    if as_json:
        typer.echo(json.dumps({
            "ok": not failed, "summary": report.summary,
            "errors": [dataclasses.asdict(p) for p in report.errors],
            "warnings": [dataclasses.asdict(p) for p in report.warnings],
            "lock": {"checked": locked, "problem": lock_problem, "changes": [_change_json(c) for c in changes]},
        }, indent=2))
        raise typer.Exit(EXIT_PROBLEM if failed else 0)
    if changes:
        typer.echo(f"{lock_file} differs from the tree ({_count(changes)}):")
        _print_changes(changes)
        if any(c.blocking for c in changes):
            typer.echo("fix: first fix what is marked MUST FIX (bump the version); then review the rest: " + _RELOCK)
        else:
            typer.echo(f"fix: review these changes; {_RELOCK}")
    elif lock_problem:
        typer.echo(f"ERROR    {lock_problem}")
    elif locked and not failed:
        typer.echo(f"ok       {lock_file}: the tree matches it")
    if failed:
        typer.echo("check failed")
    raise typer.Exit(EXIT_PROBLEM if failed else 0)


def lock(
    lock_file: Path = _LOCK_OPTION,
    force: bool = typer.Option(False, "--force", help="Write even a change that must be fixed (a skill or "
                                                      "policy edited without a version bump)"),
) -> None:
    """Write toolbag.lock: skill hashes and wire digests, routes, models, tools, the permission matrix.

    Exit 1 when nothing was written: the tree has errors, or a change must be fixed first (see --force);
    2 when the file cannot be written."""
    report = _checked(False, False)
    if report.loaded is None:
        typer.echo("toolbag.lock not written: fix the errors above first")
        raise typer.Exit(EXIT_PROBLEM)
    current = build_lock(report.loaded)
    text = dump_lock(current)
    changes: list[Change] = []
    if lock_file.is_file():
        try:
            changes = diff_locks(read_lock(lock_file), current)
        except LockError as err:
            typer.echo(f"note: the old lock is unreadable and is replaced ({err})")
    blocking = [c for c in changes if c.blocking]
    if blocking and not force:
        typer.echo(f"{lock_file} not written: {len(blocking)} change(s) must be fixed first:")
        _print_changes(blocking)
        typer.echo("fix: bump the version, then run `toolbag lock` again (or --force to record it anyway)")
        raise typer.Exit(EXIT_PROBLEM)
    if lock_file.is_file() and lock_file.read_text(encoding="utf-8") == text:
        typer.echo(f"{lock_file} is up to date")
        return
    try:
        partial = lock_file.with_name(lock_file.name + ".partial")
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, lock_file)
    except OSError as err:
        fail(f"cannot write {lock_file}: {err.strerror}")
    typer.echo(f"wrote {lock_file}" + (f" ({_count(changes)}):" if changes else ""))
    _print_changes(changes)


def diff(
    revision: str = typer.Argument("HEAD", help="The git revision whose toolbag.lock is the baseline"),
    lock_file: Path = _LOCK_OPTION,
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout"),
) -> None:
    """What changed in the agent configuration since REV, as a review: permissions, skills, routes, models, tools.

    Exit 1 when a change must be fixed (a skill or the policy changed without a version bump) or the tree
    does not pass `toolbag check`; 2 when git cannot show the lock at REV."""
    try:
        baseline = lock_at_revision(revision, lock_file)
    except LockError as err:
        fail(str(err))
    report = _checked(False, True)
    if report.loaded is None:
        _print_report(report, strict=False)
        typer.echo("no diff: the tree does not pass `toolbag check`")
        raise typer.Exit(EXIT_PROBLEM)
    changes = diff_locks(baseline, build_lock(report.loaded))
    blocking = any(c.blocking for c in changes)
    if as_json:
        typer.echo(json.dumps({"revision": revision, "changes": [_change_json(c) for c in changes]}, indent=2))
        raise typer.Exit(EXIT_PROBLEM if blocking else 0)
    if not changes:
        typer.echo(f"no changes to the agent configuration since {revision}")
        return
    typer.echo(f"agent configuration, {revision} → working tree ({_count(changes)}):")
    _print_changes(changes)
    raise typer.Exit(EXIT_PROBLEM if blocking else 0)


def register(app: typer.Typer) -> None:
    """Add ``check``, ``lock`` and ``diff`` to the ``toolbag`` command."""
    app.command("check")(check)
    app.command("lock")(lock)
    app.command("diff")(diff)
