"""How large the gateway lets things get: a policy, its rules, a decision's reason and an audit field.

A policy is refused at load when it is larger; a text the gateway writes (a reason, an audit field) is cut
with :func:`clip`. The numbers are documented in ``docs/tools.md``.
"""

from __future__ import annotations

__all__ = [
    "AUDIT_FIELD_MAX_CHARS",
    "GLOB_MAX_CHARS",
    "ONE_OF_MAX_VALUES",
    "PATTERNS_MAX_PER_RULE",
    "POLICY_MAX_BYTES",
    "REASON_MAX_CHARS",
    "RULES_MAX",
    "RULE_ARGS_MAX",
    "TEXT_MAX_CHARS",
    "TRACE_MAX_CHARS",
    "clip",
]

POLICY_MAX_BYTES = 64 * 1024
RULES_MAX = 200
PATTERNS_MAX_PER_RULE = 64  # agents, models and tools, each
GLOB_MAX_CHARS = 256
RULE_ARGS_MAX = 32
ONE_OF_MAX_VALUES = 256
TEXT_MAX_CHARS = 1000  # any text in a policy: a pattern, a prefix, a one_of string, a reason, the description

REASON_MAX_CHARS = 2000  # a decision's reason
TRACE_MAX_CHARS = 1000  # how one rule related to one call (``permissions explain``)
AUDIT_FIELD_MAX_CHARS = 4096

_MARKER_MAX_CHARS = 40


def clip(text: str, limit: int) -> str:
    """``text`` when it fits in ``limit`` characters, else its start and how much was cut."""
    if len(text) <= limit:
        return text
    kept = max(0, limit - _MARKER_MAX_CHARS)
    return text[:kept] + f"... [{len(text) - kept} more characters]"
