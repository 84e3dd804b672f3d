"""One vendor request while it is answered: its log entry, its metric, and its error answers."""

from __future__ import annotations

import time

from starlette.requests import Request

from toolbag.telemetry import metrics

from .faults import DEFAULT_RATELIMIT
from .generate import new_id
from .raw_response import JSON_CONTENT, RawResponse, raw_headers
from .state import LogEntry, SimState
from .wire import Headers, HttpError, Wire, dumps

RETRY_COUNT_HEADER = "x-stainless-retry-count"


class Call:
    """One vendor request: its id, its clock and its entry in the request log."""

    def __init__(self, state: SimState, wire: Wire, request: Request) -> None:
        self.wire = wire
        self.start = time.perf_counter()
        self.rid = new_id("req_")
        retry = request.headers.get(RETRY_COUNT_HEADER)
        self.entry: LogEntry = {
            "time": time.time(),
            "vendor": wire.vendor,
            "path": request.scope["path"],
            "model": None,
            "stream": False,
            "fault": None,
            "fault_source": None,
            "status": None,
            "end": None,
            "duration_ms": None,
            "ttft_ms": None,
            "request_id": self.rid,
            "retry_count": int(retry) if retry and retry.isdigit() else None,
        }
        state.log.append(self.entry)

    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self.start) * 1000.0, 3)

    def first_byte(self) -> None:
        """Record the time to the first byte of the answer as now."""
        self.entry["ttft_ms"] = self.elapsed_ms()

    def finish(self, status: int | None, end: str) -> None:
        """Record how the request ended (``status`` None: no HTTP status went out) and count it."""
        self.entry["status"] = status
        self.entry["end"] = end
        self.entry["duration_ms"] = self.elapsed_ms()
        fault = (self.entry["fault"] or "ok").partition(":")[0]
        metrics.SIM_REQUESTS.labels(self.wire.vendor, fault, end if status is None else str(status)).inc()

    def finish_at_once(self, status: int) -> None:
        """Finish an answer sent in one piece: its first byte and its end are the same moment."""
        self.finish(status, "complete")
        self.entry["ttft_ms"] = self.entry["duration_ms"]

    def error(self, err: HttpError, base: Headers | None = None) -> RawResponse:
        """The native error answer, with ``base`` headers (default: the vendor's headers without a model)."""
        body = dumps(err.body)
        self.finish_at_once(err.status)
        headers = base or self.wire.headers("", self.rid, DEFAULT_RATELIMIT)
        return RawResponse(err.status, raw_headers(headers, JSON_CONTENT, body, err.headers), body)
