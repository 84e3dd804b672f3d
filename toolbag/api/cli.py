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


def _tiers(raw: str | None) -> tuple[str, ...]:
    return tuple(t.strip() for t in raw.split(",") if t.strip()) if raw else ()


@keys_app.command("create")
def create(
    caller: str = typer.Option(..., "--caller", help="The caller the key speaks for (its jobs' caller)."),
    tier: str | None = typer.Option(None, "--tier", help="Default tier (header x-toolbag-tier overrides it)."),
    tiers: str | None = typer.Option(None, "--tiers", help="Tiers the key may use, comma-separated (default: all)."),
    rpm: int | None = typer.Option(None, "--rpm", help="Requests per minute, fleet-wide (default: unlimited)."),
    inbox: bool = typer.Option(False, "--inbox", help="May act on the escalation inbox and read any job."),
    caller_tools: bool = typer.Option(True, "--caller-tools/--no-caller-tools",
                                      help="May offer the model tools of its own (toolbag never runs them)."),
) -> None:
    """Create a key; its secret is printed once and never stored."""
    from toolbag.cli.fail import fail

    try:
        key, secret = _key_store().create(caller, tier, tiers=_tiers(tiers), rpm=rpm, inbox=inbox,
                                          caller_tools=caller_tools)
    except ApiKeyError as err:
        fail(str(err))
    print(json.dumps({**key.public(), "key": secret}))


@keys_app.command("list")
def list_() -> None:
    """Live keys, one JSON object a line: id, caller, tiers, rpm (never the secret)."""
    for key in _key_store().list():
        print(json.dumps(key.public()))


@keys_app.command("rotate")
def rotate(key_id: str = typer.Argument(..., help="The key's id (from `toolbag keys list`).")) -> None:
    """Replace a key's secret (same caller, tiers and limits; a new id); the old secret fails from its next
    request on every replica. The new secret is printed once."""
    from toolbag.cli.fail import fail

    try:
        key, secret = _key_store().rotate(key_id)
    except ApiKeyError as err:
        fail(str(err))
    print(json.dumps({**key.public(), "key": secret, "replaces": key_id}))


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
    port: int = typer.Option(8080, "--port", min=1, max=65535),
) -> None:
    """Serve the HTTP front door (OpenAI- and Anthropic-compatible) for this fleet."""
    import uvicorn

    from toolbag.cli.ports import check_listenable

    check_listenable(host, port)

    from toolbag.api.app import create_app
    from toolbag.client import Client

    uvicorn.run(create_app(Client()), host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    app.command("api")(api)
    app.add_typer(keys_app, name="keys", help="The HTTP front door's API keys: create, list, rotate, revoke.")
