"""``toolbag.yaml``: pydantic models, loading, and errors that name the file, the field and the reason."""

from __future__ import annotations

import re
from dataclasses import dataclass
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

# Bounds of what the fleet can represent and act on. Every duration is finite (no NaN or infinity anywhere).
MIN_DEADLINE_S = 1.0  # the shortest job deadline: a shorter one passes before any attempt can run
MAX_WAIT_S = 86_400.0  # the longest timeout, backoff, window, lease or sweep period: a day
MAX_KEEP_S = 10 * 365 * 86_400  # the longest a job is kept or may run (job_ttl_s, deadlines): ten years
MAX_CONFIG_BYTES = 1_000_000
MAX_CONFIG_DEPTH = 32  # mappings and lists inside each other
MAX_CONFIG_VALUES = 100_000  # values in the file once every YAML alias is expanded
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class ConfigError(ToolbagError):
    """A configuration problem, phrased for the person who must fix it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


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
    """What a model supports. ``batch``: the vendor's asynchronous batch API serves it (Anthropic Message
    Batches, the OpenAI Batch API, Gemini batch mode), so the batch tier may send it there."""

    json_schema: bool = True
    tools: bool = True
    batch: bool = False
    # The model continues a trailing assistant message (a prefill) instead of answering anew. None: the
    # vendor's rule (Anthropic's models do; OpenAI's and Gemini's chat APIs answer a new turn).
    prefill: bool | None = None


class Limits(_Strict):
    """Vendor limits for one model, shared by the whole fleet. ``None`` means unlimited.

    ``rpm`` and ``tpm`` count per ``window_s`` (a minute unless said otherwise). ``margin_s`` spaces requests
    as if the window were that much longer, so jitter between admission and the vendor's clock cannot push
    a window over the limit (default: 2% of the window, at most 0.5 s). See docs/ratelimits.md.
    """

    rpm: int | None = Field(default=None, ge=1, le=1_000_000_000)
    tpm: int | None = Field(default=None, ge=1, le=1_000_000_000_000)
    concurrency: int | None = Field(default=None, ge=1, le=1_000_000)
    interactive_reserve: float = Field(default=0.2, ge=0.0, lt=1.0)
    window_s: float = Field(default=60.0, ge=0.001, le=MAX_WAIT_S)
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


BATCH_PRICE_RATIO = 0.5  # a vendor batch's price against real time when the model gives none (all three: half)


class ModelConfig(_Strict):
    """A provider + model id with prices (USD per 1M tokens), window, limits and features.

    Batch prices (``batch_input_usd_per_mtok``, ``batch_output_usd_per_mtok``) are what the vendor's batch API
    charges; ``None`` means half the real-time price, which is what Anthropic, OpenAI and Gemini charge today.
    """

    provider: str
    model_id: str
    input_usd_per_mtok: float = Field(default=0.0, ge=0, le=1_000_000)
    output_usd_per_mtok: float = Field(default=0.0, ge=0, le=1_000_000)
    context_window: int = Field(default=128_000, ge=1, le=100_000_000)
    max_output_tokens: int = Field(default=8192, ge=1, le=100_000_000)
    limits: Limits = Field(default_factory=Limits)
    features: Features = Field(default_factory=Features)

    # Prompt caching: what a cached input token costs when read from the cache and when written to it
    # (None: the input price; vendors charge reads at a fraction and writes at or above it).
    cache_read_usd_per_mtok: float | None = Field(default=None, ge=0, le=1_000_000)
    cache_write_usd_per_mtok: float | None = Field(default=None, ge=0, le=1_000_000)

    # The vendor batch API's prices (None: BATCH_PRICE_RATIO of the real-time price).
    batch_input_usd_per_mtok: float | None = Field(default=None, ge=0, le=1_000_000)
    batch_output_usd_per_mtok: float | None = Field(default=None, ge=0, le=1_000_000)

    @property
    def batch_input_price(self) -> float:
        """USD per 1M input tokens in a vendor batch."""
        if self.batch_input_usd_per_mtok is not None:
            return self.batch_input_usd_per_mtok
        return self.input_usd_per_mtok * BATCH_PRICE_RATIO

    @property
    def batch_output_price(self) -> float:
        """USD per 1M output tokens in a vendor batch."""
        if self.batch_output_usd_per_mtok is not None:
            return self.batch_output_usd_per_mtok
        return self.output_usd_per_mtok * BATCH_PRICE_RATIO

    def cost_usd(self, input_tokens: int, output_tokens: int, *, cache_read_tokens: int = 0,
                 cache_write_tokens: int = 0, batch: bool = False) -> float:
        """USD for a call. ``input_tokens`` is every input token; the cache reads and writes among them are
        priced at their own rates. ``batch``: served by the vendor's batch API, at the batch prices; the batch
        discount applies to cache reads and writes too (the cache prices scaled by batch input / input)."""
        in_price = self.batch_input_price if batch else self.input_usd_per_mtok
        out_price = self.batch_output_price if batch else self.output_usd_per_mtok
        scale = (in_price / self.input_usd_per_mtok if self.input_usd_per_mtok > 0 else BATCH_PRICE_RATIO) \
            if batch else 1.0
        read = (self.cache_read_usd_per_mtok * scale if self.cache_read_usd_per_mtok is not None else in_price)
        write = (self.cache_write_usd_per_mtok * scale if self.cache_write_usd_per_mtok is not None else in_price)
        plain = max(0, input_tokens - cache_read_tokens - cache_write_tokens)
        return (plain * in_price + cache_read_tokens * read + cache_write_tokens * write
                + output_tokens * out_price) / 1e6


class TierConfig(_Strict):
    connect_timeout_s: float = Field(default=5.0, gt=0, le=MAX_WAIT_S)
    first_token_timeout_s: float = Field(default=30.0, gt=0, le=MAX_WAIT_S)
    total_timeout_s: float = Field(default=120.0, gt=0, le=MAX_WAIT_S)
    default_deadline_s: float = Field(default=600.0, ge=MIN_DEADLINE_S, le=MAX_KEEP_S)
    max_deadline_s: float = Field(default=86_400.0, ge=MIN_DEADLINE_S, le=MAX_KEEP_S)
    stream: bool = True  # stream vendor calls: makes first-token and stall timeouts enforceable
    ratelimit_wait_s: float = Field(default=1.0, ge=0, le=MAX_WAIT_S)  # longest in-process wait for capacity
    max_queue_depth: int | None = Field(default=None, ge=1)  # the front door answers 429 past it (None: no cap)

    @model_validator(mode="after")
    def _ordered(self) -> TierConfig:
        if self.first_token_timeout_s > self.total_timeout_s:
            raise ValueError("first_token_timeout_s must not exceed total_timeout_s")
        if self.default_deadline_s > self.max_deadline_s:
            raise ValueError("default_deadline_s must not exceed max_deadline_s")
        return self


StreamFailover = Literal["continue", "error"]


class RoutePolicy(_Strict):
    """What the supervisor may do for a route (defaults: the table in README.md, Outcomes and rerouting)."""

    max_attempts: int = Field(default=6, ge=1, le=50)
    max_reroutes: int = Field(default=4, ge=0, le=50)
    same_model_retries: int = Field(default=1, ge=0, le=10)
    backoff_base_s: float = Field(default=0.2, ge=0, le=MAX_WAIT_S)
    backoff_max_s: float = Field(default=30.0, ge=0, le=MAX_WAIT_S)
    prefer_faster: bool = False  # reorder candidates by observed latency instead of keeping route order
    # A rate-limited interactive job spills to a candidate with capacity now; when none has, it waits out a
    # retry-after up to this long on the same model (within its deadline). 0: it always spills.
    interactive_wait_s: float = Field(default=2.0, ge=0, le=60)
    # A streamed answer cut after text reached the caller: ``continue`` it on the next attempt from where it
    # stopped (an assistant prefill, on a model that accepts one), or end the stream with an in-band ``error``.
    stream_failover: StreamFailover = "continue"
    # Batch-tier jobs go through the vendor's batch API (half the price) on a model with features.batch, when
    # their deadline leaves at least vendor_batch_bound_s (vendors promise a batch within 24 h); false: always
    # real time. The rule: toolbag.routing.vendorbatch.
    vendor_batch: bool = True
    vendor_batch_bound_s: float = Field(default=86_400.0, ge=1, le=MAX_KEEP_S)


RoutingPolicy = Literal["order", "cheapest", "fastest", "weighted"]
ROUTING_POLICIES: tuple[str, ...] = ("order", "cheapest", "fastest", "weighted")


class Route(_Strict):
    """A route's candidates and how the first attempt's model is chosen among them (``routing``): ``order``
    (the first usable one), ``cheapest`` (the lowest expected cost of the job's input), ``fastest`` (the
    lowest recent latency among healthy ones) or ``weighted`` (shares from ``weights``, one per candidate)."""

    candidates: tuple[str, ...] = Field(min_length=1)
    policy: RoutePolicy = Field(default_factory=RoutePolicy)
    routing: RoutingPolicy = "order"
    weights: tuple[float, ...] | None = None

    @model_validator(mode="after")
    def _weights(self) -> Route:
        if self.weights is not None:
            if len(self.weights) != len(self.candidates):
                raise ValueError(f"weights: {len(self.weights)} given for {len(self.candidates)} candidates "
                                 "(one share per candidate)")
            if any(not w >= 0 for w in self.weights) or not sum(self.weights) > 0:
                raise ValueError("weights: shares must be >= 0 and not all 0")
        elif self.routing == "weighted":
            raise ValueError("weights: required with routing: weighted (one share per candidate)")
        return self


class BudgetLimit(_Strict):
    """A budget in USD per calendar day and per calendar month (``None``: no limit on that period).

    Reaching ``soft_ratio`` of a limit warns (a log line once and a metric); reaching the limit refuses new
    jobs at submit until the period resets. Jobs already submitted finish."""

    daily_usd: float | None = Field(default=None, gt=0, le=1_000_000_000)
    monthly_usd: float | None = Field(default=None, gt=0, le=1_000_000_000)
    soft_ratio: float = Field(default=0.8, gt=0, le=1)


class CallerBudget(BudgetLimit):
    """A caller's budget and the team it belongs to (its spend also counts against the team's budget)."""

    team: str | None = None


class BudgetsConfig(_Strict):
    """Budgets for the whole fleet, for teams and for callers (``toolbag.budgets``); periods are calendar days
    and months in ``time_zone`` (an IANA name)."""

    time_zone: str = "UTC"
    webhook_url: str | None = None  # POSTed (through the outbox) when a budget first crosses its soft limit
    fleet: BudgetLimit = Field(default_factory=BudgetLimit)
    teams: dict[str, BudgetLimit] = Field(default_factory=dict)
    callers: dict[str, CallerBudget] = Field(default_factory=dict)

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as UTC or Europe/Berlin)") from None
        return value

    @model_validator(mode="after")
    def _teams(self) -> BudgetsConfig:
        for name in (*self.teams, *self.callers):
            if not _BUDGET_NAME.match(name):
                raise ValueError(f"{name!r}: a team or caller name is 1-128 characters from letters, digits and "
                                 ". _ @ / + -")
        for caller, budget in self.callers.items():
            if budget.team is not None and budget.team not in self.teams:
                raise ValueError(f"callers.{caller}.team: unknown team {budget.team!r} "
                                 f"(known: {', '.join(sorted(self.teams)) or 'none'})")
        return self

    def team_of(self, caller: str) -> str | None:
        entry = self.callers.get(caller)
        return entry.team if entry is not None else None


_BUDGET_NAME = re.compile(r"^[A-Za-z0-9._@/+-]{1,128}$")


class VendorBatchConfig(_Strict):
    """How batch-tier attempts are gathered into vendor batches and watched (docs/bulk.md).

    A pending collection (one per provider and model) is submitted as one vendor batch when it holds
    ``max_requests`` attempts or ``max_bytes`` of requests, or its oldest waited ``max_age_s`` (which jobs take
    the batch path: :mod:`toolbag.routing.vendorbatch`). Batches are polled every ``poll_interval_s``; one
    still running ``stuck_after_s`` after its submission is cancelled and its attempts fail; a batch taken but
    never recorded as created at its vendor (its taker died) is recovered after ``creating_timeout_s``."""

    max_requests: int = Field(default=1000, ge=1, le=100_000)
    max_bytes: int = Field(default=20_000_000, ge=1_000, le=200_000_000)
    max_age_s: float = Field(default=300.0, gt=0, le=MAX_WAIT_S)
    poll_interval_s: float = Field(default=30.0, gt=0, le=MAX_WAIT_S)
    stuck_after_s: float = Field(default=90_000.0, gt=0, le=MAX_KEEP_S)
    creating_timeout_s: float = Field(default=300.0, gt=0, le=MAX_WAIT_S)
    lock_ttl_s: float = Field(default=30.0, gt=0, le=MAX_WAIT_S)


class FleetConfig(_Strict):
    max_input_bytes: int = Field(default=1_000_000, ge=1, le=100_000_000)
    job_ttl_s: int = Field(default=7 * 86_400, ge=60, le=MAX_KEEP_S)
    lease_ttl_s: float = Field(default=5.0, ge=0.1, le=MAX_WAIT_S)
    visibility_timeout_s: int = Field(default=3600, ge=60, le=MAX_KEEP_S)
    key_prefix: str = "tb:"
    unclaimed_delivery_s: float = Field(default=10.0, gt=0, le=MAX_WAIT_S)  # reclaim a delivery unclaimed this long
    stuck_deciding_s: float = Field(default=30.0, gt=0, le=MAX_WAIT_S)  # re-send a decision not taken within this
    escalation_webhook_url: str | None = None  # POSTed a JSON summary of every escalation
    # fast: Redis acknowledges a write before any replica has it (a failover can drop the last writes).
    # replicated: submit and complete wait for one replica (WAIT 1), and a result is returned only once a
    # replica has it; past replica_ack_timeout_ms a submission is refused as retryable (docs/deploy.md).
    redis_durability: Literal["fast", "replicated"] = "fast"
    replica_ack_timeout_ms: int = Field(default=1000, ge=1, le=60_000)
    vendor_batch: VendorBatchConfig = Field(default_factory=VendorBatchConfig)


class HealthConfig(_Strict):
    """Circuit breaker and EWMA settings, shared by every model."""

    failures_to_open: int = Field(default=3, ge=1, le=1_000_000)
    open_s: float = Field(default=5.0, gt=0, le=MAX_WAIT_S)
    max_open_s: float = Field(default=300.0, gt=0, le=MAX_WAIT_S)
    auth_open_s: float = Field(default=600.0, gt=0, le=MAX_WAIT_S)
    probe_lease_s: float = Field(default=30.0, gt=0, le=MAX_WAIT_S)
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
    # Spend budgets (toolbag.budgets); absent: spend is neither reserved nor recorded.
    budgets: BudgetsConfig | None = None

    @model_validator(mode="after")
    def _references(self) -> Config:
        for name, model in self.models.items():
            if model.provider not in self.providers:
                raise ValueError(
                    f"models.{name}.provider: unknown provider {model.provider!r} "
                    f"(known: {', '.join(sorted(self.providers))})"
                )
        for name, model in self.models.items():
            if model.features.batch and self.providers[model.provider].kind == "openai-compatible":
                raise ValueError(f"models.{name}.features.batch: provider {model.provider!r} is openai-compatible, "
                                 "which has no vendor batch API")
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
        for tier, settings in self.tiers.items():
            if settings.max_deadline_s > self.fleet.job_ttl_s:
                raise ValueError(f"tiers.{tier}.max_deadline_s: must not exceed fleet.job_ttl_s "
                                 f"({self.fleet.job_ttl_s}s): a job is kept no longer than that")
            if settings.total_timeout_s >= self.fleet.visibility_timeout_s:
                raise ValueError(f"tiers.{tier}.total_timeout_s: must be below fleet.visibility_timeout_s "
                                 f"({self.fleet.visibility_timeout_s}s): Celery redelivers a message unacked that long")
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

    def accepts_prefill(self, model_name: str) -> bool:
        """Whether ``model_name`` continues a trailing assistant message (``features.prefill``, else its
        vendor's rule: Anthropic yes, the others no)."""
        model = self.models[model_name]
        if model.features.prefill is not None:
            return model.features.prefill
        return self.providers[model.provider].kind == "anthropic"


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
    from toolbag.settings import load_settings

    env = load_settings().config
    if env:
        return env
    local = Path("toolbag.yaml")
    return local if local.exists() else DEFAULT_CONFIG_PATH


def load_config(path: str | Path | None = None) -> Config:
    """Load and validate a config file. ``$TOOLBAG_SIMULATOR_URL`` overrides ``simulator_url``."""
    file = Path(path) if path is not None else config_path()
    config = parse_config(_read_yaml(file), str(file))
    from toolbag.settings import load_settings

    simulator_override = load_settings().simulator_url
    if simulator_override:
        config = config.model_copy(update={"simulator_url": simulator_override})
    return config


def _read_yaml(file: Path) -> Any:
    """The YAML document in ``file``; a :class:`ConfigError` of one line when it cannot be read, is not UTF-8,
    not YAML, or nested or expanded beyond the bounds above."""
    try:
        raw = file.read_bytes()
    except OSError as err:
        raise ConfigError(f"{file}: cannot read the config file ({err.strerror})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{file}: {len(raw)} bytes, more than the {MAX_CONFIG_BYTES} a config file may have")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{file}: byte {err.start}: not UTF-8 text (0x{raw[err.start]:02x})") from None
    try:
        problem = _shape_problem(text)
        if problem is not None:
            raise ConfigError(f"{file}: {problem.path or '(top level)'}: {problem.reason}")
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}" if mark is not None else "(top level)"
        raise ConfigError(f"{file}: {where}: not valid YAML ({err.problem or err.context})") from None
    except (yaml.YAMLError, ValueError) as err:  # ValueError: a value YAML reads but Python cannot hold
        raise ConfigError(f"{file}: not valid YAML ({' '.join(str(err).split())})") from None


