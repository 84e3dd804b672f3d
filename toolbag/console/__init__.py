"""The web console: the fleet, jobs, the escalation inbox, permissions and keys in a browser, under ``/console``.

Server-rendered (Starlette + Jinja2 with autoescape), signed in with a console key that carries a role
(:mod:`toolbag.console.keys`); every action goes through the same library calls as the CLI and into the audit
stream with who did it (:mod:`toolbag.console.actions`).
"""

from typing import Any

from toolbag.console.keys import ROLES, ConsoleKey, ConsoleKeyError, ConsoleKeyStore

__all__ = ["ROLES", "ConsoleKey", "ConsoleKeyError", "ConsoleKeyStore", "console_app"]


def __getattr__(name: str) -> Any:
    """``console_app`` on first use: its pages need the ``api`` extra (Starlette, Jinja2), its keys do not."""
    if name == "console_app":
        from toolbag.console.app import console_app

        return console_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
