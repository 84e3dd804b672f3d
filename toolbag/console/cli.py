"""``toolbag console-keys …``: the web console's sign-in keys (a person's name and role)."""

from __future__ import annotations

import json

import typer

from toolbag.console.keys import ROLES, ConsoleKeyError, ConsoleKeyStore

app = typer.Typer(no_args_is_help=True, help="The web console's sign-in keys.")


def _store() -> ConsoleKeyStore:
    from toolbag.cli.app import _config
    from toolbag.config import redis_url
    from toolbag.store import JobStore
    from toolbag.store.keys import Keys

    config = _config()
    store = JobStore.from_url(redis_url(), Keys(config.fleet.key_prefix), config.fleet.job_ttl_s)
    return ConsoleKeyStore(store.redis, store.keys)


@app.command("create")
def create(
    name: str = typer.Option(..., "--name", help="The person the key is for (shown in the audit)."),
    role: str = typer.Option("viewer", "--role", help=f"One of {', '.join(ROLES)}."),
) -> None:
    """Create a console key; its secret is printed once and never stored."""
    from toolbag.cli.fail import fail

    try:
        key, secret = _store().create(name, role)
    except ConsoleKeyError as err:
        fail(f"--role: {err}" if str(err).startswith("role") else f"--name: {err}")
    print(json.dumps({"id": key.id, "name": key.name, "role": key.role, "key": secret}))


@app.command("list")
def list_() -> None:
    """Live console keys: id, name, role (never the secret)."""
    for key in _store().list():
        print(json.dumps({"id": key.id, "name": key.name, "role": key.role, "created_ms": key.created_ms}))


@app.command("revoke")
def revoke(key_id: str = typer.Argument(..., help="The key's id (from `toolbag console-keys list`).")) -> None:
    """Revoke a console key: its holder is signed out on the next click."""
    from toolbag.cli.fail import fail

    try:
        _store().revoke(key_id)
    except ConsoleKeyError as err:
        fail(str(err))
    print(json.dumps({"revoked": key_id}))


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="console-keys", help="The web console's sign-in keys: create, list, revoke.")
