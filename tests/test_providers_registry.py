"""Provider registry: base URL / key resolution, config errors, and dev mode reaching the simulator."""

from __future__ import annotations

from typing import Any

import pytest

from toolbag.config import Config, ConfigError, ProviderConfig, load_config, parse_config
from toolbag.providers.anthropic_provider import AnthropicAdapter
from toolbag.providers.base import Adapter, Message, ModelRequest, Timeouts
from toolbag.providers.gemini_provider import GeminiAdapter
from toolbag.providers.openai_provider import OpenAIAdapter
from toolbag.providers.registry import (
    SIMULATOR_API_KEY,
    build_adapter,
    resolve_provider,
    validate_providers,
)
from toolbag.simulator.server import SimulatorServer

SECRET = "sk-live-0123456789abcdef"


def config(**overrides: Any) -> Config:
    data: dict[str, Any] = {
        "dev": True,
        "simulator_url": "http://127.0.0.1:8900",
        "providers": {
            "anthropic": {"kind": "anthropic"},
            "openai": {"kind": "openai"},
            "gemini": {"kind": "gemini"},
            "local": {"kind": "openai-compatible", "api_key_env": "LOCAL_LLM_API_KEY"},
        },
        "models": {},
        "routes": {},
    }
    data.update(overrides)
    return parse_config(data)


def test_dev_without_keys_points_at_the_simulator() -> None:
    cfg = config()
    expected = {
        "anthropic": "http://127.0.0.1:8900",
        "openai": "http://127.0.0.1:8900/v1",
        "gemini": "http://127.0.0.1:8900",
        "local": "http://127.0.0.1:8900/v1",
    }
    for name, url in expected.items():
        resolved = resolve_provider(name, cfg, environ={})
        assert resolved.base_url == url
        assert resolved.source == "simulator"
        assert resolved.api_key == SIMULATOR_API_KEY


def test_keys_from_the_environment_select_the_vendor() -> None:
    cfg = config(providers={
        "anthropic": {"kind": "anthropic"},
        "openai": {"kind": "openai", "base_url": "https://gateway.example.com/openai/v1/"},
        "gemini": {"kind": "gemini", "api_key_env": "MY_GEMINI_KEY"},
        "local": {"kind": "openai-compatible", "base_url": "http://10.0.0.5:8000/v1",
                  "api_key_env": "LOCAL_LLM_API_KEY"},
    })
    env = {"ANTHROPIC_API_KEY": SECRET, "OPENAI_API_KEY": SECRET, "MY_GEMINI_KEY": SECRET,
           "LOCAL_LLM_API_KEY": SECRET, "GEMINI_API_KEY": "not-this-one"}
    anthropic = resolve_provider("anthropic", cfg, env)
    assert (anthropic.base_url, anthropic.source, anthropic.api_key) == ("https://api.anthropic.com", "env", SECRET)
    assert resolve_provider("openai", cfg, env).base_url == "https://gateway.example.com/openai/v1"
    gemini = resolve_provider("gemini", cfg, env)
    assert gemini.base_url is None and gemini.key_env == "MY_GEMINI_KEY" and gemini.api_key == SECRET
    assert resolve_provider("local", cfg, env).base_url == "http://10.0.0.5:8000/v1"
    for name in cfg.providers:
        assert SECRET not in repr(resolve_provider(name, cfg, env))


def test_build_adapter_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    adapter = build_adapter("anthropic", config())
    try:
        assert isinstance(adapter, AnthropicAdapter)
        assert adapter.base_url == "https://api.anthropic.com"
        assert SECRET not in repr(adapter)
    finally:
        adapter.close()


def test_no_key_outside_dev_names_provider_and_variable() -> None:
    cfg = config(dev=False)
    with pytest.raises(ConfigError) as info:
        build_adapter("gemini", cfg, environ={"OPENAI_API_KEY": SECRET})
    message = str(info.value)
    assert "'gemini'" in message and "GEMINI_API_KEY" in message
    assert SECRET not in message


def test_unknown_provider() -> None:
    with pytest.raises(ConfigError, match=r"unknown provider 'mistral'.*anthropic, gemini, local, openai"):
        build_adapter("mistral", config(), environ={})


