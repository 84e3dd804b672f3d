"""``toolbag.yaml``: pydantic models, loading, and errors that name the file, the field and the reason."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from toolbag.errors import ToolbagError

Tier = Literal["interactive", "standard", "batch"]
TIERS: tuple[Tier, ...] = ("interactive", "standard", "batch")  # most urgent first
PROVIDER_KINDS: tuple[str, ...] = ("anthropic", "openai", "gemini", "openai-compatible")

DEFAULT_CONFIG_PATH = Path(__file__).parent / "defaults" / "toolbag.yaml"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_SIMULATOR_URL = "http://127.0.0.1:8900"


class ConfigError(ToolbagError):
    """A configuration problem, phrased for the person who must fix it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderConfig(_Strict):
    """One vendor account. ``base_url`` unset means the vendor's public API (or the simulator in dev)."""

    kind: Literal["anthropic", "openai", "gemini", "openai-compatible"]
    base_url: str | None = None
    api_key_env: str | None = None
    concurrency: int = Field(default=200, ge=1, le=10_000)
    limits: Limits | None = None  # account-wide limits across this provider's models (toolbag.ratelimit)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"must be an http(s) URL with a host, got {value!r}")
        return value.rstrip("/")

    def default_key_env(self) -> str:
        return self.api_key_env or {
            "anthropic": "ANTHROPIC_API_KEY",
            "openai": "OPENAI_API_KEY",
            "gemini": "GEMINI_API_KEY",
            "openai-compatible": "OPENAI_COMPATIBLE_API_KEY",
        }[self.kind]


class Features(_Strict):
    json_schema: bool = True
    tools: bool = True
    batch: bool = False


class Limits(_Strict):
    """Vendor limits for one model, shared by the whole fleet. ``None`` means unlimited.

    ``rpm`` and ``tpm`` count per ``window_s`` (a minute unless said otherwise). ``margin_s`` spaces requests
    as if the window were that much longer, so jitter between admission and the vendor's clock cannot push
    a window over the limit (default: 2% of the window, at most 0.5 s). See docs/ratelimits.md.
    """

    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    concurrency: int | None = Field(default=None, ge=1)
    interactive_reserve: float = Field(default=0.2, ge=0.0, lt=1.0)
    window_s: float = Field(default=60.0, gt=0)
    margin_s: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _margin(self) -> Limits:
        if self.margin_s is not None and self.margin_s >= self.window_s / 2:
            raise ValueError("margin_s must be below half of window_s")
        return self

    @property
    def effective_margin_s(self) -> float:
        return self.margin_s if self.margin_s is not None else min(0.5, 0.02 * self.window_s)

    @property
    def limited(self) -> bool:
        return self.rpm is not None or self.tpm is not None or self.concurrency is not None


class ModelConfig(_Strict):
    """A provider + model id with prices (USD per 1M tokens), window, limits and features."""

    provider: str
    model_id: str
    input_usd_per_mtok: float = Field(default=0.0, ge=0)
    output_usd_per_mtok: float = Field(default=0.0, ge=0)
    context_window: int = Field(default=128_000, ge=1)
    max_output_tokens: int = Field(default=8192, ge=1)
    limits: Limits = Field(default_factory=Limits)
    features: Features = Field(default_factory=Features)

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_usd_per_mtok + output_tokens * self.output_usd_per_mtok) / 1e6


class TierConfig(_Strict):
    connect_timeout_s: float = Field(default=5.0, gt=0)
    first_token_timeout_s: float = Field(default=30.0, gt=0)
    total_timeout_s: float = Field(default=120.0, gt=0)
    default_deadline_s: float = Field(default=600.0, gt=0)
    max_deadline_s: float = Field(default=86_400.0, gt=0)
    stream: bool = True  # stream vendor calls: makes first-token and stall timeouts enforceable
    ratelimit_wait_s: float = Field(default=1.0, ge=0)  # longest in-process wait for rate-limit capacity

    @model_validator(mode="after")
    def _ordered(self) -> TierConfig:
        if self.first_token_timeout_s > self.total_timeout_s:
            raise ValueError("first_token_timeout_s must not exceed total_timeout_s")
        if self.default_deadline_s > self.max_deadline_s:
            raise ValueError("default_deadline_s must not exceed max_deadline_s")
        return self


class RoutePolicy(_Strict):
    """What the supervisor may do for a route (defaults: the table in README.md, Outcomes and rerouting)."""

    max_attempts: int = Field(default=6, ge=1, le=50)
    max_reroutes: int = Field(default=4, ge=0, le=50)
    same_model_retries: int = Field(default=1, ge=0, le=10)
    backoff_base_s: float = Field(default=0.2, ge=0)
    backoff_max_s: float = Field(default=30.0, ge=0)
    prefer_faster: bool = False  # reorder candidates by observed latency instead of keeping route order
    # A rate-limited interactive job spills to a candidate with capacity now; when none has, it waits out a
    # retry-after up to this long on the same model (within its deadline). 0: it always spills.
    interactive_wait_s: float = Field(default=2.0, ge=0, le=60)


