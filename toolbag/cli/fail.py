"""The one way a ``toolbag`` command reports an error: one line on stderr, naming what is wrong, exit 2."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

EXIT_USAGE = 2  # bad input, bad config, an unknown name: what the person typed or set must change

_err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``error: <message>`` (the message is data, never markup) and exit with ``code``."""
    _err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)
