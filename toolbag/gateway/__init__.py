"""The tool gateway: the one controlled door every tool call goes through.

- :mod:`~toolbag.gateway.policy` — ``policy.yaml``: grants and denials, default deny, deny wins;
- :mod:`~toolbag.gateway.live` — the policy published to Redis with a version; revocation on the next call;
- :mod:`~toolbag.gateway.registry` — local Python tools and MCP servers (stdio, streamable HTTP);
- :mod:`~toolbag.gateway.audit` — every offer, decision and call, to the Redis stream and a JSONL file;
- :mod:`~toolbag.gateway.gateway` — offer, then check → audit → call → audit;
- :mod:`~toolbag.gateway.loop` — the worker's tool-use loop (a ``toolbag.attempt.context.Caller``);
- :mod:`~toolbag.gateway.cli` — ``toolbag permissions``, ``toolbag audit``, ``toolbag tools``;
- :mod:`~toolbag.gateway.patterns` — the glob rule every name pattern follows;
- :mod:`~toolbag.gateway.paths` — paths as a ``prefix:`` argument constraint reads them;
- :mod:`~toolbag.gateway.limits` — how large a policy, a decision's reason and an audit field may be;
- :mod:`~toolbag.gateway.files` — finding, reading and reporting on ``policy.yaml`` and ``tools.yaml``.
"""

from toolbag.gateway.audit import AuditError, AuditFilter, AuditRecord
from toolbag.gateway.build import build_gateway, worker_caller
from toolbag.gateway.gateway import Gateway, Offer
from toolbag.gateway.live import LivePolicy, PolicyStore, PublishResult
from toolbag.gateway.local import LocalTool, tool
from toolbag.gateway.loop import ToolLoop
from toolbag.gateway.policy import Decision, Policy, PolicyError, Subject, load_policy_file, parse_policy
from toolbag.gateway.registry import ToolInfo, ToolRegistry
from toolbag.gateway.settings import GatewaySettings, load_gateway_settings

__all__ = [
    "AuditError",
    "AuditFilter",
    "AuditRecord",
    "Decision",
    "Gateway",
    "GatewaySettings",
    "LivePolicy",
    "LocalTool",
    "Offer",
    "Policy",
    "PolicyError",
    "PolicyStore",
    "PublishResult",
    "Subject",
    "ToolInfo",
    "ToolLoop",
    "ToolRegistry",
    "build_gateway",
    "load_gateway_settings",
    "load_policy_file",
    "parse_policy",
    "tool",
    "worker_caller",
]
