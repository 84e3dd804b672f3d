"""The one door every tool call goes through: offer (which tools a model may see), then for each call
check → audit → call with a timeout → audit → result.

A call is allowed only if the tool was offered to this attempt *and* the live policy, read again for this
call, grants it with these arguments. Everything is audited before it takes effect; when the audit cannot be
written, :class:`AuditError` propagates and the call does not happen.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from toolbag.gateway.audit import AuditRecord, AuditSink, args_digest, new_decision_id
from toolbag.gateway.live import LivePolicy
from toolbag.gateway.patterns import matching
from toolbag.gateway.policy import Decision, PolicyError, Subject
from toolbag.gateway.registry import ToolInfo, ToolRegistry
from toolbag.gateway.settings import LoopSettings
from toolbag.gateway.wire_names import sanitize, wire_names
from toolbag.providers.base import ToolCall, ToolResult, ToolSpec
from toolbag.telemetry import metrics

__all__ = ["OFFER_POLICY_MAX_AGE_S", "Gateway", "Offer"]

# Offering may use a policy copy this old; every call is checked against the live digest.
OFFER_POLICY_MAX_AGE_S = 1.0


@dataclass(frozen=True)
class Offer:
    """The tools offered to one attempt, and the vendor (wire) name of each."""

    tools: tuple[ToolInfo, ...] = ()
    to_wire: dict[str, str] = field(default_factory=dict)  # gateway name -> wire name
    withheld: tuple[str, ...] = ()

    @property
    def from_wire(self) -> dict[str, str]:
        return {wire: name for name, wire in self.to_wire.items()}

    @property
    def specs(self) -> tuple[ToolSpec, ...]:
        return tuple(ToolSpec(self.to_wire[t.name], t.description, t.parameters) for t in self.tools)


def _record(subject: Subject, event: str, **fields: Any) -> AuditRecord:
    return AuditRecord(kind="tool", event=event, job_id=subject.job_id, agent=subject.agent,
                       provider=subject.provider, model=subject.model, model_id=subject.model_id, **fields)


class Gateway:
    """Thread-safe; one per process."""

    def __init__(self, registry: ToolRegistry, policy: LivePolicy, audit: AuditSink, loop: LoopSettings) -> None:
        self.registry = registry
        self.policy = policy
        self.audit = audit
        self.loop = loop

    # -------------------------------------------------------------------------------------- offer

    def wants(self, subject: Subject) -> bool:
        """Could anything be offered to ``subject``? (a cheap check on a recent policy copy)"""
        try:
            return self.policy.current(OFFER_POLICY_MAX_AGE_S).grants_any(subject)
        except PolicyError:
            return False

    def offer(self, subject: Subject, requested: Sequence[str]) -> Offer:
        """The requested tools (names or globs) that exist and the policy lets ``subject`` see. Audited
        (one ``offer`` record) whenever something was requested; raises ``AuditError`` if it cannot be."""
        if not requested:
            return Offer()
        catalog = self.registry.catalog()
        matched = matching(catalog, requested)
        reason = ""
        try:
            policy = self.policy.current(OFFER_POLICY_MAX_AGE_S)
            granted = [n for n in matched if policy.decide(subject, n, None).allowed]
            version, digest = policy.version, policy.digest
        except PolicyError as err:
            granted, version, digest, reason = [], 0, "", f"policy unavailable: {err}"
        withheld = [n for n in matched if n not in granted]
        unknown = [p for p in requested if not matching(catalog, [p])]
        detail = {"requested": list(requested), "offered": granted, "withheld": withheld, "unknown": unknown}
        self.audit.write(_record(
            subject, "offer", id=new_decision_id(), tool=",".join(granted),
            decision="allow" if granted else "deny", reason=reason, policy_version=version,
            policy_digest=digest, detail=json.dumps(detail, separators=(",", ":")),
        ))
        tools = tuple(catalog[n] for n in granted)
        return Offer(tools=tools, to_wire=wire_names(granted), withheld=tuple(withheld))

    # --------------------------------------------------------------------------------------- call

    def _resolve(self, wire_name: str, offer: Offer) -> str:
        """The gateway name a model meant: the offered tool, else a catalog tool by name or by wire form."""
        offered = offer.from_wire.get(wire_name)
        if offered is not None:
            return offered
        catalog = self.registry.catalog()
        if wire_name in catalog:
            return wire_name
        for name in catalog:
            if sanitize(name) == wire_name:
                return name
        return wire_name

    def _decide(self, subject: Subject, name: str, args: dict[str, object], offer: Offer) -> Decision:
        try:
            policy = self.policy.current()
        except PolicyError as err:
            return Decision(False, "", f"policy unavailable (fail closed): {err}", 0, "")
        if name not in offer.to_wire:
            return Decision(False, "", f"tool {name!r} was not offered to this attempt", policy.version,
                            policy.digest)
        return policy.decide(subject, name, args)

    def execute(self, subject: Subject, offer: Offer, call: ToolCall, *, step: int, timeout_s: float) -> ToolResult:
        """Check, audit, run and audit one tool call; the result to send back to the model."""
        name = self._resolve(call.name, offer)
        args = call.arguments if isinstance(call.arguments, dict) else {}
        decision = self._decide(subject, name, args, offer)
        decision_id = new_decision_id()
        digest = args_digest(args)
        arg_names = ",".join(sorted(str(k) for k in args))
        common = dict(id=decision_id, tool=name, args_digest=digest, arg_names=arg_names, decision=decision.word,
                      grant=decision.rule_id, policy_version=decision.policy_version,
                      policy_digest=decision.policy_digest, step=step)
        self.audit.write(_record(subject, "decision", reason=decision.reason,
                                 outcome="" if decision.allowed else "denied", **common))
        label = name if name in offer.to_wire or name in self.registry.catalog() else "unknown"
        metrics.TOOL_CALLS.labels(label, decision.word).inc()
        if not decision.allowed:
            text = f"permission denied: {subject.agent!r} may not call {name!r} ({decision.reason})"
            return ToolResult(call.id, call.name, text, is_error=True)
        started = time.monotonic()
        output = self.registry.call(name, args, timeout_s)
        duration_ms = round((time.monotonic() - started) * 1000, 3)
        self.audit.write(_record(subject, "call", duration_ms=duration_ms, outcome=output.outcome,
                                 reason="" if output.outcome == "ok" else output.text[:300], **common))
        text = output.text
        limit = self.loop.max_result_chars
        if len(text) > limit:
            text = text[:limit] + f"\n[truncated: {len(output.text) - limit} more characters]"
        return ToolResult(call.id, call.name, text, is_error=output.is_error)

    def close(self) -> None:
        self.registry.close()
