"""The one door every tool call goes through: offer (which tools a model may see), then for each call
check → audit → call with a timeout → audit → result.

A call is allowed only if the tool was offered to this attempt *and* the live policy, read again for this
call, grants it with these arguments. Everything is audited before it takes effect; when the audit cannot be
written, :class:`AuditError` propagates and the call does not happen.

:meth:`Gateway.offer` and :meth:`Gateway.execute` are for threads; :meth:`Gateway.aoffer` and
:meth:`Gateway.aexecute` do the same on an event loop (a worker's attempt loop): the tool call and the MCP
listing are awaited, and the policy read and audit writes (short sync Redis calls, an fsync with a JSONL
file) run on a small executor (:meth:`Gateway.blocking`), so a slow Redis never stalls the loop.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from toolbag.gateway.audit import AuditRecord, AuditSink, args_digest, new_decision_id
from toolbag.gateway.live import LivePolicy
from toolbag.gateway.patterns import matching
from toolbag.gateway.policy import Decision, PolicyError, Subject
from toolbag.gateway.registry import ToolInfo, ToolOutput, ToolRegistry
from toolbag.gateway.settings import LoopSettings
from toolbag.gateway.wire_names import sanitize, wire_names
from toolbag.providers.base import ToolCall, ToolResult, ToolSpec
from toolbag.telemetry import metrics

__all__ = ["OFFER_POLICY_MAX_AGE_S", "Gateway", "Offer"]

# Offering may use a policy copy this old; every call is checked against the live digest.
OFFER_POLICY_MAX_AGE_S = 1.0
BOOKKEEPING_THREADS = 4  # policy reads and audit writes of the async path: short calls, a few at a time

T = TypeVar("T")


@dataclass(frozen=True)
class _Checked:
    """A call past its check and ``decision`` record: the gateway name, what its ``call`` record repeats, and
    the result when it was denied (nothing to run)."""

    name: str
    common: dict[str, Any]
    denied: ToolResult | None


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
        self._bookkeeping: ThreadPoolExecutor | None = None
        self._bookkeeping_lock = threading.Lock()

    async def blocking(self, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)`` (sync: policy, audit) on the gateway's small executor, awaited."""
        with self._bookkeeping_lock:
            if self._bookkeeping is None:
                self._bookkeeping = ThreadPoolExecutor(BOOKKEEPING_THREADS, thread_name_prefix="toolbag-gateway")
            pool = self._bookkeeping
        return await asyncio.get_running_loop().run_in_executor(pool, work, *args)

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
        return self._offer(subject, requested, self.registry.catalog())

    async def aoffer(self, subject: Subject, requested: Sequence[str]) -> Offer:
        """:meth:`offer` on an event loop."""
        if not requested:
            return Offer()
        catalog = await self.registry.acatalog()
        return await self.blocking(self._offer, subject, requested, catalog)

    def _offer(self, subject: Subject, requested: Sequence[str], catalog: Mapping[str, ToolInfo]) -> Offer:
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

    def _resolve(self, wire_name: str, offer: Offer, catalog: Mapping[str, ToolInfo] | None) -> str:
        """The gateway name a model meant: the offered tool, else a catalog tool by name or by wire form
        (``catalog`` is needed only when the name was not offered)."""
        offered = offer.from_wire.get(wire_name)
        if offered is not None:
            return offered
        assert catalog is not None
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
        catalog = None if call.name in offer.from_wire else self.registry.catalog()
        checked = self._check(subject, offer, call, step, catalog)
        if checked.denied is not None:
            return checked.denied
        started = time.monotonic()
        output = self.registry.call(checked.name, self._arguments(call), timeout_s)
        return self._called(subject, call, checked, output, time.monotonic() - started)

    async def aexecute(
        self, subject: Subject, offer: Offer, call: ToolCall, *, step: int, timeout_s: float
    ) -> ToolResult:
        """:meth:`execute` on an event loop: the tool awaited (an MCP session on this loop, a sync tool on the
        registry's executor), the check and the audit on :meth:`blocking`."""
        catalog = None if call.name in offer.from_wire else await self.registry.acatalog()
        checked = await self.blocking(self._check, subject, offer, call, step, catalog)
        if checked.denied is not None:
            return checked.denied
        started = time.monotonic()
        output = await self.registry.acall(checked.name, self._arguments(call), timeout_s)
        return await self.blocking(self._called, subject, call, checked, output, time.monotonic() - started)

    @staticmethod
    def _arguments(call: ToolCall) -> dict[str, Any]:
        return call.arguments if isinstance(call.arguments, dict) else {}

    def _check(
        self, subject: Subject, offer: Offer, call: ToolCall, step: int, catalog: Mapping[str, ToolInfo] | None
    ) -> _Checked:
        """The policy's decision on one call, audited (the ``decision`` record) before anything runs."""
        name = self._resolve(call.name, offer, catalog)
        args = self._arguments(call)
        decision = self._decide(subject, name, args, offer)
        common = dict(id=new_decision_id(), tool=name, args_digest=args_digest(args),
                      arg_names=",".join(sorted(str(k) for k in args)), decision=decision.word,
                      grant=decision.rule_id, policy_version=decision.policy_version,
                      policy_digest=decision.policy_digest, step=step)
        self.audit.write(_record(subject, "decision", reason=decision.reason,
                                 outcome="" if decision.allowed else "denied", **common))
        label = name if name in offer.to_wire or (catalog is not None and name in catalog) else "unknown"
        metrics.TOOL_CALLS.labels(label, decision.word).inc()
        denied = None
        if not decision.allowed:
            text = f"permission denied: {subject.agent!r} may not call {name!r} ({decision.reason})"
            denied = ToolResult(call.id, call.name, text, is_error=True)
        return _Checked(name, common, denied)

    def _called(
        self, subject: Subject, call: ToolCall, checked: _Checked, output: ToolOutput, duration_s: float
    ) -> ToolResult:
        """The ``call`` record of a call that ran, and its result for the model (cut to ``max_result_chars``)."""
        self.audit.write(_record(subject, "call", duration_ms=round(duration_s * 1000, 3), outcome=output.outcome,
                                 reason="" if output.outcome == "ok" else output.text[:300], **checked.common))
        text = output.text
        limit = self.loop.max_result_chars
        if len(text) > limit:
            text = text[:limit] + f"\n[truncated: {len(output.text) - limit} more characters]"
        return ToolResult(call.id, call.name, text, is_error=output.is_error)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Open MCP sessions on ``loop`` (a worker's attempt loop; see :meth:`ToolRegistry.bind`)."""
        self.registry.bind(loop)

    async def aclose(self) -> None:
        """Close what lives on the bound loop (the MCP sessions), from that loop."""
        await self.registry.aclose()

    def close(self) -> None:
        self.registry.close()
        if self._bookkeeping is not None:
            self._bookkeeping.shutdown(wait=False)
