"""Vendor batch prices and the one rule for which path an attempt takes (pure: no Redis, no simulator)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from toolbag.config import DEFAULT_CONFIG_PATH, ConfigError, ModelConfig, RoutePolicy, load_config, parse_config
from toolbag.routing.vendorbatch import attempt_path, vendor_batch_eligible

DAY_S = 86_400.0


def model(**prices: Any) -> ModelConfig:
    return ModelConfig(provider="p", model_id="m", input_usd_per_mtok=2.0, output_usd_per_mtok=10.0, **prices)


def test_batch_price_defaults_to_half_the_real_time_price() -> None:
    m = model()
    assert m.cost_usd(1_000_000, 1_000_000) == pytest.approx(12.0)
    assert m.cost_usd(1_000_000, 1_000_000, batch=True) == pytest.approx(6.0)


def test_explicit_batch_prices_are_used() -> None:
    m = model(batch_input_usd_per_mtok=1.5, batch_output_usd_per_mtok=4.0)
    assert m.cost_usd(2_000_000, 500_000, batch=True) == pytest.approx(3.0 + 2.0)
    assert m.cost_usd(2_000_000, 500_000) == pytest.approx(4.0 + 5.0)


def test_the_batch_discount_applies_to_cache_reads_and_writes() -> None:
    m = model(cache_read_usd_per_mtok=0.2, cache_write_usd_per_mtok=2.5)
    real = m.cost_usd(3_000_000, 0, cache_read_tokens=1_000_000, cache_write_tokens=1_000_000)
    batch = m.cost_usd(3_000_000, 0, cache_read_tokens=1_000_000, cache_write_tokens=1_000_000, batch=True)
    assert real == pytest.approx(2.0 + 0.2 + 2.5)
    assert batch == pytest.approx(1.0 + 0.1 + 1.25)


def test_a_free_model_stays_free_in_a_batch() -> None:
    assert ModelConfig(provider="p", model_id="m").cost_usd(1000, 1000, cache_read_tokens=10, batch=True) == 0.0


def test_a_negative_batch_price_is_refused_naming_the_field() -> None:
    data: dict[str, Any] = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))
    data = copy.deepcopy(data)
    data["models"]["gpt-luna"]["batch_output_usd_per_mtok"] = -1
    with pytest.raises(ConfigError, match=r"models\.gpt-luna\.batch_output_usd_per_mtok"):
        parse_config(data)


def test_the_embedded_config_prices_every_batch_model_at_most_half() -> None:
    config = load_config(DEFAULT_CONFIG_PATH)
    batch_models = {name for name, m in config.models.items() if m.features.batch}
    assert batch_models == {name for name, m in config.models.items()
                            if config.providers[m.provider].kind in ("anthropic", "openai", "gemini")}
    for name in batch_models:
        m = config.models[name]
        assert m.batch_input_usd_per_mtok is not None and m.batch_output_usd_per_mtok is not None, name
        assert m.cost_usd(1000, 1000, batch=True) <= 0.5 * m.cost_usd(1000, 1000) + 1e-12, name


@pytest.mark.parametrize(("tier", "batch", "switch", "time_left_s", "expected"), [
    ("batch", True, True, DAY_S, True),
    ("batch", True, True, 2 * DAY_S, True),
    ("batch", True, True, DAY_S - 1, False),  # a vendor batch may take the full day
    ("batch", False, True, DAY_S, False),  # the model has no batch API
    ("batch", True, False, DAY_S, False),  # the route turned it off
    ("standard", True, True, DAY_S, False),
    ("interactive", True, True, DAY_S, False),
])
def test_vendor_batch_eligibility(tier: Any, batch: bool, switch: bool, time_left_s: float, expected: bool) -> None:
    m = model(features={"batch": batch})
    assert vendor_batch_eligible(m, RoutePolicy(vendor_batch=switch), tier, time_left_s) is expected


def test_the_route_bound_moves_the_deadline_rule() -> None:
    m = model(features={"batch": True})
    policy = RoutePolicy(vendor_batch_bound_s=3600)
    assert vendor_batch_eligible(m, policy, "batch", 3600)
    assert not vendor_batch_eligible(m, policy, "batch", 3599)


def test_attempt_path_reads_the_route_and_model_from_the_config() -> None:
    config = load_config(DEFAULT_CONFIG_PATH)
    assert attempt_path(config, "summarize", "batch", "gpt-luna", DAY_S) == "vendor_batch"
    assert attempt_path(config, "chat", "batch", "local-llama", DAY_S) == "realtime"
    assert attempt_path(config, "summarize", "batch", "gpt-luna", 600) == "realtime"
    assert attempt_path(config, "summarize", "standard", "gpt-luna", DAY_S) == "realtime"
