"""The vendors' batch APIs behind one typed interface: submit items under custom ids, poll, read outcomes.

One implementation per vendor over its official SDK (Anthropic Message Batches, OpenAI Files + Batches on
``/v1/chat/completions``, Gemini inline batches). Item bodies are built by the vendor's real-time adapter
(:meth:`~toolbag.providers.adapter.VendorAdapter.wire_request`), and each result becomes a
:class:`BatchOutcome` in the real-time taxonomy: a :class:`~toolbag.providers.base.ModelResponse`, or an
:class:`~toolbag.providers.base.AttemptFailure` whose kind says refused, rate limited, bad request …; items the
vendor never ran end as ``expired`` or ``canceled``. A vendor error on a batch call itself raises the
:class:`AttemptFailure` the real-time path would. Every failure is kept as the real-time path keeps it: the
credential removed from the whole vendor message first, then the reason put on one line and clipped.
"""

from __future__ import annotations

import io
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from google import genai
from google.genai import types

from toolbag.config import Config, ConfigError
from toolbag.errors import ToolbagError
from toolbag.providers.adapter import VendorAdapter
from toolbag.providers.anthropic_provider import AnthropicAdapter
from toolbag.providers.base import AttemptFailure, ModelRequest, ModelResponse, OutcomeKind, ToolCall, Usage
from toolbag.providers.errors import classify, outcome_kind_for
from toolbag.providers.gemini_provider import API_VERSION, GeminiAdapter
from toolbag.providers.openai_provider import OpenAIAdapter
from toolbag.providers.reasons import redact_failure
from toolbag.providers.stop_reasons import (
    anthropic_stop_failure,
    gemini_block_failure,
    gemini_finish_failure,
    openai_finish_failure,
)

__all__ = [
    "AnthropicBatches",
    "BatchEnding",
    "BatchInputError",
    "BatchItem",
    "BatchOutcome",
    "BatchStatus",
    "GeminiBatches",
    "ItemEnd",
    "OpenAIBatches",
    "VendorBatches",
    "vendor_batches",
]

SDK_TIMEOUT_S = 60.0

W = TypeVar("W", bound=VendorAdapter[Any])


class BatchInputError(ToolbagError):
    """Items that cannot form a batch (none, or a custom id used twice)."""


class BatchEnding(StrEnum):
    """How a vendor batch ended."""

    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    FAILED = "failed"  # the vendor rejected the batch as a whole (e.g. its input did not validate)


class ItemEnd(StrEnum):
    """How one item ended: answered, failed (refusals included), or never run."""

    OK = "ok"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELED = "canceled"


@dataclass(frozen=True)
class BatchItem:
    """One request of a batch, under the caller's id (letters, digits, ``_`` and ``-``; at most 64)."""

    custom_id: str
    request: ModelRequest


@dataclass(frozen=True)
class BatchStatus:
    """A poll's answer: ``ending`` is None while the batch runs."""

    batch_id: str
    ending: BatchEnding | None
    total: int = 0

    @property
    def done(self) -> bool:
        return self.ending is not None


@dataclass(frozen=True)
class BatchOutcome:
    """One item's result: ``response`` when OK, ``failure`` when FAILED, neither when never run."""

    custom_id: str
    end: ItemEnd
    response: ModelResponse | None = None
    failure: AttemptFailure | None = None


