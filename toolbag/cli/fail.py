"""The one way a ``toolbag`` command reports an error: one line on stderr, naming what is wrong, exit 2."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.text import Text

EXIT_USAGE = 2  # bad input, bad config, an unknown name: what the person typed or set must change

_err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def one_line(message: str) -> str:
    """``message`` on one line: the lines of a multi-line message joined by ``; `` (list bullets dropped)."""
    text = ""
    for line in message.splitlines():
        part = line.strip().removeprefix("- ").strip()
        if part:
            text += part if not text else (" " if text.endswith(":") else "; ") + part
    return text


def print_error(message: str) -> None:
    """``error: <message>`` on stderr as one line at any length, terminal or not (the message is data)."""
    _err.print(Text.assemble(("error:", "bold red"), " ", one_line(message)))


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``error: <message>`` (see :func:`print_error`) and exit with ``code``."""
    print_error(message)
    raise typer.Exit(code)
