"""Vendor batches, vendor-neutral: the batch and its items, their timeline, and each item's answer.

Each item is answered by the same engine as a real-time request (the vendor's wire module parses it, the
prompt's ``[[sim:…]]`` directive or the fault plans choose its fault, :mod:`.generate` decides the reply), so a
refusal, an error or a text comes back in a batch exactly as it would in real time. Item faults about the
connection or the stream have a batch equivalent: ``midstream_error`` is ``overloaded``, ``reset``/``cut``/
``malformed`` are ``server_error``, ``midstream_refusal`` is ``refusal``, timing faults answer normally.

Timeline: item *i* of *n* is done at ``created + processing_s × (i + 1) / n``; the batch ends at
``created + processing_s``, or at once when cancelled (items done by then keep their answer, the rest are
canceled). Batch faults (header ``x-sim-batch``, or the plans' ``batches`` settings):

- ``expired``: the batch ends at its processing time as expired; the items done by half of it are answered,
  the rest expire;
- ``cancelled``: the batch is cancelled (as if by another client) at half its processing time;
- ``stuck``: the batch never ends (until the client cancels it).

The vendor shapes are in :mod:`.anthropic_batches`, :mod:`.openai_batches` and :mod:`.gemini_batches`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response

from .call import Call
from .faults import (
    DEFAULT_RATELIMIT,
    ERROR_FAULTS,
    FAULT_HEADER,
    BatchSettings,
    Fault,
    FaultPlanError,
    parse_batch_fault,
    parse_fault,
)
from .generate import make_reply, new_id
from .raw_response import JSON_CONTENT, RawResponse, raw_headers
from .request import RequestError
from .state import SimState
from .wire import HttpError, Wire, answer_mode, dumps

BATCH_FAULT_HEADER = "x-sim-batch"
BATCH_MS_HEADER = "x-sim-batch-ms"
FAULT_CUTOFF = 0.5  # ``expired`` / ``cancelled``: the share of the processing time whose items get answered
BATCH_TTL_S = 86_400.0  # what the vendors promise: a batch ends within 24 h
STORE_LIMIT = 10_000  # batches kept (oldest dropped first)

ItemOutcome = Literal["succeeded", "errored", "canceled", "expired"]
Ending = Literal["completed", "expired", "cancelled"]

# An item fault that makes no sense inside a batch, and the fault the item gets instead.
_BATCH_EQUIVALENT = {"midstream_error": "overloaded", "reset": "server_error", "cut": "server_error",
                     "malformed": "server_error"}


@dataclass(frozen=True)
class ItemAnswer:
    """How one batch item ended: the real-time status and body it got (None when canceled or expired)."""

    outcome: ItemOutcome
    status: int = 0
    body: dict[str, Any] | None = None
    input_tokens: int = 0
    output_tokens: int = 0


def answer_item(state: SimState, wire: Wire, body: Any, model: str | None = None) -> ItemAnswer:
    """Answer one batch item as the real-time endpoint would answer ``body`` (not streamed)."""
    rid = new_id("req_")
    try:
        req = wire.parse(body, model=model, stream=False)
        req.stream = False
        fault, _ = state.fault_for(req)
    except (RequestError, FaultPlanError) as exc:
        err = wire.invalid(str(exc), rid)
        return ItemAnswer("errored", err.status, err.body)
    name = "ok" if fault is None else _BATCH_EQUIVALENT.get(fault.name, fault.name)
    if name in ERROR_FAULTS:
        err = wire.error(Fault(name, fault.param if fault is not None and name == fault.name else None), req, rid)
        return ItemAnswer("errored", err.status, err.body)
    reply = state.prompt_cache.apply(req, make_reply(req))
    return ItemAnswer("succeeded", 200, wire.body(req, reply, answer_mode(name, False), rid),
                      reply.input_tokens, reply.output_tokens)


@dataclass
class BatchItem:
    """One request of a batch: its caller's id, its vendor request body, what it ended as."""

    custom_id: str
    body: Any
    metadata: Any = None  # echoed back (Gemini inline requests)
    answer: ItemAnswer | None = None