@dataclass(frozen=True)
class _Problem:
    path: str
    reason: str


@dataclass
class _Open:
    """A mapping or list being read: its size so far (aliases expanded) and where the reader is in it."""

    mapping: bool
    anchor: str | None
    size: int = 1
    items: int = 0
    key: str = ""

    def at(self) -> str:
        return self.key if self.mapping else str(self.items)

    def add(self, size: int, scalar: str | None) -> None:
        if self.mapping and self.items % 2 == 0:
            self.key = scalar if scalar is not None else "?"
        self.items += 1
        self.size += size


def _shape_problem(text: str) -> _Problem | None:
    """Read ``text``'s YAML events, without recursion, for what must not reach the loader: nesting deeper than
    :data:`MAX_CONFIG_DEPTH`, more than :data:`MAX_CONFIG_VALUES` values once aliases are expanded, and text
    that is not valid Unicode."""
    anchored: dict[str, int] = {}
    stack: list[_Open] = []
    total = 0

    def path() -> str:
        return ".".join(frame.at() for frame in stack if not frame.mapping or frame.items % 2 == 1)

    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(stack) >= MAX_CONFIG_DEPTH:
                return _Problem(path(), f"nested deeper than {MAX_CONFIG_DEPTH} levels")
            stack.append(_Open(isinstance(event, yaml.MappingStartEvent), event.anchor))
            total += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            done = stack.pop()
            if done.anchor:
                anchored[done.anchor] = done.size
            if stack:
                stack[-1].add(done.size, None)
        elif isinstance(event, yaml.ScalarEvent):
            if not valid_unicode(event.value):
                return _Problem(path(), "not valid Unicode text (a lone surrogate)")
            if event.anchor:
                anchored[event.anchor] = 1
            total += 1
            if stack:
                stack[-1].add(1, event.value)
        elif isinstance(event, yaml.AliasEvent):
            size = anchored.get(event.anchor or "", 1)
            total += size
            if stack:
                stack[-1].add(size, None)
        if total > MAX_CONFIG_VALUES:
            return _Problem(path(), f"more than {MAX_CONFIG_VALUES} values once YAML aliases are expanded")
    return None


def valid_unicode(text: str) -> bool:
    """False when ``text`` holds a lone surrogate: it cannot be written as UTF-8 (to Redis, or to a vendor)."""
    return _LONE_SURROGATE.search(text) is None


def redis_url() -> str:
    """``$TOOLBAG_REDIS_URL`` (checked: :class:`toolbag.settings.SettingsError`), else the local default."""
    from toolbag.settings import load_settings

    return load_settings().redis_url
