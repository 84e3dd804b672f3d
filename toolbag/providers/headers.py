"""What the adapters read from a vendor's HTTP response headers: rate-limit state and when to retry."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

__all__ = ["RATELIMIT_PREFIXES", "parse_retry_after", "ratelimit_headers"]

RATELIMIT_PREFIXES = ("anthropic-ratelimit-", "x-ratelimit-")


def ratelimit_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The vendor rate-limit headers (``anthropic-ratelimit-*``, ``x-ratelimit-*``), names lower-cased."""
    if not headers:
        return {}
    return {lower: value for name, value in headers.items() if (lower := name.lower()).startswith(RATELIMIT_PREFIXES)}


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date); ``None`` if
    absent or unreadable."""
    if not headers:
        return None
    lowered = {name.lower(): value for name, value in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        try:
            value_ms = float(raw_ms)
        except ValueError:
            value_ms = -1.0
        if value_ms >= 0:
            return value_ms / 1000.0
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    try:
        value_s = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())
    return value_s if value_s >= 0 else None
