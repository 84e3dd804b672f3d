"""The simulator's mutable state: the fault plans, the request log and the waits the server must wake to stop."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TypedDict

from .faults import DEFAULT_RATELIMIT, BatchSettings, Fault, FaultPlan, Latency, RateLimitInfo, directive_fault
from .generate import count_tokens
from .prompt_cache import PromptCache
from .request import SimRequest

LOG_LIMIT = 20_000  # entries kept (oldest dropped first); about 1 KB each


class LogEntry(TypedDict):
    """One vendor request as ``GET /_sim/log`` reports it (filled in while the request is answered)."""

    time: float
    vendor: str
    path: str
    model: str | None
    stream: bool
    fault: str | None
    fault_source: str | None  # "header", "directive", "plan" or "context_window"
    status: int | None  # None when no HTTP status went out (reset, disconnect, server stop)
    end: str | None  # "complete", "cut", "reset", "disconnected" or "stopped"
    duration_ms: float | None
    ttft_ms: float | None
    request_id: str
    retry_count: int | None  # the SDK's x-stainless-retry-count header


class SimState:
    """Mutable simulator state: the file plan, the runtime plan (admin API), the log, in-flight waits."""

    def __init__(self, plan: FaultPlan | None) -> None:
        self.base_plan = plan or FaultPlan()
        self.runtime_plan: FaultPlan | None = None
        self.log: deque[LogEntry] = deque(maxlen=LOG_LIMIT)
        self.closing = False
        self._waits: set[asyncio.Event] = set()
        self.prompt_cache = PromptCache()
        self.open_calls = 0  # vendor requests being answered right now (from arrival to the last byte sent)
        self.peak_open_calls = 0  # the most at once since the start or the last reset

    def call_opened(self) -> None:
        self.open_calls += 1
        self.peak_open_calls = max(self.peak_open_calls, self.open_calls)

    def call_closed(self) -> None:
        self.open_calls -= 1

    def plans(self) -> list[FaultPlan]:
        """The runtime plan first (when set), then the file plan."""
        return [self.runtime_plan, self.base_plan] if self.runtime_plan is not None else [self.base_plan]

    def select(self, vendor: str, model: str, text: str) -> Fault | None:
        for plan in self.plans():
            fault = plan.select(vendor, model, text)
            if fault is not None:
                return fault
        return None

    def fault_for(self, req: SimRequest) -> tuple[Fault | None, str | None]:
        """(fault, source) from the prompt's directive, else the plans, else the context window; (None, source)
        for a normal answer. Raises :class:`~.faults.FaultPlanError` for a directive that cannot be parsed."""
        fault = directive_fault(req.text, req.model)
        source = "directive" if fault is not None else None
        if fault is None:
            fault = self.select(req.vendor, req.model, req.text)
            source = "plan" if fault is not None else None
        if fault is None or fault.name == "ok":
            window = self.context_window_for(req.model)
            if window is not None and count_tokens(req.text) > window:
                return Fault("context_length", str(window)), "context_window"
            return None, source
        return fault, source

    def batch_settings_for(self, model: str) -> BatchSettings | None:
        for plan in self.plans():
            if plan.batches:
                found = plan.batch_settings_for(model)
                if found is not None:
                    return found
        return None

    def latency_for(self, model: str) -> Latency | None:
        for plan in self.plans():
            if plan.latency:
                found = plan.latency_for(model)
                if found is not None:
                    return found
        return None

    def ratelimit_for(self, model: str) -> RateLimitInfo:
        for plan in self.plans():
            if plan.ratelimit:
                found = plan.ratelimit_for(model)
                if found is not None:
                    return found
        return DEFAULT_RATELIMIT

    def context_window_for(self, model: str) -> int | None:
        for plan in self.plans():
            if plan.context_windows:
                found = plan.context_window_for(model)
                if found is not None:
                    return found
        return None

    def shutdown(self) -> None:
        """Wake every hung or stalled request so the server can stop promptly. Call in the server's loop."""
        self.closing = True
        for event in list(self._waits):
            event.set()

    def register(self, event: asyncio.Event) -> None:
        self._waits.add(event)
        if self.closing:
            event.set()

    def unregister(self, event: asyncio.Event) -> None:
        self._waits.discard(event)
