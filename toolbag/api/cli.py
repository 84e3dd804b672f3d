"""``toolbag api`` (serve the front door) and ``toolbag keys …`` (its API keys)."""

from __future__ import annotations

import json

import typer

from toolbag.api.keys import ApiKeyError, KeyStore

keys_app = typer.Typer(no_args_is_help=True, help="The HTTP front door's API keys.")


def _key_store() -> KeyStore:
    from toolbag.cli.app import _config
    from toolbag.config import redis_url
    from toolbag.store import JobStore
    from toolbag.store.keys import Keys

    config = _config()
    store = JobStore.from_url(redis_url(), Keys(config.fleet.key_prefix), config.fleet.job_ttl_s)
    return KeyStore(store.redis, store.keys)


@keys_app.command("create")
def create(
    caller: str = typer.Option(..., "--caller", help="The caller the key speaks for."),
    tier: str | None = typer.Option(None, "--tier", help="Default tier (header x-toolbag-tier overrides it)."),
) -> None:
    """Create a key; its secret is printed once and never stored."""
    from toolbag.cli.fail import fail

    try:
        key, secret = _key_store().create(caller, tier)
    except ApiKeyError as err:
        fail(str(err))
    print(json.dumps({"id": key.id, "caller": key.caller, "tier": key.tier, "key": secret}))


@keys_app.command("list")
def list_() -> None:
    """Live keys: id, caller, default tier (never the secret)."""
    for key in _key_store().list():
        print(json.dumps({"id": key.id, "caller": key.caller, "tier": key.tier, "created_ms": key.created_ms}))


@keys_app.command("revoke")
def revoke(key_id: str = typer.Argument(..., help="The key's id (from `toolbag keys list`).")) -> None:
    """Revoke a key: its next request fails, on every replica."""
    from toolbag.cli.fail import fail

    try:
        _key_store().revoke(key_id)
    except ApiKeyError as err:
        fail(str(err))
    print(json.dumps({"revoked": key_id}))


def api(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8080, "--port"),
) -> None:
    """Serve the HTTP front door (OpenAI- and Anthropic-compatible) for this fleet."""
    import uvicorn

    from toolbag.api.app import create_app
    from toolbag.client import Client

    uvicorn.run(create_app(Client()), host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    app.command("api")(api)
    app.add_typer(keys_app, name="keys", help="The HTTP front door's API keys: create, list, revoke.")
