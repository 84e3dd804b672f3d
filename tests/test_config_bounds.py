"""``toolbag.yaml`` is bounded: a file that is not UTF-8, nested too deep or expanded by aliases, and every number
the fleet cannot represent or act on, is one ``ConfigError`` naming the file, the path and the reason."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolbag.config import (
    DEFAULT_CONFIG_PATH,
    MAX_KEEP_S,
    MIN_DEADLINE_S,
    Config,
    ConfigError,
    FleetConfig,
    load_config,
)

DEFAULTS: dict[str, Any] = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))


def with_setting(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(DEFAULTS)
    *parents, leaf = path.split(".")
    node = data
    for name in parents:
        node = node.setdefault(name, {})
    node[leaf] = value
    return data


def refusal(tmp_path: Path, content: bytes | str) -> str:
    file = tmp_path / "toolbag.yaml"
    file.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    return str(caught.value)


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (DEFAULT_CONFIG_PATH.read_bytes() + b"\n# caf\xe9\n", "not UTF-8 text (0xe9)"),
        ("routes: " + "[" * 5000 + "]" * 5000, "routes.0.0.0.0"),
        ("a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 40)) + "  " * 40 + "v: 1\n", "a.k1.k2.k3"),
        ("a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
         "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n", "once YAML aliases"),
        ('fleet: {key_prefix: "tb:\\ud800"}', "fleet.key_prefix: not valid Unicode text"),
        ("fleet: {lease_ttl_s: " + "9" * 5000 + "}", "not valid YAML"),
        ("fleet: {lease_ttl_s: 2024-13-45}", "not valid YAML"),
        ("fleet: [1, 2\nroutes: {}", "line 2: not valid YAML"),
    ],
    ids=["not-utf8", "deep-list", "deep-mapping", "alias-bomb", "lone-surrogate", "huge-int", "bad-date", "bad-yaml"],
)
def test_an_unreadable_file_is_one_line_naming_file_path_and_reason(tmp_path: Path, content: bytes | str,
                                                                   phrase: str) -> None:
    message = refusal(tmp_path, content)
    assert message.startswith(str(tmp_path / "toolbag.yaml") + ": ")
    assert phrase in message and "\n" not in message, message


@pytest.mark.parametrize(
    ("path", "value", "phrase"),
    [
        ("fleet.job_ttl_s", 9_300_000_000_000_000, "fleet.job_ttl_s"),
        ("fleet.lease_ttl_s", math.nan, "fleet.lease_ttl_s: Input should be a finite number"),
        ("fleet.lease_ttl_s", 0.0, "fleet.lease_ttl_s"),
        ("fleet.visibility_timeout_s", 60, "total_timeout_s: must be below fleet.visibility_timeout_s"),
        ("tiers.batch.max_deadline_s", math.inf, "tiers.batch.max_deadline_s: Input should be a finite number"),
        ("tiers.batch.max_deadline_s", 1e308, "tiers.batch.max_deadline_s"),
        ("tiers.batch.max_deadline_s", MIN_DEADLINE_S / 2, "tiers.batch.max_deadline_s"),
        ("tiers.batch.total_timeout_s", -math.inf, "tiers.batch.total_timeout_s"),
        ("fleet.job_ttl_s", 3600, "max_deadline_s: must not exceed fleet.job_ttl_s"),
        ("models.gpt-luna.input_usd_per_mtok", math.inf, "models.gpt-luna.input_usd_per_mtok"),
        ("models.gpt-luna.limits.window_s", math.nan, "models.gpt-luna.limits.window_s"),
        ("health.open_s", 1e300, "health.open_s"),
        ("routes.summarize.standard.policy", {"backoff_max_s": math.inf}, "backoff_max_s"),
    ],
)
def test_every_number_is_bounded_to_what_the_fleet_can_represent(tmp_path: Path, path: str, value: Any,
                                                                 phrase: str) -> None:
    assert phrase in refusal(tmp_path, yaml.safe_dump(with_setting(path, value)))


def test_the_bounds_admit_the_defaults_and_the_extremes(tmp_path: Path) -> None:
    data = with_setting("fleet.job_ttl_s", MAX_KEEP_S)
    data["tiers"]["batch"]["max_deadline_s"] = MAX_KEEP_S
    file = tmp_path / "toolbag.yaml"
    file.write_text(yaml.safe_dump(data))
    config = load_config(file)
    assert config.fleet.job_ttl_s == MAX_KEEP_S and load_config(DEFAULT_CONFIG_PATH).fleet == FleetConfig(
        **DEFAULTS["fleet"])


def numeric_paths(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in numeric_paths(value, f"{prefix}{key}.")]
    if isinstance(node, int | float) and not isinstance(node, bool):
        return [prefix.rstrip(".")]
    return []


NUMERIC_PATHS = numeric_paths(DEFAULTS) + ["fleet.lease_ttl_s", "fleet.stuck_deciding_s", "health.open_s",
                                           "tiers.standard.ratelimit_wait_s", "models.gpt-luna.limits.margin_s"]
VALUES = (st.floats() | st.integers(min_value=-(10**400), max_value=10**400) | st.text(max_size=5) | st.none()
          | st.booleans() | st.lists(st.integers(), max_size=2))


def assert_config_or_config_error(file: Path) -> None:
    try:
        config = load_config(file)
    except ConfigError as err:
        assert str(err).startswith(f"{file}: ")
        return
    assert isinstance(config, Config)
    for tier in config.tiers.values():
        assert MIN_DEADLINE_S <= tier.max_deadline_s <= config.fleet.job_ttl_s <= MAX_KEEP_S
        assert math.isfinite(tier.total_timeout_s) and tier.total_timeout_s < config.fleet.visibility_timeout_s


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(st.tuples(st.sampled_from(NUMERIC_PATHS), VALUES), min_size=1, max_size=3))
def test_any_setting_gives_a_config_or_a_config_error(tmp_path: Path, changes: list[tuple[str, Any]]) -> None:
    data = copy.deepcopy(DEFAULTS)
    for path, value in changes:
        *parents, leaf = path.split(".")
        node = data
        for name in parents:
            node = node.setdefault(name, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node[leaf] = value
    file = tmp_path / "toolbag.yaml"
    file.write_text(yaml.safe_dump(data))
    assert_config_or_config_error(file)


YAMLISH = st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#,.0123456789 \n\t\\eunx")), max_size=120)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=200) | YAMLISH.map(str.encode) | st.text(max_size=60).map(str.encode),
       after_defaults=st.booleans())
def test_any_file_gives_a_config_or_a_config_error(tmp_path: Path, content: bytes, after_defaults: bool) -> None:
    file = tmp_path / "toolbag.yaml"
    file.write_bytes(DEFAULT_CONFIG_PATH.read_bytes() + b"\n" + content if after_defaults else content)
    assert_config_or_config_error(file)
