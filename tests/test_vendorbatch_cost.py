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


# --- metrics: what the vendor-batch path counts (toolbag.telemetry.vendorbatch) ----------------------------


def sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_batch_served_attempt_counts_its_batch_cost_and_the_saving() -> None:
    from toolbag.telemetry.vendorbatch import batch_item_cost, record_batch_item_cost

    m = model(cache_read_usd_per_mtok=0.2)
    labels = {"provider": "p-cost", "model": "m-cost", "capability": "summarize"}
    before_cost = sample("toolbag_cost_usd_total", **labels)
    before_saved = sample("toolbag_vendor_batch_saved_usd_total", **labels)
    cost = record_batch_item_cost(m, provider="p-cost", model_name="m-cost", capability="summarize",
                                  input_tokens=1_000_000, output_tokens=100_000, cache_read_tokens=500_000)
    real = m.cost_usd(1_000_000, 100_000, cache_read_tokens=500_000)
    assert cost == pytest.approx(m.cost_usd(1_000_000, 100_000, cache_read_tokens=500_000, batch=True))
    assert cost == pytest.approx(real / 2)
    assert sample("toolbag_cost_usd_total", **labels) - before_cost == pytest.approx(cost)
    assert sample("toolbag_vendor_batch_saved_usd_total", **labels) - before_saved == pytest.approx(real - cost)
    assert sample("toolbag_tokens_total", provider="p-cost", model="m-cost", direction="cached") >= 500_000
    assert batch_item_cost(m, 10, 10).saved_usd >= 0


def test_batches_items_age_and_dropped_results_are_counted() -> None:
    from toolbag.telemetry.vendorbatch import (
        record_batch_ended,
        record_batch_submitted,
        record_open_batches,
        record_result_dropped,
    )

    before = sample("toolbag_vendor_batch_items_total", provider="p-count", model="m")
    record_batch_submitted("p-count", "m", 250)
    record_batch_submitted("p-count", "m", 50)
    assert sample("toolbag_vendor_batches_submitted_total", provider="p-count", model="m") >= 2
    assert sample("toolbag_vendor_batch_items_total", provider="p-count", model="m") - before == 300
    record_open_batches("p-count", [12.0, 3600.5, 40.0])
    assert sample("toolbag_vendor_batches_open", provider="p-count") == 3
    assert sample("toolbag_vendor_batch_oldest_age_seconds", provider="p-count") == 3600.5
    record_open_batches("p-count", [])
    assert sample("toolbag_vendor_batch_oldest_age_seconds", provider="p-count") == 0
    record_batch_ended("p-count", "completed", 900.0)
    assert sample("toolbag_vendor_batch_duration_seconds_count", provider="p-count", ending="completed") >= 1
    dropped = sample("toolbag_vendor_batch_results_dropped_total", provider="p-count")
    record_result_dropped("p-count", 3)
    assert sample("toolbag_vendor_batch_results_dropped_total", provider="p-count") - dropped == 3
