"""From ``toolbag.yaml`` to a ready adapter: base URL and API key resolution for each provider.

Rules, per provider (``providers.<name>``):

- the API key comes from the environment variable ``ProviderConfig.default_key_env()``;
- key set → the configured ``base_url``, else the vendor's public API (``openai-compatible`` has no public
  API, so its ``base_url`` is required);
- key absent and ``dev: true`` → the built-in simulator at ``simulator_url`` with a dummy key
  (``simulator_url + "/v1"`` for the OpenAI kinds);
- key absent and ``dev: false`` → :class:`~toolbag.config.ConfigError` naming the provider and the
  variable to set.

Secrets never appear in errors or reprs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlparse

from toolbag.config import PROVIDER_KINDS, Config, ConfigError, ProviderConfig
from toolbag.providers.base import ANTHROPIC_BASE_URL, OPENAI_BASE_URL, Adapter

__all__ = ["SIMULATOR_API_KEY", "ResolvedProvider", "build_adapter", "resolve_provider", "validate_providers"]

SIMULATOR_API_KEY = "sk-toolbag-simulator"


@dataclass(frozen=True)
class ResolvedProvider:
    """Where and how one provider is reached. ``api_key`` is kept out of ``repr``."""

    name: str
    kind: str
    base_url: str | None  # None: the SDK's own default (Gemini's public API)
    source: Literal["env", "simulator"]
    key_env: str
    concurrency: int
    api_key: str = field(repr=False)


def _check_url(name: str, setting: str, url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(
            f"provider {name!r}: {setting} must be an http(s) URL with a host, got {url!r}"
        )
    return url.rstrip("/")


def resolve_provider(
    name: str, config: Config, environ: Mapping[str, str] | None = None
) -> ResolvedProvider:
    """Base URL and key for provider ``name``, or :class:`ConfigError` saying what to fix."""
    env = os.environ if environ is None else environ
    provider: ProviderConfig | None = config.providers.get(name)
    if provider is None:
        known = ", ".join(sorted(config.providers)) or "none"
        raise ConfigError(f"unknown provider {name!r} (providers in the config: {known})")
    kind = str(provider.kind)
    if kind not in PROVIDER_KINDS:
        raise ConfigError(
            f"provider {name!r}: providers.{name}.kind {kind!r} is not one of {', '.join(PROVIDER_KINDS)}"
        )
    key_env = provider.default_key_env()
    api_key = env.get(key_env, "").strip()
    base_url: str | None
    if api_key:
        source: Literal["env", "simulator"] = "env"
        if provider.base_url is not None:
            base_url = _check_url(name, f"providers.{name}.base_url", provider.base_url)
        elif kind == "anthropic":
            base_url = ANTHROPIC_BASE_URL
        elif kind == "openai":
            base_url = OPENAI_BASE_URL
        elif kind == "gemini":
            base_url = None
        else:
            raise ConfigError(
                f"provider {name!r}: providers.{name}.base_url must be set for kind openai-compatible "
                "(the server's URL including /v1, e.g. http://127.0.0.1:8000/v1)"
            )
    elif config.dev:
        source = "simulator"
        api_key = SIMULATOR_API_KEY
        simulator = _check_url(name, "simulator_url", config.simulator_url)
        base_url = simulator + "/v1" if kind in ("openai", "openai-compatible") else simulator
    else:
        raise ConfigError(
            f"provider {name!r}: no API key — set the environment variable {key_env} "
            f"(or set dev: true to use the built-in simulator)"
        )
    return ResolvedProvider(
        name=name,
        kind=kind,
        base_url=base_url,
        source=source,
        key_env=key_env,
        concurrency=provider.concurrency,
        api_key=api_key,
    )


def build_adapter(
    name: str, config: Config, environ: Mapping[str, str] | None = None, *, max_connections: int | None = None
) -> Adapter:
    """The adapter for provider ``name`` (one per worker process; thread-safe), its HTTP pool sized for
    ``max_connections`` calls at once (default: the provider's ``concurrency``). Only that vendor's SDK is
    imported: a worker starts without loading the others."""
    resolved = resolve_provider(name, config, environ)
    pool = max_connections or resolved.concurrency
    if resolved.kind == "anthropic":
        from toolbag.providers.anthropic_provider import AnthropicAdapter

        assert resolved.base_url is not None
        return AnthropicAdapter(
            api_key=resolved.api_key, base_url=resolved.base_url, max_connections=pool
        )
    if resolved.kind in ("openai", "openai-compatible"):
        from toolbag.providers.openai_provider import OpenAIAdapter

        assert resolved.base_url is not None
        return OpenAIAdapter(
            api_key=resolved.api_key,
            base_url=resolved.base_url,
            max_connections=pool,
            kind="openai" if resolved.kind == "openai" else "openai-compatible",
        )
    from toolbag.providers.gemini_provider import GeminiAdapter

    return GeminiAdapter(
        api_key=resolved.api_key, base_url=resolved.base_url, max_connections=pool
    )


def validate_providers(
    config: Config,
    names: Iterable[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Check that providers resolve (worker start): ``names``, or every configured provider. Raises one
    :class:`ConfigError` listing every problem."""
    problems: list[str] = []
    for name in sorted(config.providers) if names is None else list(names):
        try:
            resolve_provider(name, config, environ)
        except ConfigError as err:
            problems.append(str(err))
    if problems:
        raise ConfigError("provider configuration:\n" + "\n".join(f"  - {p}" for p in problems))
