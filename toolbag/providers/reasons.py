"""How a failure's reason is worded: one line, clipped, with no secret in it."""

from __future__ import annotations

from collections.abc import Iterable

from toolbag.providers.base import AttemptFailure

__all__ = ["MAX_REASON_CHARS", "clip_reason", "redact_failure", "redacted"]

MAX_REASON_CHARS = 500


def clip_reason(text: str) -> str:
    """``text`` on one line, cut to :data:`MAX_REASON_CHARS`."""
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


def redacted(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every non-trivial secret replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def redact_failure(failure: AttemptFailure, secrets: Iterable[str]) -> AttemptFailure:
    """``failure`` with every secret removed from its reason (and its message)."""
    reason = redacted(failure.reason, secrets)
    if reason != failure.reason:
        failure.reason = reason
        failure.args = (f"{failure.kind.value}: {reason}",)
    return failure