class VendorBatches(ABC, Generic[W]):
    """One vendor's batch API, on the vendor's real-time adapter ``wire``: the one it is given (a worker's,
    whose SDK client and key it shares; the owner closes it), or one of its own, closed by :meth:`close`."""

    vendor: str

    def __init__(self, wire: W, *, owned: bool) -> None:
        self._wire = wire
        self._owned = owned
        self._secrets = wire._secrets  # what a failure's reason must never show

    @abstractmethod
    def submit(self, model: str, items: Sequence[BatchItem], *, extra_headers: Mapping[str, str] | None = None,
               ) -> str:
        """Create a batch of ``items`` for ``model``; its vendor id."""

    @abstractmethod
    def status(self, batch_id: str) -> BatchStatus:
        """Poll the batch once."""

    def results(self, batch_id: str) -> Iterator[BatchOutcome]:
        """Every item's outcome, once the batch has ended (as the vendor streams them; any order); a failure's
        reason with no secret in it, on one line, clipped."""
        for outcome in self._outcomes(batch_id):
            if outcome.failure is not None:
                redact_failure(outcome.failure, self._secrets)
            yield outcome

    @abstractmethod
    def _outcomes(self, batch_id: str) -> Iterator[BatchOutcome]:
        """Every item's outcome as the vendor said it."""

    @abstractmethod
    def cancel(self, batch_id: str) -> None:
        """Ask the vendor to cancel the batch (items already answered keep their answers)."""

    def close(self) -> None:
        """Release the SDK clients this object made."""
        if self._owned:
            self._wire.close()

    def _call(self, action: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one SDK call; a vendor error raises the real-time path's :class:`AttemptFailure`."""
        try:
            return action(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every SDK error is classified, as in real time
            raise redact_failure(classify(exc, vendor=self.vendor), self._secrets) from exc


def vendor_batches(provider: str, config: Config, environ: Mapping[str, str] | None = None,
                   ) -> VendorBatches[Any]:
    """The batch interface of provider ``provider``, on the adapter :func:`~toolbag.providers.registry.build_adapter`
    makes for it (the same key, base URL and SDK client; :class:`ConfigError` as for a worker). Vendor batches
    exist for the ``anthropic``, ``openai`` and ``gemini`` kinds only."""
    from toolbag.providers.registry import build_adapter

    adapter = build_adapter(provider, config, environ, max_connections=4)
    if isinstance(adapter, AnthropicAdapter):
        return AnthropicBatches(adapter=adapter)
    if isinstance(adapter, GeminiAdapter):
        return GeminiBatches(adapter=adapter)
    if isinstance(adapter, OpenAIAdapter) and adapter.kind == "openai":
        return OpenAIBatches(adapter=adapter)
    adapter.close()
    raise ConfigError(f"provider {provider!r}: kind {config.providers[provider].kind} has no vendor batch API "
                      "(set features.batch: false on its models)")


def _check(items: Sequence[BatchItem]) -> None:
    if not items:
        raise BatchInputError("items: a batch needs at least one item")
    seen: set[str] = set()
    for item in items:
        if item.custom_id in seen:
            raise BatchInputError(f"items: custom_id {item.custom_id!r} is used twice")
        seen.add(item.custom_id)


def _failed(custom_id: str, kind: OutcomeKind, reason: str) -> BatchOutcome:
    return BatchOutcome(custom_id, ItemEnd.FAILED, failure=AttemptFailure(kind, reason))


def _stopped(custom_id: str, failure: AttemptFailure | None, response: ModelResponse) -> BatchOutcome:
    if failure is not None:
        return BatchOutcome(custom_id, ItemEnd.FAILED, failure=failure)
    return BatchOutcome(custom_id, ItemEnd.OK, response=response)


# ---------------------------------------------------------------------------------------------- Anthropic


class AnthropicBatches(VendorBatches[AnthropicAdapter]):
    """Anthropic Message Batches."""

    vendor = "anthropic"

    def __init__(self, *, api_key: str = "", base_url: str = "", adapter: AnthropicAdapter | None = None) -> None:
        super().__init__(adapter or AnthropicAdapter(api_key=api_key, base_url=base_url, max_connections=2),
                         owned=adapter is None)
        # the adapter's SDK client (its key, base URL and connection pool), with the batch calls' timeout
        self._client = self._wire._client.with_options(timeout=SDK_TIMEOUT_S)

    def submit(self, model: str, items: Sequence[BatchItem], *, extra_headers: Mapping[str, str] | None = None,
               ) -> str:
        _check(items)
        requests: list[Any] = [{"custom_id": item.custom_id,
                                "params": {k: v for k, v in self._wire.wire_request(model, item.request).items()
                                           if k != "stream"}} for item in items]
        batch = self._call(self._client.messages.batches.create, requests=requests,
                           extra_headers=dict(extra_headers or {}))
        return str(batch.id)

    def status(self, batch_id: str) -> BatchStatus:
        batch = self._call(self._client.messages.batches.retrieve, batch_id)
        counts = batch.request_counts
        total = counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired
        if batch.processing_status != "ended":
            return BatchStatus(batch.id, None, total)
        # A batch ends "cancelled" when a cancel was asked for; "expired" when items expired; else completed.
        if batch.cancel_initiated_at is not None:
            ending = BatchEnding.CANCELLED
        elif counts.expired:
            ending = BatchEnding.EXPIRED
        else:
            ending = BatchEnding.COMPLETED
        return BatchStatus(batch.id, ending, total)

    def _outcomes(self, batch_id: str) -> Iterator[BatchOutcome]:
        for line in self._call(self._client.messages.batches.results, batch_id):
            yield self._outcome(line.custom_id, line.result)

    def cancel(self, batch_id: str) -> None:
        self._call(self._client.messages.batches.cancel, batch_id)

    @staticmethod
    def _outcome(custom_id: str, result: Any) -> BatchOutcome:
        if result.type == "canceled":
            return BatchOutcome(custom_id, ItemEnd.CANCELED)
        if result.type == "expired":
            return BatchOutcome(custom_id, ItemEnd.EXPIRED)
        if result.type == "errored":
            error = result.error.error
            kind = outcome_kind_for(None, error.type, None, error.message)
            return _failed(custom_id, kind, f"anthropic batch item {error.type}: {error.message}")
        message = result.message
        text = "".join(block.text for block in message.content if block.type == "text")
        calls = tuple(ToolCall(block.id, block.name, dict(block.input))
                      for block in message.content if block.type == "tool_use")
        usage = message.usage
        cache_read = usage.cache_read_input_tokens or 0
        cache_write = usage.cache_creation_input_tokens or 0
        response = ModelResponse(
            text=text, model=message.model, tool_calls=calls, stop_reason=str(message.stop_reason or ""),
            usage=Usage(input_tokens=usage.input_tokens + cache_read + cache_write,
                        output_tokens=usage.output_tokens, cached_input_tokens=cache_read,
                        cache_write_tokens=cache_write),
            request_id=message.id,
        )
        return _stopped(custom_id, anthropic_stop_failure(message.stop_reason, message.stop_details,
                                                          partial_text=text), response)


# ---------------------------------------------------------------------------------------------- OpenAI


class OpenAIBatches(VendorBatches[OpenAIAdapter]):
    """OpenAI Files + Batches on ``/v1/chat/completions``."""

    vendor = "openai"
    ENDPOINT = "/v1/chat/completions"
    _ENDINGS = {"completed": BatchEnding.COMPLETED, "expired": BatchEnding.EXPIRED,
                "cancelled": BatchEnding.CANCELLED, "failed": BatchEnding.FAILED}
    _NEVER_RUN = {"batch_expired": ItemEnd.EXPIRED, "batch_cancelled": ItemEnd.CANCELED}

    def __init__(self, *, api_key: str = "", base_url: str = "", adapter: OpenAIAdapter | None = None) -> None:
        super().__init__(adapter or OpenAIAdapter(api_key=api_key, base_url=base_url, max_connections=2),
                         owned=adapter is None)
        self._client = self._wire._client.with_options(timeout=SDK_TIMEOUT_S)

    def submit(self, model: str, items: Sequence[BatchItem], *, extra_headers: Mapping[str, str] | None = None,
               ) -> str:
        _check(items)
        lines = b"".join(json.dumps({"custom_id": item.custom_id, "method": "POST", "url": self.ENDPOINT,
                                     "body": {k: v for k, v in self._wire.wire_request(model, item.request).items()
                                              if k not in ("stream", "stream_options")}}).encode() + b"\n"
                         for item in items)
        uploaded = self._call(self._client.files.create, file=("batch.jsonl", io.BytesIO(lines)), purpose="batch")
        batch = self._call(self._client.batches.create, input_file_id=uploaded.id, endpoint=self.ENDPOINT,
                           completion_window="24h", extra_headers=dict(extra_headers or {}))
        return str(batch.id)

    def status(self, batch_id: str) -> BatchStatus:
        batch = self._call(self._client.batches.retrieve, batch_id)
        total = batch.request_counts.total if batch.request_counts is not None else 0
        return BatchStatus(batch.id, self._ENDINGS.get(batch.status), total)

    def _outcomes(self, batch_id: str) -> Iterator[BatchOutcome]:
        batch = self._call(self._client.batches.retrieve, batch_id)
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id is None:
                continue
            content = self._call(self._client.files.content, file_id)
            for raw in content.text.splitlines():
                if raw.strip():
                    yield self._outcome(json.loads(raw))

    def cancel(self, batch_id: str) -> None:
        self._call(self._client.batches.cancel, batch_id)

    def _outcome(self, line: dict[str, Any]) -> BatchOutcome:
        custom_id = str(line.get("custom_id"))
        error = line.get("error")
        if isinstance(error, dict):
            code = str(error.get("code"))
            if code in self._NEVER_RUN:
                return BatchOutcome(custom_id, self._NEVER_RUN[code])
            return _failed(custom_id, OutcomeKind.SERVER_ERROR, f"openai batch item {code}: {error.get('message')}")
        answer = line.get("response") or {}
        status = int(answer.get("status_code") or 0)
        body = answer.get("body") or {}
        if status != 200:
            fields = body.get("error") or {}
            message = str(fields.get("message", ""))
            kind = outcome_kind_for(status, fields.get("type"), fields.get("code"), message)
            return _failed(custom_id, kind, f"openai batch item {status} {fields.get('code')}: {message}")
        choice = (body.get("choices") or [{}])[0]
        message_out = choice.get("message") or {}
        text = message_out.get("content") or ""
        calls = tuple(ToolCall(str(c["id"]), str(c["function"]["name"]),
                               json.loads(c["function"].get("arguments") or "{}"))
                      for c in message_out.get("tool_calls") or [])
        usage = body.get("usage") or {}
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        response = ModelResponse(
            text=text, model=str(body.get("model", "")), tool_calls=calls,
            stop_reason=str(choice.get("finish_reason") or ""),
            usage=Usage(input_tokens=usage.get("prompt_tokens", 0), output_tokens=usage.get("completion_tokens", 0),
                        cached_input_tokens=cached),
            request_id=answer.get("request_id"),
        )
        failure = openai_finish_failure(choice.get("finish_reason"), message_out.get("refusal"), partial_text=text)
        return _stopped(custom_id, failure, response)


# ---------------------------------------------------------------------------------------------- Gemini


class GeminiBatches(VendorBatches[GeminiAdapter]):
    """Gemini batch mode with inline requests (each item's custom id travels in its ``metadata.key``)."""

    vendor = "gemini"
    _ENDINGS = {types.JobState.JOB_STATE_SUCCEEDED: BatchEnding.COMPLETED,
                types.JobState.JOB_STATE_PARTIALLY_SUCCEEDED: BatchEnding.COMPLETED,
                types.JobState.JOB_STATE_EXPIRED: BatchEnding.EXPIRED,
                types.JobState.JOB_STATE_CANCELLED: BatchEnding.CANCELLED,
                types.JobState.JOB_STATE_FAILED: BatchEnding.FAILED}
    # Options of the real-time SDK call that are not part of a batch request.
    _SDK_ONLY = ("automatic_continuation", "automatic_function_calling")

    def __init__(self, *, api_key: str = "", base_url: str | None = None, adapter: GeminiAdapter | None = None,
                 ) -> None:
        super().__init__(adapter or GeminiAdapter(api_key=api_key, base_url=base_url, max_connections=2),
                         owned=adapter is None)
        # a client of its own (the adapter's has no timeout of its own: each real-time call sets one)
        self._client = genai.Client(api_key=self._wire._secrets[0], http_options=types.HttpOptions(
            base_url=self._wire.base_url, api_version=API_VERSION, timeout=int(SDK_TIMEOUT_S * 1000)))

    def close(self) -> None:
        super().close()
        self._client.close()

    def submit(self, model: str, items: Sequence[BatchItem], *, extra_headers: Mapping[str, str] | None = None,
               ) -> str:
        _check(items)
        src: list[Any] = []
        for item in items:
            wire = self._wire.wire_request(model, item.request)
            item_config = {k: v for k, v in wire["config"].items() if k not in self._SDK_ONLY}
            src.append({"contents": wire["contents"], "config": item_config, "metadata": {"key": item.custom_id}})
        config: dict[str, Any] = {}
        if extra_headers:
            config["http_options"] = {"headers": dict(extra_headers)}
        job = self._call(self._client.batches.create, model=model, src=src, config=config)
        return str(job.name)

    def status(self, batch_id: str) -> BatchStatus:
        job = self._call(self._client.batches.get, name=batch_id)
        ending = self._ENDINGS.get(job.state) if job.state is not None else None
        return BatchStatus(batch_id, ending)

    def _outcomes(self, batch_id: str) -> Iterator[BatchOutcome]:
        job = self._call(self._client.batches.get, name=batch_id)
        never_run = ItemEnd.EXPIRED if job.state == types.JobState.JOB_STATE_EXPIRED else ItemEnd.CANCELED
        for index, inlined in enumerate((job.dest.inlined_responses if job.dest is not None else None) or []):
            key = (inlined.metadata or {}).get("key")
            custom_id = str(key) if key is not None else str(index)
            if inlined.error is not None:
                if job.state in (types.JobState.JOB_STATE_EXPIRED, types.JobState.JOB_STATE_CANCELLED):
                    yield BatchOutcome(custom_id, never_run)
                    continue
                code = inlined.error.code
                message = inlined.error.message or ""
                kind = outcome_kind_for(code, None, None, message)
                yield _failed(custom_id, kind, f"gemini batch item {code}: {message}")
            elif inlined.response is not None:
                yield self._answer(custom_id, inlined.response)

    def cancel(self, batch_id: str) -> None:
        self._call(self._client.batches.cancel, name=batch_id)

    @staticmethod
    def _answer(custom_id: str, response: types.GenerateContentResponse) -> BatchOutcome:
        meta = response.usage_metadata
        usage = Usage() if meta is None else Usage(
            input_tokens=meta.prompt_token_count or 0,
            output_tokens=(meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0),
            cached_input_tokens=meta.cached_content_token_count or 0)
        feedback = response.prompt_feedback
        if feedback is not None and feedback.block_reason is not None:
            failure = gemini_block_failure(str(feedback.block_reason.value), feedback.block_reason_message)
            if failure is not None:
                return BatchOutcome(custom_id, ItemEnd.FAILED, failure=failure)
        candidate = response.candidates[0] if response.candidates else None
        parts = candidate.content.parts if candidate is not None and candidate.content is not None else None
        text = "".join(part.text for part in parts or [] if part.text and not part.thought)
        calls = tuple(ToolCall(part.function_call.id or f"call_{n}", part.function_call.name or "",
                               dict(part.function_call.args or {}))
                      for n, part in enumerate(parts or []) if part.function_call is not None)
        finish = candidate.finish_reason if candidate is not None else None
        finish_name = str(finish.value) if finish is not None else None
        answer = ModelResponse(text=text, model=response.model_version or "", usage=usage, tool_calls=calls,
                               stop_reason=finish_name or "", request_id=response.response_id)
        failure = gemini_finish_failure(finish_name, candidate.finish_message if candidate is not None else None,
                                        partial_text=text)
        return _stopped(custom_id, failure, answer)