@dataclass
class SimBatch:
    """One vendor batch and its timeline (wall-clock seconds)."""

    id: str
    wire: Wire
    model: str
    items: list[BatchItem]
    processing_s: float
    fault: str | None = None
    created_s: float = field(default_factory=time.time)
    cancel_s: float | None = None  # when the client asked to cancel it
    extra: dict[str, Any] = field(default_factory=dict)  # the vendor's own fields (endpoint, metadata, …)
    settled: bool = False

    @property
    def ends_s(self) -> float:
        """When processing ends on its own (infinite for ``stuck``)."""
        return math.inf if self.fault == "stuck" else self.created_s + self.processing_s

    def _client_cancelled(self) -> bool:
        return self.cancel_s is not None and self.cancel_s < self.ends_s

    def _cut_s(self) -> float:
        """When the batch stops answering items: a client cancel, else the fault's cutoff, else its end."""
        if self._client_cancelled() and self.cancel_s is not None:
            return self.cancel_s
        if self.fault in ("expired", "cancelled"):
            return self.created_s + self.processing_s * FAULT_CUTOFF
        return self.ends_s

    def _cut_share(self) -> float:
        """The share of the processing time whose items get answered (0 for a ``stuck`` batch)."""
        if self.fault == "stuck":
            return 0.0
        if self._client_cancelled() and self.cancel_s is not None:
            return (self.cancel_s - self.created_s) / self.processing_s if self.processing_s > 0 else 1.0
        return FAULT_CUTOFF if self.fault in ("expired", "cancelled") else 1.0

    def ending(self, now: float) -> Ending | None:
        """How the batch ended, or None while it runs."""
        if self._client_cancelled():
            return "cancelled"
        if self.fault == "cancelled" and now >= self._cut_s():
            return "cancelled"
        if now < self.ends_s:
            return None
        return "expired" if self.fault == "expired" else "completed"

    def ended_s(self, now: float) -> float | None:
        """When it ended, or None while it runs."""
        ending = self.ending(now)
        if ending is None:
            return None
        return self._cut_s() if ending == "cancelled" else self.ends_s

    def settle(self, state: SimState, now: float) -> bool:
        """Answer every item once the batch has ended (once); whether it has ended."""
        ending = self.ending(now)
        if ending is None:
            return False
        if not self.settled:
            answered = len(self.items) * self._cut_share()  # items finish evenly over the processing time
            unanswered: ItemOutcome = "expired" if ending == "expired" else "canceled"
            for index, item in enumerate(self.items):
                if ending == "completed" or index + 1 <= answered:
                    item.answer = answer_item(state, self.wire, item.body, self.model_for(item))
                else:
                    item.answer = ItemAnswer(unanswered)
            self.settled = True
        return True

    def model_for(self, item: BatchItem) -> str | None:
        """The model the item's body does not name itself (Gemini items take the batch's)."""
        return self.model if self.wire.vendor == "gemini" else None

    def counts(self) -> dict[ItemOutcome, int]:
        """Items per outcome (all zero before :meth:`settle`)."""
        counts: dict[ItemOutcome, int] = {"succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        for item in self.items:
            if item.answer is not None:
                counts[item.answer.outcome] += 1
        return counts


class BatchStore:
    """Every batch the simulator holds, newest last."""

    def __init__(self) -> None:
        self.batches: dict[str, SimBatch] = {}

    def add(self, batch: SimBatch) -> None:
        self.batches[batch.id] = batch
        while len(self.batches) > STORE_LIMIT:
            del self.batches[next(iter(self.batches))]

    def get(self, batch_id: str, vendor: str) -> SimBatch | None:
        batch = self.batches.get(batch_id)
        return batch if batch is not None and batch.wire.vendor == vendor else None

    def newest_first(self, vendor: str) -> list[SimBatch]:
        return [b for b in reversed(self.batches.values()) if b.wire.vendor == vendor]

    def summary(self) -> list[dict[str, Any]]:
        """Every batch, oldest first, as ``GET /_sim/batches`` reports it (without settling any; ``failed``: an
        OpenAI input file that did not validate)."""
        now = time.time()
        return [{"id": b.id, "vendor": b.wire.vendor, "model": b.model, "items": len(b.items),
                 "fault": b.fault, "processing_ms": b.processing_s * 1000.0, "created": b.created_s,
                 "ending": "failed" if b.extra.get("errors") else b.ending(now),
                 "cancel_requested": b.cancel_s is not None}
                for b in self.batches.values()]


def batch_settings(state: SimState, headers: Mapping[str, str], model: str) -> BatchSettings:
    """The batch's processing time and fault: the headers first, then the plans, then the defaults.

    Raises :class:`RequestError` naming a header that cannot be used.
    """
    planned = state.batch_settings_for(model) or BatchSettings()
    processing_ms, fault = planned.processing_ms, planned.fault
    spec = headers.get(BATCH_MS_HEADER)
    if spec is not None:
        try:
            processing_ms = float(spec)
        except ValueError:
            raise RequestError(f"simulator: {BATCH_MS_HEADER} must be a number of milliseconds") from None
        if not 0 <= processing_ms <= BATCH_TTL_S * 1000 or math.isnan(processing_ms):
            raise RequestError(f"simulator: {BATCH_MS_HEADER} must be between 0 and {BATCH_TTL_S * 1000:g}")
    named = headers.get(BATCH_FAULT_HEADER)
    if named is not None:
        try:
            fault = parse_batch_fault(named)
        except FaultPlanError as exc:
            raise RequestError(f"simulator: {BATCH_FAULT_HEADER} header: {exc}") from None
    return BatchSettings(processing_ms=processing_ms, fault=fault)


@dataclass(frozen=True)
class Page:
    """One page of a vendor's batch list, newest first, and whether older ones follow."""

    batches: list[SimBatch]
    has_more: bool

    @property
    def first_id(self) -> str | None:
        return self.batches[0].id if self.batches else None

    @property
    def last_id(self) -> str | None:
        return self.batches[-1].id if self.batches else None


def page_size(raw: str, maximum: int) -> int | None:
    """A list request's page size: a whole number from 1 to ``maximum``, else None (the vendor's 400)."""
    return int(raw) if raw.isdigit() and 1 <= int(raw) <= maximum else None


class BatchEndpoint:
    """What every vendor's batch routes share: auth, the request log, JSON bodies, finding a batch, listing
    them a page at a time, and native errors."""

    def __init__(self, state: SimState, store: BatchStore, wire: Wire) -> None:
        self.state = state
        self.store = store
        self.wire = wire

    def begin(self, request: Request) -> tuple[Call, Response | None]:
        """Log the request; a native 401 when it carries no credential, the native error when its
        ``x-sim-fault`` header names an error fault (other faults do not apply to batch calls)."""
        call = Call(self.state, self.wire, request)
        if not self.wire.authorized(request.headers, request.query_params):
            return call, call.error(self.wire.unauthenticated(call.rid))
        spec = request.headers.get(FAULT_HEADER)
        if spec:
            try:
                fault = parse_fault(spec)
            except FaultPlanError as exc:
                return call, self.invalid(call, f"simulator: {FAULT_HEADER} header: {exc}")
            call.entry["fault"] = str(fault)
            call.entry["fault_source"] = "header"
            if fault.name in ERROR_FAULTS:
                return call, call.error(self.wire.error(fault, None, call.rid))
        return call, None

    async def json_body(self, request: Request, call: Call) -> tuple[Any, Response | None]:
        """The parsed JSON body, or the native 400."""
        try:
            return json.loads(await request.body()), None
        except ValueError:
            return None, call.error(self.wire.invalid("The request body is not valid JSON.", call.rid))

    def reply(self, call: Call, value: Any, status: int = 200) -> Response:
        """A JSON answer with the vendor's usual headers."""
        return self.raw(call, dumps(value), JSON_CONTENT, status)

    def raw(self, call: Call, payload: bytes, content_type: tuple[bytes, bytes], status: int = 200) -> Response:
        call.finish_at_once(status)
        headers = raw_headers(self.wire.headers("", call.rid, DEFAULT_RATELIMIT), content_type, payload)
        return RawResponse(status, headers, payload)

    def fail(self, call: Call, error: HttpError) -> Response:
        return call.error(error)

    def invalid(self, call: Call, message: str) -> Response:
        return call.error(self.wire.invalid(message, call.rid))

    def not_found(self, batch_id: str, call: Call) -> HttpError:
        """The vendor's 404 for a batch id it does not hold."""
        raise NotImplementedError

    def lookup(self, request: Request, batch_id: str) -> tuple[Call, SimBatch] | Response:
        """:meth:`begin`, then this vendor's batch ``batch_id``: ``(call, batch)``, or the answer when the
        request is refused or the vendor holds no such batch."""
        call, refused = self.begin(request)
        if refused is not None:
            return refused
        batch = self.store.get(batch_id, self.wire.vendor)
        if batch is None:
            return self.fail(call, self.not_found(batch_id, call))
        return call, batch

    def page(self, size: int, *, after: str | None = None, before: str | None = None) -> Page:
        """At most ``size`` of this vendor's batches, newest first, starting after the batch ``after`` (or
        ending before ``before``); an id the vendor does not hold is ignored."""
        batches = self.store.newest_first(self.wire.vendor)
        ids = [b.id for b in batches]
        if after in ids:
            batches = batches[ids.index(after) + 1:]
        elif before in ids:
            batches = batches[:ids.index(before)]
        return Page(batches[:size], len(batches) > size)

    def new_batch(self, batch_id: str, model: str, items: list[BatchItem], settings: BatchSettings, *,
                  item_wire: Wire | None = None, **extra: Any) -> SimBatch:
        """Hold a new batch whose items ``item_wire`` (default: this endpoint's wire) answers."""
        batch = SimBatch(id=batch_id, wire=item_wire or self.wire, model=model, items=items,
                         processing_s=settings.processing_ms / 1000.0, fault=settings.fault, extra=extra)
        self.store.add(batch)
        return batch

    def settle(self, batch: SimBatch) -> tuple[float, bool]:
        """(now, whether the batch has ended), answering its items when it just did."""
        now = time.time()
        return now, batch.settle(self.state, now)
