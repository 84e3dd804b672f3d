"""The normalized vocabulary every adapter speaks.

Vendor SDK types never leave ``toolbag/providers/``: an adapter takes a :class:`ModelRequest`, calls its
vendor through the official SDK, and either returns a :class:`ModelResponse` or raises
:class:`AttemptFailure` carrying one :class:`OutcomeKind`. Everything past the adapter (store, router,
supervisor, limiter, metrics) is vendor-blind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol, runtime_checkable

from toolbag.errors import ToolbagError

# The vendors' public endpoints, used when a provider has a key and no base_url (kept here so that resolving a
# provider does not import its SDK).
ANTHROPIC_BASE_URL = "https://api.anthropic.com"
OPENAI_BASE_URL = "https://api.openai.com/v1"


class OutcomeKind(StrEnum):
    """How one attempt ended: ``OK``, or the one failure kind that routing, retries and health act on."""

    OK = "ok"
    REFUSED = "refused"
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    SERVER_ERROR = "server_error"
    NETWORK = "network"
    TIMEOUT = "timeout"
    CONTEXT_TOO_LONG = "context_too_long"
    INVALID_OUTPUT = "invalid_output"
    BAD_REQUEST = "bad_request"
    AUTH = "auth"
    QUOTA_EXHAUSTED = "quota_exhausted"
    LOST = "lost"  # the worker died mid-attempt (lease expired); decided by the supervisor


Role = Literal["user", "assistant"]


@dataclass(frozen=True)
class ToolCall:
    """A model's request to call a tool. ``id`` is the vendor's call id (synthesized for Gemini).

    ``signature`` is opaque vendor state that must be sent back unchanged with the call on the next turn
    (Gemini's base64 ``thoughtSignature``); empty for the other vendors.
    """

    id: str
    name: str
    arguments: dict[str, Any]
    signature: str = ""


@dataclass(frozen=True)
class ToolResult:
    """The result of a tool call, sent back to the model on the next turn."""

    call_id: str
    name: str
    content: str
    is_error: bool = False


@dataclass(frozen=True)
class Message:
    """One conversation turn. A user turn may carry tool results; an assistant turn may carry tool calls."""

    role: Role
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_results: tuple[ToolResult, ...] = ()


@dataclass(frozen=True)
class ToolSpec:
    """A tool offered to the model: name, description and a JSON Schema for its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolChoice:
    """Whether the model may, must or must not call a tool: ``auto``, ``required`` (any tool), ``none``, or
    ``tool`` (the one named ``name``)."""

    mode: Literal["auto", "required", "none", "tool"]
    name: str = ""


@dataclass(frozen=True)
class Timeouts:
    """Per-attempt time budget, in seconds. ``first_token_s`` bounds the wait for the first streamed byte."""

    connect_s: float = 5.0
    first_token_s: float = 30.0
    total_s: float = 120.0


@dataclass(frozen=True)
class ModelRequest:
    """A vendor-neutral request for one attempt."""

    messages: tuple[Message, ...]
    system: str = ""
    max_output_tokens: int = 1024
    json_schema: dict[str, Any] | None = None
    json_schema_name: str = "output"
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice | None = None  # None: the vendor's default (auto when tools are offered)
    timeouts: Timeouts = field(default_factory=Timeouts)
    stream: bool = False
    # Passed through as HTTP headers (used by tests to steer the simulator; never carries secrets).
    extra_headers: dict[str, str] = field(default_factory=dict)
    # Non-empty: ``system`` is a stable block worth caching at the vendor (Anthropic marks it with
    # cache_control, OpenAI gets it as prompt_cache_key, Gemini caches a repeated prefix by itself).
    cache_key: str = ""


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0  # of input_tokens: read from the vendor's prompt cache
    cache_write_tokens: int = 0  # of input_tokens: written to the vendor's prompt cache


@dataclass(frozen=True)
class ModelResponse:
    """A successful attempt. ``parsed`` is set when a JSON schema was requested."""

    text: str
    model: str
    usage: Usage
    parsed: Any = None
    tool_calls: tuple[ToolCall, ...] = ()
    stop_reason: str = ""
    request_id: str | None = None
    latency_s: float = 0.0
    time_to_first_token_s: float | None = None
    # Vendor rate-limit headers, lower-cased names (``anthropic-ratelimit-*``, ``x-ratelimit-*``).
    ratelimit_headers: dict[str, str] = field(default_factory=dict)


class AttemptFailure(ToolbagError):
    """An attempt that did not succeed, normalized. Raised by adapters; never carries an SDK type."""

    def __init__(
        self,
        kind: OutcomeKind,
        reason: str,
        *,
        retry_after_s: float | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
        latency_s: float = 0.0,
        partial_text: str = "",
        ratelimit_headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{kind.value}: {reason}")
        self.kind = kind
        self.reason = reason
        self.retry_after_s = retry_after_s
        self.status_code = status_code
        self.request_id = request_id
        self.latency_s = latency_s
        self.partial_text = partial_text
        self.ratelimit_headers = ratelimit_headers or {}


ProviderKind = Literal["anthropic", "openai", "gemini", "openai-compatible"]


class DeltaSink(Protocol):
    """Receives a streamed attempt's text pieces as they arrive (the fleet publishes them to Redis)."""

    def write(self, text: str) -> None: ...


@runtime_checkable
class ToolDeltaSink(DeltaSink, Protocol):
    """A :class:`DeltaSink` that also receives the model's tool calls as they are generated: call ``index``
    (0-based, in the answer's order) starts with its ``call_id`` and ``name``, then its ``arguments`` (JSON
    text) come in pieces (a vendor that sends a call whole sends it as one piece)."""

    def tool(self, index: int, call_id: str, name: str, arguments: str) -> None: ...


@runtime_checkable
class Adapter(Protocol):
    """One vendor, reached through its official SDK. Thread-safe: one instance serves a whole worker.

    Every adapter in this package implements it by subclassing :class:`toolbag.providers.adapter.VendorAdapter`.
    """

    kind: ProviderKind

    def call(self, model: str, request: ModelRequest) -> ModelResponse:
        """Run one attempt. Returns a response or raises :class:`AttemptFailure`; never anything else."""
        ...

    def wire_request(self, model: str, request: ModelRequest) -> dict[str, Any]:
        """The JSON-serializable SDK call arguments :meth:`call` sends for ``request`` (body fields only:
        no timeouts, no extra headers). Used by ``toolbag skills render`` and lockfile digests."""
        ...

    def close(self) -> None:
        """Release HTTP connections."""
        ...
