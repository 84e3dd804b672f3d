"""Fault plan: which fault a simulated request gets, how slow the answer is, and what limits it reports.

A :class:`FaultPlan` holds ordered rules (per model glob, optional vendor and text match), a latency model,
static rate-limit header values and optional context windows. It loads from YAML (``FaultPlan.from_file``) or
a dict with the same shape (``FaultPlan.from_dict``, used by ``POST /_sim/faults``)::

    seed: 7
    rules:
      - {model: "claude-*", fault: refusal, probability: 0.1}
      - {model: "gpt-*", sequence: [rate_limit, rate_limit, ok], match: "invoice"}
    latency:
      "claude-*": {ttft_ms: 200, tokens_per_s: 100}
    ratelimit:
      "claude-*": {requests_remaining: 3}
    context_windows:
      "tiny-*": 1000

Selection order for one request (first match wins) is header ``x-sim-fault``, then a ``[[sim:NAME]]``
directive in the request text (:func:`directive_fault`), then the plan's rules (:meth:`FaultPlan.select`).
An unknown fault name in a header or directive is answered with the vendor's native 400 naming it.

Choices the contract left open:

- ``quota`` is Anthropic 402 ``billing_error`` ("credit balance is too low"); ``quota:spend_limit`` is Anthropic
  429 ``rate_limit_error`` with ``details.error_code: enforced_spend_limit_reached`` and no ``retry-after``.
  Other vendors ignore the parameter. Gemini quota = 429 with a ``QuotaFailure`` (per-day quota id) and
  *no* ``RetryInfo``; Gemini rate limits carry ``RetryInfo`` (``rate_limit_bare``: no details at all).
- ``refusal_filter`` and ``refusal_finish`` are the same "output filter" variant everywhere: OpenAI chat
  ``finish_reason: content_filter``, Responses ``status: incomplete`` / ``content_filter``, Gemini candidate
  ``finishReason: SAFETY``, Anthropic ``stop_reason: refusal``.
- ``context_length[:LIMIT[:REQUESTED]]`` states the numbers the way each vendor does (Anthropic "prompt is too
  long: REQUESTED tokens > LIMIT maximum", OpenAI Chat Completions "maximum context length is LIMIT tokens.
  However, your messages resulted in REQUESTED tokens", Gemini "The input token count (REQUESTED) exceeds the
  maximum number of tokens allowed (LIMIT)"; OpenAI Responses states none). Without LIMIT each vendor's own
  figures, with the request never below the tokens counted; without REQUESTED the tokens counted, at least
  LIMIT + 1. A model's ``context_windows`` entry gives LIMIT for a request over it.
- ``hang[:S]`` and ``stall[:S]`` answer normally once S seconds pass (default 3600 s); they end early when the
  client disconnects or the server stops (the connection is then closed).
- ``slow_first_token:MS`` on a stream sends the headers at once and delays the first event.
- Stream faults on a non-streaming request: ``stall`` = ``hang``; ``cut`` = half the body then the connection
  closes; ``malformed`` = a truncated JSON body; ``midstream_error`` = ``overloaded``;
  ``midstream_refusal`` = ``refusal``.
- OpenAI Responses ``midstream_error``: an ``error`` event then ``response.failed``; ``midstream_refusal``:
  ``response.incomplete`` with reason ``content_filter``.
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from toolbag.errors import ToolbagError

# Faults answered with a vendor-native HTTP error status.
ERROR_FAULTS = frozenset(
    {
        "rate_limit",
        "rate_limit_bare",
        "overloaded",
        "server_error",
        "unavailable",
        "context_length",
        "quota",
        "auth",
        "permission",
        "bad_request",
    }
)
# Faults answered with HTTP 200 and a vendor-native refusal.
REFUSAL_FAULTS = frozenset({"refusal", "refusal_filter", "refusal_finish"})
# Faults about the stream body (non-streaming requests get the nearest non-streaming equivalent).
STREAM_FAULTS = frozenset({"stall", "cut", "malformed", "midstream_error", "midstream_refusal"})
# Faults about the connection or timing.
CONNECTION_FAULTS = frozenset({"reset", "hang", "slow_first_token"})

FAULT_NAMES = ERROR_FAULTS | REFUSAL_FAULTS | STREAM_FAULTS | CONNECTION_FAULTS | {"ok"}
FAULT_HEADER = "x-sim-fault"  # a request's fault, ahead of directives and plans

# Faults of a whole vendor batch (see :mod:`.batches`); its items get the faults above.
BATCH_FAULTS = frozenset({"expired", "cancelled", "stuck"})
DEFAULT_BATCH_PROCESSING_MS = 1000.0

DEFAULT_RETRY_AFTER_S = 1.0
DEFAULT_HANG_S = 3600.0

_SECONDS_PARAM = frozenset({"rate_limit", "hang", "stall"})
_QUOTA_VARIANTS = frozenset({"spend_limit"})

_DIRECTIVE = re.compile(r"\[\[sim:([^\]]*)\]\]")
_CONTEXT_PARAM = re.compile(r"([1-9]\d{0,11})(?::([1-9]\d{0,11}))?")


class FaultPlanError(ValueError):
    """A fault plan (file, dict, header or directive) that cannot be used; the message says where and why."""


class _YamlRefused(ToolbagError):
    """A faults file the YAML reader refused (its message names the file)."""


@dataclass(frozen=True)
class Fault:
    """One fault to inject: a name from :data:`FAULT_NAMES` and an optional parameter."""

    name: str
    param: str | None = None

    def __str__(self) -> str:
        return self.name if self.param is None else f"{self.name}:{self.param}"

    @property
    def seconds(self) -> float | None:
        """The parameter as seconds (``rate_limit``, ``hang``, ``stall``), or None when not given."""
        return None if self.param is None else float(self.param)

    @property
    def milliseconds(self) -> float:
        """The parameter as milliseconds (``slow_first_token``)."""
        return float(self.param or 0)

    @property
    def hold_s(self) -> float:
        """How long ``hang`` and ``stall`` hold the request: the parameter, else :data:`DEFAULT_HANG_S`."""
        seconds = self.seconds
        return DEFAULT_HANG_S if seconds is None else seconds

    def context_tokens(self, counted: int, vendor_limit: int, vendor_requested: int) -> tuple[int, int]:
        """(request size, limit) a ``context_length`` error states, given the tokens ``counted`` in the request
        and the vendor's own figures (see the module docstring)."""
        if self.param is None:
            return max(counted, vendor_requested), vendor_limit
        limit, _, requested = self.param.partition(":")
        return (int(requested) if requested else max(counted, int(limit) + 1)), int(limit)


