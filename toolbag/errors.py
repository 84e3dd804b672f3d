"""The root of every error toolbag raises on purpose: ``except ToolbagError`` catches them all."""

from __future__ import annotations


class ToolbagError(Exception):
    """Base of every library error (bad config, bad input, a refused tool call, a job that was not found …)."""
