"""Every Prometheus metric toolbag exports, defined once (DESIGN.md §8: the names are a contract).

Label values are bounded sets (capability, tier, provider, model, outcome, status, reason): never a job
id, a caller or a user id.
"""

from __future__ import annotations

import os
import threading

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    start_http_server,
)

from toolbag import __version__

_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

BUILD_INFO = Info("toolbag_build", "toolbag version and role of this process")

JOBS_SUBMITTED = Counter(
    "toolbag_jobs_submitted_total", "Jobs accepted at submit", ["capability", "tier"]
)
JOBS_REJECTED = Counter(
    "toolbag_jobs_rejected_total", "Submissions refused at the edge, by reason", ["reason"]
)
JOBS_FINISHED = Counter(
    "toolbag_jobs_finished_total", "Jobs reaching a terminal status", ["capability", "tier", "status"]
)
JOB_DURATION = Histogram(
    "toolbag_job_duration_seconds",
    "Submit to terminal status",
    ["capability", "tier"],
    buckets=_LATENCY_BUCKETS_S,
)
QUEUE_WAIT = Histogram(
    "toolbag_queue_wait_seconds",
    "Time from enqueue to an attempt starting",
    ["provider", "tier"],
    buckets=_LATENCY_BUCKETS_S,
)
QUEUE_DEPTH = Gauge(
    "toolbag_queue_depth", "Jobs waiting per provider queue (queued + reserved-not-started)", ["provider", "tier"]
)
QUEUE_OLDEST_AGE = Gauge(
    "toolbag_queue_oldest_age_seconds", "Age of the oldest waiting job per provider queue", ["provider", "tier"]
)
DELAYED_JOBS = Gauge("toolbag_delayed_jobs", "Jobs parked in the delayed set")
ATTEMPTS = Counter(
    "toolbag_attempts_total", "Attempts by outcome", ["provider", "model", "tier", "outcome"]
)
ATTEMPT_DURATION = Histogram(
    "toolbag_attempt_duration_seconds",
    "Vendor call duration per attempt",
    ["provider", "model", "tier"],
    buckets=_LATENCY_BUCKETS_S,
)
TIME_TO_FIRST_TOKEN = Histogram(
    "toolbag_time_to_first_token_seconds",
    "Time to the first streamed token",
    ["provider", "model"],
    buckets=_LATENCY_BUCKETS_S,
)
REROUTES = Counter(
    "toolbag_reroutes_total", "Jobs moved to another candidate", ["from_provider", "to_provider", "reason"]
)
SUPERVISOR_DECISIONS = Counter(
    "toolbag_supervisor_decisions_total", "Supervisor decisions by action and outcome", ["action", "outcome"]
)
ESCALATIONS = Counter("toolbag_escalations_total", "Jobs escalated to the human inbox", ["capability"])
TOKENS = Counter(
    "toolbag_tokens_total", "Tokens by direction (input, output, cached)", ["provider", "model", "direction"]
)
COST = Counter("toolbag_cost_usd_total", "Spend in USD", ["provider", "model", "capability"])
RATELIMIT_WAIT = Histogram(
    "toolbag_ratelimit_wait_seconds",
    "Time spent waiting for the shared rate limiter",
    ["provider", "model"],
    buckets=_LATENCY_BUCKETS_S,
)
RATELIMIT_DEFERRALS = Counter(
    "toolbag_ratelimit_deferrals_total", "Jobs handed back to the delayed set by the limiter", ["provider", "model"]
)
RATELIMIT_SPILLOVERS = Counter(
    "toolbag_ratelimit_spillovers_total", "Interactive jobs spilled to another candidate", ["provider", "model"]
)
RATELIMIT_HEADROOM = Gauge(
    "toolbag_ratelimit_headroom_ratio",
    "Unused share of a model's limit (1 = idle, 0 = saturated)",
    ["provider", "model", "kind"],
)
CIRCUIT_OPEN = Gauge("toolbag_circuit_open", "1 while a model's circuit is open", ["provider", "model"])
CIRCUIT_STATE = Gauge(
    "toolbag_circuit_state", "Circuit state per model (one series per state, value 1 for the current one)",
    ["provider", "model", "state"],
)
INFLIGHT = Gauge("toolbag_inflight_attempts", "Attempts currently calling a vendor", ["provider"])
STALE_DELIVERIES = Counter(
    "toolbag_stale_deliveries_total", "Duplicate or stale deliveries acked and dropped", ["provider"]
)
SDK_ERRORS = Counter(
    "toolbag_sdk_errors_total", "Vendor errors by normalized class", ["provider", "error_class"]
)
TOOL_CALLS = Counter("toolbag_tool_calls_total", "Tool calls through the gateway", ["tool", "decision"])
WORKERS_UP = Gauge("toolbag_workers_up", "Worker processes consuming each queue", ["provider", "tier"])

_served: dict[int, bool] = {}
_serve_lock = threading.Lock()


def serve(port: int, role: str, registry: CollectorRegistry = REGISTRY) -> int:
    """Expose ``/metrics`` on ``port`` (0 picks a free port). Returns the bound port. Idempotent per port."""
    BUILD_INFO.info({"version": __version__, "role": role, "pid": str(os.getpid())})
    with _serve_lock:
        if port and port in _served:
            return port
        server, _thread = start_http_server(port, registry=registry)
        bound = int(server.server_address[1])
        _served[bound] = True
        return bound