OK = Fault("ok")


def parse_fault(spec: str) -> Fault:
    """Parse ``NAME[:PARAM]``; raise :class:`FaultPlanError` naming the problem when it is not a known fault."""
    text = spec.strip()
    name, sep, param = text.partition(":")
    name = name.strip()
    param = param.strip()
    if name not in FAULT_NAMES:
        known = ", ".join(sorted(FAULT_NAMES))
        raise FaultPlanError(f"unknown fault {name!r} (known faults: {known})")
    if not sep:
        if name == "slow_first_token":
            raise FaultPlanError("fault 'slow_first_token' needs a delay in milliseconds: slow_first_token:MS")
        return Fault(name)
    if name in _SECONDS_PARAM or name == "slow_first_token":
        try:
            value = float(param)
        except ValueError:
            unit = "milliseconds" if name == "slow_first_token" else "seconds"
            raise FaultPlanError(f"fault {name!r}: parameter {param!r} is not a number of {unit}") from None
        if value < 0:
            raise FaultPlanError(f"fault {name!r}: parameter {param!r} must not be negative")
        return Fault(name, param)
    if name == "context_length":
        if _CONTEXT_PARAM.fullmatch(param) is None:
            raise FaultPlanError(f"fault 'context_length': parameter {param!r} is not LIMIT or LIMIT:REQUESTED "
                                 "(positive token counts)")
        return Fault(name, param)
    if name == "quota" and param in _QUOTA_VARIANTS:
        return Fault(name, param)
    raise FaultPlanError(f"fault {name!r} takes no parameter (got {param!r})")


def directive_fault(text: str, model: str) -> Fault | None:
    """The first ``[[sim:NAME[:PARAM][@MODEL_GLOB]]]`` directive in ``text`` that applies to ``model``.

    ``[[sim:tool=...]]`` directives are tool-call directives, not faults, and are skipped.
    """
    if "[[sim:" not in text:
        return None
    for match in _DIRECTIVE.finditer(text):
        body = match.group(1).strip()
        if body.startswith("tool="):
            continue
        spec, _, glob = body.partition("@")
        if glob and not fnmatchcase(model, glob.strip()):
            continue
        try:
            return parse_fault(spec)
        except FaultPlanError as exc:
            raise FaultPlanError(f"directive [[sim:{body}]]: {exc}") from None
    return None