def test_unknown_kind() -> None:
    bogus = ProviderConfig.model_construct(kind="cohere", base_url=None, api_key_env=None, concurrency=10)
    cfg = config().model_copy(update={"providers": {"odd": bogus}})
    with pytest.raises(ConfigError, match=r"provider 'odd'.*providers\.odd\.kind 'cohere'"):
        build_adapter("odd", cfg, environ={})


def test_malformed_urls_name_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"provider 'openai': simulator_url .*'localhost:8900'"):
        build_adapter("openai", config(simulator_url="localhost:8900"), environ={})
    bad = ProviderConfig.model_construct(kind="anthropic", base_url="ftp://x", api_key_env=None, concurrency=10)
    cfg = config().model_copy(update={"providers": {"claude": bad}})
    with pytest.raises(ConfigError, match=r"provider 'claude': providers\.claude\.base_url .*'ftp://x'"):
        build_adapter("claude", cfg, environ={"ANTHROPIC_API_KEY": SECRET})
    # and the config loader already rejects it from YAML
    with pytest.raises(ConfigError, match="base_url"):
        config(providers={"x": {"kind": "openai", "base_url": "not a url"}})


def test_openai_compatible_needs_a_base_url_with_a_key() -> None:
    with pytest.raises(ConfigError, match=r"provider 'local'.*providers\.local\.base_url must be set"):
        build_adapter("local", config(), environ={"LOCAL_LLM_API_KEY": SECRET})


def test_validate_providers_lists_every_problem() -> None:
    cfg = config(dev=False)
    env = {"ANTHROPIC_API_KEY": SECRET}
    with pytest.raises(ConfigError) as info:
        validate_providers(cfg, environ=env)
    message = str(info.value)
    for needle in ("OPENAI_API_KEY", "GEMINI_API_KEY", "LOCAL_LLM_API_KEY"):
        assert needle in message
    assert "ANTHROPIC_API_KEY" not in message and SECRET not in message
    validate_providers(cfg, names=["anthropic"], environ=env)
    validate_providers(config(), environ={})  # dev: everything resolves to the simulator


def test_embedded_defaults_resolve_in_dev() -> None:
    validate_providers(load_config(), environ={})


@pytest.mark.parametrize(
    ("name", "adapter_type", "kind"),
    [
        ("anthropic", AnthropicAdapter, "anthropic"),
        ("openai", OpenAIAdapter, "openai"),
        ("gemini", GeminiAdapter, "gemini"),
        ("local", OpenAIAdapter, "openai-compatible"),
    ],
)
def test_dev_adapters_answer_from_the_simulator(
    sim: SimulatorServer, name: str, adapter_type: type, kind: str
) -> None:
    adapter: Adapter = build_adapter(name, config(simulator_url=sim.url), environ={})
    try:
        assert isinstance(adapter, adapter_type) and adapter.kind == kind
        request = ModelRequest(messages=(Message("user", "ping the fleet"),), timeouts=Timeouts(1, 2, 3))
        response = adapter.call("model-a", request)
        assert response.text == "[model-a] ping the fleet"
    finally:
        adapter.close()


@pytest.mark.parametrize(("provider", "sdk"), [("anthropic", "anthropic"), ("openai", "openai"),
                                               ("gemini", "google.genai")])
def test_a_worker_loads_only_its_own_vendors_sdk(provider: str, sdk: str) -> None:
    """A worker process imports its vendor's SDK only (start-up time: the anthropic SDK alone takes over a
    second); the error map recognises SDK exceptions without importing the SDKs it does not need."""
    import subprocess
    import sys

    script = (
        "import sys, toolbag.cli, workers.runtime, toolbag.attempt.runner, toolbag.supervisor.service\n"
        "from toolbag.config import load_config\n"
        "from toolbag.providers.registry import build_adapter\n"
        f"build_adapter({provider!r}, load_config())\n"
        "print(','.join(m for m in ('anthropic', 'openai', 'google.genai') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == sdk, out.stdout + out.stderr
