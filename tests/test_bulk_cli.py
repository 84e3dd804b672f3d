"""The batch CLI's presentation: the progress bar on a terminal, silence elsewhere, argument errors."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console
from typer.testing import CliRunner

from toolbag.bulk import cli as bulk_cli
from toolbag.bulk.runner import Counts
from toolbag.cli.app import app


class FakeBatch:
    """Stands in for BatchRun: reports three steps of progress."""

    def __init__(self) -> None:
        self.spec = SimpleNamespace(input=SimpleNamespace(path=Path("docs.jsonl")))

    def run(self, on_step: Callable[[Counts], None]) -> Counts:
        counts = Counts(total=10, done_before=2)
        for ok, errors, cost in ((2, 0, 0.001), (5, 1, 0.0025), (7, 1, 0.0035)):
            counts.ok, counts.errors, counts.cost_usd = ok, errors, cost
            on_step(counts)
        return counts


def test_progress_shows_counts_rate_and_cost_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.StringIO()
    monkeypatch.setattr(bulk_cli, "err_console", Console(file=buf, force_terminal=True, width=160))
    counts = bulk_cli._run_with_progress(FakeBatch(), quiet=False)
    shown = buf.getvalue()
    assert counts.finished == 10
    assert "10/10" in shown and "ok 7" in shown and "failed 1" in shown and "$0.0035" in shown
    assert "ETA" in shown and "/s" in shown


@pytest.mark.parametrize("terminal, quiet", [(False, False), (True, True)])
def test_progress_is_silent_off_a_terminal_or_with_quiet(
    monkeypatch: pytest.MonkeyPatch, terminal: bool, quiet: bool
) -> None:
    buf = io.StringIO()
    monkeypatch.setattr(bulk_cli, "err_console", Console(file=buf, force_terminal=terminal, width=160))
    bulk_cli._run_with_progress(FakeBatch(), quiet=quiet)
    assert buf.getvalue() == ""


def test_argument_errors_exit_2_before_any_work(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("text\nhello\n")
    runner = CliRunner()
    result = runner.invoke(app, ["batch", "run", str(src), "-o", str(tmp_path / "o.csv"), "--input-field", "x",
                                 "--capability", "summarize"])
    assert result.exit_code == 2 and "--input-field applies to JSONL input only" in result.output
    result = runner.invoke(app, ["batch", "run", str(src), "-o", str(tmp_path / "o.csv"), "--input-format", "xml",
                                 "--capability", "summarize"])
    assert result.exit_code == 2 and "--input-format" in result.output