@dataclass(frozen=True)
class Latency:
    """Simulated speed: time to first token, then ``tokens_per_s`` (``None`` = the rest comes at once)."""

    ttft_ms: float = 0.0
    tokens_per_s: float | None = None

    def total_s(self, output_tokens: int) -> float:
        """Delay of a whole non-streaming answer with ``output_tokens`` tokens."""
        pace = 0.0 if not self.tokens_per_s else output_tokens / self.tokens_per_s
        return self.ttft_ms / 1000.0 + pace


@dataclass(frozen=True)
class RateLimitInfo:
    """Values reported in the vendors' rate-limit response headers."""

    requests_limit: int = 10_000
    requests_remaining: int = 9_999
    tokens_limit: int = 10_000_000
    tokens_remaining: int = 9_999_000
    reset_s: float = 1.0


DEFAULT_RATELIMIT = RateLimitInfo()


@dataclass(frozen=True)
class BatchSettings:
    """How a simulated vendor batch runs: its processing time and an optional batch fault."""

    processing_ms: float = DEFAULT_BATCH_PROCESSING_MS
    fault: str | None = None  # one of :data:`BATCH_FAULTS`


def parse_batch_fault(spec: str) -> str | None:
    """A batch fault name (None for ``ok``); :class:`FaultPlanError` naming the problem otherwise."""
    name = spec.strip()
    if name == "ok":
        return None
    if name not in BATCH_FAULTS:
        raise FaultPlanError(f"unknown batch fault {name!r} (known: {', '.join(sorted(BATCH_FAULTS | {'ok'}))})")
    return name


@dataclass
class Rule:
    """One plan rule. Either ``fault`` (with ``probability``) or ``sequence`` (one entry per matching request)."""

    model: str = "*"
    fault: Fault | None = None
    probability: float = 1.0
    sequence: tuple[Fault, ...] | None = None
    match: str | None = None
    vendor: str | None = None
    position: int = 0  # next index into ``sequence``

    def matches(self, vendor: str, model: str, text: str) -> bool:
        if self.vendor is not None and self.vendor != vendor:
            return False
        if not fnmatchcase(model, self.model):
            return False
        if self.match is not None and self.match not in text:
            return False
        return self.sequence is None or self.position < len(self.sequence)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model}
        if self.vendor is not None:
            out["vendor"] = self.vendor
        if self.match is not None:
            out["match"] = self.match
        if self.sequence is not None:
            out["sequence"] = [str(f) for f in self.sequence]
            out["position"] = self.position
        else:
            out["fault"] = str(self.fault)
            out["probability"] = self.probability
        return out


_RULE_KEYS = frozenset({"model", "fault", "probability", "sequence", "match", "vendor", "position"})
_PLAN_KEYS = frozenset({"seed", "rules", "latency", "ratelimit", "context_windows", "batches"})
_BATCH_KEYS = frozenset({"processing_ms", "fault"})
_LATENCY_KEYS = frozenset({"ttft_ms", "tokens_per_s"})
_RATELIMIT_KEYS = frozenset({"requests_limit", "requests_remaining", "tokens_limit", "tokens_remaining", "reset_s"})
_VENDORS = frozenset({"anthropic", "openai", "gemini"})


