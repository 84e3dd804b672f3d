"""The ``toolbag`` command line: the composition root that starts every process."""

from toolbag.cli.app import app, main

__all__ = ["app", "main"]
