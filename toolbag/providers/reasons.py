"""How a failure's reason is worded: no secret in it, one line, clipped; and the context note a
context-length failure leads with, so routing can read the vendor's numbers without reading vendor words."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from toolbag.providers.base import AttemptFailure

__all__ = ["MAX_REASON_CHARS", "ContextReport", "clip_reason", "redact_failure", "redacted"]

MAX_REASON_CHARS = 500
MAX_TOKENS_REPORTED = 10**12  # more than any model's window: a bigger number is not a token count
_NOTE = re.compile(r"\[context: request (\d{1,13}|\?) tokens, limit (\d{1,13}|\?) tokens\]")


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
    """``failure`` fit to keep: every secret removed from its whole reason and partial text, and only then the
    reason put on one line and clipped (clipping first could cut a secret in two and keep half of it)."""
    secrets = tuple(secrets)
    failure.reason = clip_reason(redacted(failure.reason, secrets))
    failure.partial_text = redacted(failure.partial_text, secrets)
    failure.args = (f"{failure.kind.value}: {failure.reason}",)
    return failure


@dataclass(frozen=True)
class ContextReport:
    """What a vendor said when a request was too long for a model: the tokens the request needs and the
    model's limit, each None when the vendor did not say."""

    requested_tokens: int | None = None
    limit_tokens: int | None = None

    @property
    def said_anything(self) -> bool:
        return self.requested_tokens is not None or self.limit_tokens is not None

    def note(self) -> str:
        """The note a context-length reason starts with (:meth:`read` reads it back)."""

        def said(tokens: int | None) -> str:
            return "?" if tokens is None else str(tokens)

        return f"[context: request {said(self.requested_tokens)} tokens, limit {said(self.limit_tokens)} tokens]"

    @classmethod
    def read(cls, reason: str) -> ContextReport:
        """The numbers of the note ``reason`` starts with; nothing known when it starts with none."""
        found = _NOTE.match(reason, 0, 80)
        if found is None:
            return cls()
        requested, limit = (None if g == "?" else int(g) for g in found.groups())
        return cls(requested, limit)

    @classmethod
    def of(cls, requested_tokens: int | None, limit_tokens: int | None) -> ContextReport:
        """A report of plausible numbers only: a count that is zero or beyond any window is dropped."""

        def plausible(tokens: int | None) -> int | None:
            return tokens if tokens is not None and 0 < tokens < MAX_TOKENS_REPORTED else None

        return cls(plausible(requested_tokens), plausible(limit_tokens))