@dataclass
class FaultPlan:
    """Rules + latency model + rate-limit header values. Selection is thread-safe and seeded."""

    rules: list[Rule] = field(default_factory=list)
    latency: dict[str, Latency] = field(default_factory=dict)
    ratelimit: dict[str, RateLimitInfo] = field(default_factory=dict)
    context_windows: dict[str, int] = field(default_factory=dict)
    batches: dict[str, BatchSettings] = field(default_factory=dict)
    seed: int | None = None

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    @property
    def empty(self) -> bool:
        return not (self.rules or self.latency or self.ratelimit or self.context_windows or self.batches)

    # ----------------------------------------------------------------- selection

    def select(self, vendor: str, model: str, text: str) -> Fault | None:
        """The fault the first applicable rule gives this request (advancing sequences), or None."""
        if not self.rules:
            return None
        with self._lock:
            for rule in self.rules:
                if not rule.matches(vendor, model, text):
                    continue
                if rule.sequence is not None:
                    fault = rule.sequence[rule.position]
                    rule.position += 1
                    return fault
                if rule.probability >= 1.0 or self._rng.random() < rule.probability:
                    return rule.fault
        return None

    def latency_for(self, model: str) -> Latency | None:
        for glob, latency in self.latency.items():
            if fnmatchcase(model, glob):
                return latency
        return None

    def ratelimit_for(self, model: str) -> RateLimitInfo | None:
        for glob, info in self.ratelimit.items():
            if fnmatchcase(model, glob):
                return info
        return None

    def context_window_for(self, model: str) -> int | None:
        for glob, tokens in self.context_windows.items():
            if fnmatchcase(model, glob):
                return tokens
        return None

    def batch_settings_for(self, model: str) -> BatchSettings | None:
        for glob, settings in self.batches.items():
            if fnmatchcase(model, glob):
                return settings
        return None

    # ----------------------------------------------------------------- loading

    @classmethod
    def from_file(cls, path: str | Path) -> FaultPlan:
        """Load a YAML (or JSON) faults file; errors name the file and the problem."""
        from toolbag.gateway.files import parse_yaml

        file = Path(path)
        try:
            raw = parse_yaml(file.read_text(encoding="utf-8"), f"faults file {file}", _YamlRefused)
        except OSError as exc:
            raise FaultPlanError(f"faults file {file}: cannot read: {exc.strerror or exc}") from None
        except _YamlRefused as exc:  # not YAML, nested too deeply, or an alias (which could expand a small file)
            raise FaultPlanError(str(exc)) from None
        if raw is None:
            raw = {}
        try:
            return cls.from_dict(raw)
        except FaultPlanError as exc:
            raise FaultPlanError(f"faults file {file}: {exc}") from None

    @classmethod
    def from_dict(cls, data: Any) -> FaultPlan:
        """Build a plan from the YAML/JSON shape; raise :class:`FaultPlanError` naming the bad key."""
        if not isinstance(data, dict):
            raise FaultPlanError(f"the plan must be a mapping, got {type(data).__name__}")
        _no_unknown_keys(data, _PLAN_KEYS, "plan")
        seed = data.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise FaultPlanError(f"seed: must be an integer, got {seed!r}")
        rules_raw = data.get("rules") or []
        if not isinstance(rules_raw, list):
            raise FaultPlanError("rules: must be a list")
        rules = [_rule_from_dict(item, f"rules[{i}]") for i, item in enumerate(rules_raw)]
        latency = {
            glob: _latency_from_dict(value, f"latency[{glob!r}]")
            for glob, value in _mapping(data.get("latency"), "latency").items()
        }
        ratelimit = {
            glob: _ratelimit_from_dict(value, f"ratelimit[{glob!r}]")
            for glob, value in _mapping(data.get("ratelimit"), "ratelimit").items()
        }
        windows: dict[str, int] = {}
        for glob, value in _mapping(data.get("context_windows"), "context_windows").items():
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise FaultPlanError(f"context_windows[{glob!r}]: must be a positive integer, got {value!r}")
            windows[glob] = value
        batches = {
            glob: _batch_from_dict(value, f"batches[{glob!r}]")
            for glob, value in _mapping(data.get("batches"), "batches").items()
        }
        return cls(rules=rules, latency=latency, ratelimit=ratelimit, context_windows=windows, batches=batches,
                   seed=seed)

    def to_dict(self) -> dict[str, Any]:
        """The plan in the file's shape (sequence rules also show their position)."""
        return {
            "seed": self.seed,
            "rules": [rule.to_dict() for rule in self.rules],
            "latency": {g: {"ttft_ms": v.ttft_ms, "tokens_per_s": v.tokens_per_s} for g, v in self.latency.items()},
            "ratelimit": {g: vars(v).copy() for g, v in self.ratelimit.items()},
            "context_windows": dict(self.context_windows),
            "batches": {g: {"processing_ms": v.processing_ms, "fault": v.fault} for g, v in self.batches.items()},
        }