class Route(_Strict):
    candidates: tuple[str, ...] = Field(min_length=1)
    policy: RoutePolicy = Field(default_factory=RoutePolicy)


class FleetConfig(_Strict):
    max_input_bytes: int = Field(default=1_000_000, ge=1)
    job_ttl_s: int = Field(default=7 * 86_400, ge=60)
    lease_ttl_s: float = Field(default=5.0, gt=0)
    visibility_timeout_s: int = Field(default=3600, ge=60)
    key_prefix: str = "tb:"
    unclaimed_delivery_s: float = Field(default=10.0, gt=0)  # a delivery not claimed by then is reclaimed
    stuck_deciding_s: float = Field(default=30.0, gt=0)  # re-send a decision not taken within this
    escalation_webhook_url: str | None = None  # POSTed a JSON summary of every escalation


class HealthConfig(_Strict):
    """Circuit breaker and EWMA settings, shared by every model."""

    failures_to_open: int = Field(default=3, ge=1)
    open_s: float = Field(default=5.0, gt=0)
    max_open_s: float = Field(default=300.0, gt=0)
    auth_open_s: float = Field(default=600.0, gt=0)
    probe_lease_s: float = Field(default=30.0, gt=0)
    ewma_alpha: float = Field(default=0.2, gt=0, le=1)


class Config(_Strict):
    """The whole of ``toolbag.yaml``."""

    dev: bool = True
    simulator_url: str = DEFAULT_SIMULATOR_URL
    fleet: FleetConfig = Field(default_factory=FleetConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    providers: dict[str, ProviderConfig]
    models: dict[str, ModelConfig]
    tiers: dict[str, TierConfig] = Field(default_factory=lambda: {str(t): TierConfig() for t in TIERS})
    routes: dict[str, dict[str, Route]]
    # Limits per caller across every model; the key "*" applies to each caller without its own entry.
    caller_limits: dict[str, Limits] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _references(self) -> Config:
        for name, model in self.models.items():
            if model.provider not in self.providers:
                raise ValueError(
                    f"models.{name}.provider: unknown provider {model.provider!r} "
                    f"(known: {', '.join(sorted(self.providers))})"
                )
        for tier in self.tiers:
            if tier not in TIERS:
                raise ValueError(f"tiers.{tier}: unknown tier (use {', '.join(TIERS)})")
        for capability, per_tier in self.routes.items():
            for tier, route in per_tier.items():
                if tier not in TIERS:
                    raise ValueError(f"routes.{capability}.{tier}: unknown tier (use {', '.join(TIERS)})")
                for candidate in route.candidates:
                    if candidate not in self.models:
                        raise ValueError(
                            f"routes.{capability}.{tier}.candidates: unknown model {candidate!r} "
                            f"(known: {', '.join(sorted(self.models))})"
                        )
        for tier in TIERS:
            if tier not in self.tiers:
                raise ValueError(f"tiers: missing tier {tier!r}")
        return self

    @cached_property
    def capabilities(self) -> tuple[str, ...]:
        return tuple(sorted(self.routes))

    def route(self, capability: str, tier: Tier) -> Route:
        """The route for (capability, tier); the nearest tier is used when one is not configured."""
        per_tier = self.routes[capability]
        if tier in per_tier:
            return per_tier[tier]
        for fallback in ("standard", "interactive", "batch"):
            if fallback in per_tier:
                return per_tier[fallback]
        raise KeyError(f"no route for {capability}/{tier}")

    def provider_of(self, model_name: str) -> str:
        return self.models[model_name].provider


def _format_validation_error(path: str, err: ValidationError) -> str:
    lines = [f"{path}: invalid configuration"]
    for item in err.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  - {where}: {item['msg']}")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "<config>") -> Config:
    """Validate an already-parsed YAML document, raising :class:`ConfigError` with every problem listed."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(source, err)) from None


def config_path() -> Path:
    """``$TOOLBAG_CONFIG``, else ``./toolbag.yaml``, else the embedded defaults."""
    env = os.environ.get("TOOLBAG_CONFIG")
    if env:
        return Path(env)
    local = Path("toolbag.yaml")
    return local if local.exists() else DEFAULT_CONFIG_PATH


def load_config(path: str | Path | None = None) -> Config:
    """Load and validate a config file. ``$TOOLBAG_SIMULATOR_URL`` overrides ``simulator_url``."""
    file = Path(path) if path is not None else config_path()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{file}: cannot read the config file ({err.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{file}: not valid YAML: {err}") from None
    config = parse_config(data, str(file))
    simulator_override = os.environ.get("TOOLBAG_SIMULATOR_URL")
    if simulator_override:
        config = config.model_copy(update={"simulator_url": simulator_override.rstrip("/")})
    return config


def redis_url() -> str:
    return os.environ.get("TOOLBAG_REDIS_URL", DEFAULT_REDIS_URL)
