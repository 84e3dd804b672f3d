"""The failure a vendor's stop, finish or block reason means in an otherwise successful (HTTP 200) answer.

Each function returns ``None`` for a normal end, else the :class:`~toolbag.providers.base.AttemptFailure`
the signal means: a refusal, a context window overflow, a cut stream (no reason at all), or an unknown
reason (server error). The reason always quotes the vendor's own words, whole: the adapter removes secrets
from it before clipping it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from toolbag.providers.base import AttemptFailure, OutcomeKind

__all__ = ["anthropic_stop_failure", "gemini_block_failure", "gemini_finish_failure", "openai_finish_failure"]

# Gemini finish reasons (google-genai 3.3.0 ``FinishReason``). STOP and MAX_TOKENS are normal ends.
_GEMINI_OK_FINISH = frozenset({"STOP", "MAX_TOKENS"})
_GEMINI_REFUSED_FINISH = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "LANGUAGE",
        "OTHER",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_OTHER",
        "IMAGE_RECITATION",
        "ESCALATION",
        "MODEL_ARMOR",
    }
)
_GEMINI_FINISH_KINDS: dict[str, OutcomeKind] = {
    "MALFORMED_FUNCTION_CALL": OutcomeKind.INVALID_OUTPUT,
    "UNEXPECTED_TOOL_CALL": OutcomeKind.INVALID_OUTPUT,
    "TOO_MANY_TOOL_CALLS": OutcomeKind.INVALID_OUTPUT,
    "NO_IMAGE": OutcomeKind.INVALID_OUTPUT,
    "MISSING_THOUGHT_SIGNATURE": OutcomeKind.BAD_REQUEST,
    "PUP_LIMITED_DISABLED": OutcomeKind.AUTH,  # the account is limited or disabled for policy violations
}


def anthropic_stop_failure(
    stop_reason: str | None, stop_details: Any, *, partial_text: str = ""
) -> AttemptFailure | None:
    """The failure an Anthropic ``stop_reason`` means, or ``None`` for a normal end."""
    if stop_reason in ("end_turn", "max_tokens", "stop_sequence", "tool_use"):
        return None
    if stop_reason == "refusal":
        category = explanation = None
        if stop_details is not None:
            category = _field(stop_details, "category")
            explanation = _field(stop_details, "explanation")
        said = ": ".join(str(part) for part in (category or "uncategorized", explanation) if part)
        return AttemptFailure(
            OutcomeKind.REFUSED, f"anthropic stop_reason refusal ({said})", partial_text=partial_text
        )
    if stop_reason == "model_context_window_exceeded":
        return AttemptFailure(
            OutcomeKind.CONTEXT_TOO_LONG,
            "anthropic stop_reason model_context_window_exceeded",
            partial_text=partial_text,
        )
    if stop_reason is None:
        return AttemptFailure(
            OutcomeKind.NETWORK,
            "anthropic message ended without a stop_reason (cut stream)",
            partial_text=partial_text,
        )
    return AttemptFailure(
        OutcomeKind.SERVER_ERROR,
        f"anthropic stop_reason {stop_reason!r} is not a finished answer",
        partial_text=partial_text,
    )


def openai_finish_failure(
    finish_reason: str | None, refusal: str | None, *, partial_text: str = "", vendor: str = "openai"
) -> AttemptFailure | None:
    """The failure an OpenAI ``finish_reason`` / ``message.refusal`` means, or ``None`` for a normal end."""
    if refusal:
        return AttemptFailure(
            OutcomeKind.REFUSED,
            f"{vendor} message.refusal (finish_reason {finish_reason}): {refusal}",
            partial_text=partial_text,
        )
    if finish_reason == "content_filter":
        return AttemptFailure(
            OutcomeKind.REFUSED, f"{vendor} finish_reason content_filter", partial_text=partial_text
        )
    if finish_reason in ("stop", "length", "tool_calls", "function_call"):
        return None
    if finish_reason is None:
        return AttemptFailure(
            OutcomeKind.NETWORK,
            f"{vendor} answer ended without a finish_reason (cut stream)",
            partial_text=partial_text,
        )
    return AttemptFailure(
        OutcomeKind.SERVER_ERROR,
        f"{vendor} finish_reason {finish_reason!r} is not a finished answer",
        partial_text=partial_text,
    )


def gemini_block_failure(
    block_reason: str | None, block_message: str | None, *, partial_text: str = ""
) -> AttemptFailure | None:
    """``promptFeedback.blockReason`` set means the prompt was refused, whatever the reason's value."""
    if not block_reason:
        return None
    said = f": {block_message}" if block_message else ""
    return AttemptFailure(
        OutcomeKind.REFUSED,
        f"gemini promptFeedback.blockReason {block_reason}{said}",
        partial_text=partial_text,
    )


def gemini_finish_failure(
    finish_reason: str | None, finish_message: str | None, *, partial_text: str = ""
) -> AttemptFailure | None:
    """The failure a Gemini candidate ``finishReason`` means, or ``None`` for STOP / MAX_TOKENS."""
    if finish_reason in _GEMINI_OK_FINISH:
        return None
    said = f": {finish_message}" if finish_message else ""
    if finish_reason is None:
        return AttemptFailure(
            OutcomeKind.NETWORK,
            "gemini answer ended without a finishReason (cut stream)",
            partial_text=partial_text,
        )
    if finish_reason in _GEMINI_REFUSED_FINISH:
        kind = OutcomeKind.REFUSED
    else:
        kind = _GEMINI_FINISH_KINDS.get(finish_reason, OutcomeKind.SERVER_ERROR)
    return AttemptFailure(
        kind, f"gemini finishReason {finish_reason}{said}", partial_text=partial_text
    )


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)
