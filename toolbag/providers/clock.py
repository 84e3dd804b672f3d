"""The clock of one attempt: HTTP timeouts from the per-attempt budget, and the checks a stream runs.

Budget semantics (``Timeouts``), the same for every vendor:

- ``connect_s`` bounds opening the connection (and waiting for a pooled one).
- Non-streaming: the answer arrives all at once, so "first token" is not observable; the whole call is
  bounded by ``total_s`` (the socket read timeout).
- Streaming: the socket read timeout is ``min(first_token_s, total_s)``, which bounds both the wait for
  the response and every idle gap between chunks (a stalled stream). While iterating, the stream is also
  checked against ``first_token_s`` for the first content (keep-alive pings do not count) and against
  ``total_s`` overall; the adapter closes the stream when either is exceeded.
"""

from __future__ import annotations

import time

import httpx2

from toolbag.providers.base import AttemptFailure, OutcomeKind, Timeouts

__all__ = ["AttemptClock", "http_limits"]


def http_limits(concurrency: int) -> httpx2.Limits:
    """A connection pool for ``concurrency`` threads calling at once: every one keeps its connection."""
    return httpx2.Limits(
        max_connections=concurrency + max(8, concurrency // 10),
        max_keepalive_connections=concurrency,
        keepalive_expiry=30.0,
    )


class AttemptClock:
    """Started when the attempt starts; one per call (not shared between threads)."""

    def __init__(self, timeouts: Timeouts, *, vendor: str) -> None:
        self.timeouts = timeouts
        self.vendor = vendor
        self.started = time.monotonic()
        self.first_token_at: float | None = None

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def time_to_first_token_s(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.started

    def read_timeout_s(self, stream: bool) -> float:
        t = self.timeouts
        return min(t.first_token_s, t.total_s) if stream else t.total_s

    def http_timeout(self, stream: bool) -> httpx2.Timeout:
        """The ``timeout=`` for the SDK call."""
        t = self.timeouts
        return httpx2.Timeout(
            self.read_timeout_s(stream),
            connect=min(t.connect_s, t.total_s),
            write=t.total_s,
            pool=min(t.connect_s, t.total_s),
        )

    def mark_token(self) -> None:
        """Record that content (text, tool-call arguments, a refusal) has arrived."""
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()

    def check(self, partial_text: str) -> None:
        """Raise ``AttemptFailure(TIMEOUT)`` if the first token or the whole attempt is overdue."""
        elapsed = self.elapsed_s()
        if elapsed > self.timeouts.total_s:
            raise AttemptFailure(
                OutcomeKind.TIMEOUT,
                f"{self.vendor} stream exceeded the total budget of {self.timeouts.total_s:g} s",
                latency_s=elapsed,
                partial_text=partial_text,
            )
        if self.first_token_at is None and elapsed > self.timeouts.first_token_s:
            raise AttemptFailure(
                OutcomeKind.TIMEOUT,
                f"{self.vendor} sent no first token within {self.timeouts.first_token_s:g} s",
                latency_s=elapsed,
                partial_text=partial_text,
            )