def _no_unknown_keys(data: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise FaultPlanError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FaultPlanError(f"{where}: must be a mapping of model glob -> settings")
    return {str(k): v for k, v in value.items()}


def _fault_at(spec: Any, where: str) -> Fault:
    if not isinstance(spec, str):
        raise FaultPlanError(f"{where}: a fault must be a string like 'rate_limit:2', got {spec!r}")
    try:
        return parse_fault(spec)
    except FaultPlanError as exc:
        raise FaultPlanError(f"{where}: {exc}") from None


def _rule_from_dict(item: Any, where: str) -> Rule:
    if not isinstance(item, dict):
        raise FaultPlanError(f"{where}: a rule must be a mapping, got {item!r}")
    _no_unknown_keys(item, _RULE_KEYS, where)
    model = item.get("model", "*")
    if not isinstance(model, str):
        raise FaultPlanError(f"{where}.model: must be a glob string, got {model!r}")
    has_fault, has_sequence = "fault" in item, "sequence" in item
    if has_fault == has_sequence:
        raise FaultPlanError(f"{where}: give exactly one of 'fault' or 'sequence'")
    vendor = item.get("vendor")
    if vendor is not None and vendor not in _VENDORS:
        raise FaultPlanError(f"{where}.vendor: must be one of {', '.join(sorted(_VENDORS))}, got {vendor!r}")
    match = item.get("match")
    if match is not None and not isinstance(match, str):
        raise FaultPlanError(f"{where}.match: must be a string, got {match!r}")
    if has_sequence:
        seq = item["sequence"]
        if not isinstance(seq, list) or not seq:
            raise FaultPlanError(f"{where}.sequence: must be a non-empty list of faults")
        if "probability" in item:
            raise FaultPlanError(f"{where}: 'probability' cannot be combined with 'sequence'")
        faults = tuple(_fault_at(s, f"{where}.sequence[{i}]") for i, s in enumerate(seq))
        position = item.get("position", 0)
        if not isinstance(position, int) or isinstance(position, bool) or position < 0:
            raise FaultPlanError(f"{where}.position: must be a non-negative integer, got {position!r}")
        return Rule(model=model, sequence=faults, match=match, vendor=vendor, position=position)
    probability = item.get("probability", 1.0)
    if (
        isinstance(probability, bool)
        or not isinstance(probability, int | float)
        or not 0.0 <= float(probability) <= 1.0
    ):
        raise FaultPlanError(f"{where}.probability: must be a number between 0 and 1, got {probability!r}")
    if "position" in item:
        raise FaultPlanError(f"{where}: 'position' only applies to 'sequence' rules")
    fault = _fault_at(item["fault"], f"{where}.fault")
    return Rule(model=model, fault=fault, probability=float(probability), match=match, vendor=vendor)


def _number(value: Any, where: str, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise FaultPlanError(f"{where}: must be a non-negative number, got {value!r}")
    return float(value)


def _latency_from_dict(value: Any, where: str) -> Latency:
    if not isinstance(value, dict):
        raise FaultPlanError(f"{where}: must be a mapping with ttft_ms / tokens_per_s")
    _no_unknown_keys(value, _LATENCY_KEYS, where)
    ttft = _number(value.get("ttft_ms", 0), f"{where}.ttft_ms") or 0.0
    tps = _number(value.get("tokens_per_s"), f"{where}.tokens_per_s", allow_none=True)
    return Latency(ttft_ms=ttft, tokens_per_s=tps or None)


def _ratelimit_from_dict(value: Any, where: str) -> RateLimitInfo:
    if not isinstance(value, dict):
        raise FaultPlanError(f"{where}: must be a mapping")
    _no_unknown_keys(value, _RATELIMIT_KEYS, where)
    base = DEFAULT_RATELIMIT
    values: dict[str, Any] = {}
    for key in _RATELIMIT_KEYS:
        if key in value:
            number = _number(value[key], f"{where}.{key}")
            values[key] = number if key == "reset_s" else int(number or 0)
    info = RateLimitInfo(**{**vars(base), **values})
    return info


def _batch_from_dict(value: Any, where: str) -> BatchSettings:
    if not isinstance(value, dict):
        raise FaultPlanError(f"{where}: must be a mapping with processing_ms / fault")
    _no_unknown_keys(value, _BATCH_KEYS, where)
    processing_ms = _number(value.get("processing_ms", DEFAULT_BATCH_PROCESSING_MS), f"{where}.processing_ms")
    fault = value.get("fault")
    if fault is not None:
        if not isinstance(fault, str):
            raise FaultPlanError(f"{where}.fault: must be a string, got {fault!r}")
        try:
            fault = parse_batch_fault(fault)
        except FaultPlanError as exc:
            raise FaultPlanError(f"{where}.fault: {exc}") from None
    return BatchSettings(processing_ms=processing_ms or 0.0, fault=fault)
