"""A real fleet on the simulator with the HTTP front door in front of it, for the front-door tests."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx2 as httpx
import openai
import uvicorn

from tests.fleet import Fleet, fleet_config_dict, free_port, running_fleet
from toolbag.api.app import create_app
from toolbag.api.keys import KeyStore
from toolbag.client import Client


@dataclass(frozen=True)
class FrontDoor:
    fleet: Fleet
    url: str
    key: str

    @property
    def key_store(self) -> KeyStore:
        return KeyStore(self.fleet.client.store.redis, self.fleet.client.store.keys)

    def new_key(self, caller: str, tier: str | None = "interactive", **options: Any) -> str:
        return self.key_store.create(caller, tier, **options)[1]

    def openai(self, key: str | None = None, **options: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key or self.key, **{"max_retries": 0, **options})

    def anthropic(self, key: str | None = None, **options: Any) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key=key or self.key, **{"max_retries": 0, **options})

    def http(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"authorization": f"Bearer {key or self.key}"}, timeout=60)

    def output(self, job_id: str) -> str:
        result = self.fleet.client.result(job_id, timeout_s=30)
        assert isinstance(result.output, str)
        return result.output

    def faults(self, rules: list[dict[str, Any]]) -> None:
        request = urllib.request.Request(f"{self.fleet.simulator.url}/_sim/faults",
                                         data=json.dumps({"rules": rules}).encode(), method="POST",
                                         headers={"content-type": "application/json"})
        urllib.request.urlopen(request).close()


@contextmanager
def front_door(redis_url: str, tmp: Path, *, providers: tuple[str, ...] = ("anthropic", "openai"),
               tiers: dict[str, dict[str, Any]] | None = None, concurrency: int = 4,
               routes: dict[str, Any] | None = None, config: dict[str, Any] | None = None) -> Iterator[FrontDoor]:
    """A fleet (workers for ``providers``, tier settings merged from ``tiers``, routes added from ``routes``,
    other sections of the configuration from ``config``) and the front door in this process on a free port,
    with a key for caller ``sdk-tests`` (default tier interactive)."""
    defaults = fleet_config_dict("http://unused")
    tier_config = defaults["tiers"]
    for name, settings in (tiers or {}).items():
        tier_config[name].update(settings)
    overrides: dict[str, Any] = {"tiers": tier_config}
    if routes:
        overrides["routes"] = {**defaults["routes"], **routes}
    overrides.update(config or {})
    with running_fleet(redis_url, tmp, providers=providers, concurrency=concurrency,
                       config_overrides=overrides) as fleet:
        _, secret = KeyStore(fleet.client.store.redis, fleet.client.store.keys).create("sdk-tests", "interactive")
        with replica(fleet) as url:
            yield FrontDoor(fleet, url, secret)


@contextmanager
def replica(fleet: Fleet) -> Iterator[str]:
    """One more front door for ``fleet`` (its own app and Redis clients) on a free port; yields its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(Client(fleet.client.config, fleet.redis_url)),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
