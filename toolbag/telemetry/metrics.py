"""Every Prometheus metric toolbag exports, defined once (the names and labels are a contract).

Label values are bounded sets (capability, tier, provider, model, outcome, status, reason): never a job
id, a caller or a user id.

Each process serves its own metrics (:func:`serve`). Two families are fleet-wide instead: jobs submitted and
jobs finished are counted in Redis by the store's Lua scripts, whoever made the transition (an application's
``Client`` is not scraped), and every supervisor exports them (:class:`FleetCounters`); aggregate them with
``max by (...)`` across supervisor replicas, never ``sum``.

Multiprocess mode: when ``PROMETHEUS_MULTIPROC_DIR`` is set (by the start-up shell, to an emptied directory)
before the process starts, :func:`serve` exposes the sum over every process writing into that directory, and
:func:`mark_dead` removes a dead prefork child's live gauges (the Celery side calls it).
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from toolbag import __version__
from toolbag.errors import ToolbagError

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

disable_created_metrics()  # no *_created series: they double the series count and no rule or panel reads them

_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

BUILD_INFO = Gauge(
    "toolbag_build_info", "toolbag version and role of this process (always 1)", ["version", "role"],
    multiprocess_mode="max",
)

# Fleet-wide, counted in Redis (``<prefix>stats``) and exported by FleetCounters from the supervisors. These
# objects only describe the series (name, help, labels): they are in no registry and nobody increments them.
JOBS_SUBMITTED = Counter(
    "toolbag_jobs_submitted_total", "Jobs accepted at submit (fleet-wide, from Redis)", ["capability", "tier"],
    registry=None,
)
JOBS_FINISHED = Counter(
    "toolbag_jobs_finished_total",
    "Terminal transitions by status (fleet-wide, from Redis; a re-opened escalation can finish again)",
    ["capability", "tier", "status"],
    registry=None,
)
JOBS_REJECTED = Counter(
    "toolbag_jobs_rejected_total",
    "Submissions refused at the edge, by the field at fault (fleet-wide, from Redis)",
    ["reason"],
    registry=None,
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
    "toolbag_queue_depth",
    "Jobs waiting for a provider queue: queued, reserved but not started, or delayed (set by the supervisor)",
    ["provider", "tier"],
    multiprocess_mode="mostrecent",
)
QUEUE_OLDEST_AGE = Gauge(
    "toolbag_queue_oldest_age_seconds",
    "How long the longest-waiting job of a provider queue has waited for its next attempt",
    ["provider", "tier"],
    multiprocess_mode="mostrecent",
)
DELAYED_JOBS = Gauge(
    "toolbag_delayed_jobs",
    "The part of toolbag_queue_depth parked in the delayed set (backoff, retry-after, rate-limit deferral)",
    ["provider", "tier"],
    multiprocess_mode="mostrecent",
)
ATTEMPTS = Counter(
    "toolbag_attempts_total", "Attempts by outcome", ["provider", "model", "tier", "outcome"]
)
LOST_AFTER_CALL = Counter(
    "toolbag_attempts_lost_after_call_total",
    "Attempts ended lost after their vendor call began: the vendor may have answered and billed a call the fleet "
    "makes again",
    ["provider", "model", "tier"],
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
WEBHOOK_DELIVERIES = Counter(
    "toolbag_webhook_deliveries_total",
    "Webhook POSTs from the outbox: delivered, retried (a failed try, to be tried again), failed (given up)",
    ["result"],
)
WEBHOOKS_PENDING = Gauge(
    "toolbag_webhooks_pending", "Notifications in the webhook outbox, not yet delivered", multiprocess_mode="mostrecent"
)
TOKENS = Counter(
    "toolbag_tokens_total", "Tokens by direction (input, output, cached)", ["provider", "model", "direction"]
)
COST = Counter("toolbag_cost_usd_total", "Spend in USD", ["provider", "model", "capability"])
# Budgets (toolbag.budgets): ``scope`` is fleet, team or caller; ``name`` a configured team or caller (never
# free text: an unconfigured caller is ``other``); ``period`` day or month.
BUDGET_SPENT = Gauge(
    "toolbag_budget_spent_usd", "Spend in the current period of a configured budget, fleet-wide",
    ["scope", "name", "period"], multiprocess_mode="mostrecent",
)
BUDGET_REMAINING = Gauge(
    "toolbag_budget_remaining_usd", "What is left of a budget's hard limit in the current period (reservations "
    "of jobs in flight deducted)", ["scope", "name", "period"], multiprocess_mode="mostrecent",
)
BUDGET_SOFT_LIMIT = Counter(
    "toolbag_budget_soft_limit_total", "Times a budget's spend crossed its soft limit (once per period)",
    ["scope", "name", "period"],
)
BUDGET_REFUSED = Counter(
    "toolbag_budget_refused_total", "Jobs refused at submit because a budget reached its hard limit",
    ["scope", "name", "period"],
)
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
RATELIMIT_VENDOR_SIGNALS = Counter(
    "toolbag_ratelimit_vendor_signals_total",
    "Times a vendor's 429 or rate-limit headers cooled a model down or slowed its pace",
    ["provider", "model", "signal"],
)
RATELIMIT_HEADROOM = Gauge(
    "toolbag_ratelimit_headroom_ratio",
    "Unused share of a model's limit (1 = idle, 0 = saturated)",
    ["provider", "model", "kind"],
    multiprocess_mode="mostrecent",
)
CIRCUIT_OPEN = Gauge(
    "toolbag_circuit_open", "1 while a model's circuit is open", ["provider", "model"], multiprocess_mode="mostrecent"
)
CIRCUIT_STATE = Gauge(
    "toolbag_circuit_state", "Circuit state per model (one series per state, value 1 for the current one)",
    ["provider", "model", "state"],
    multiprocess_mode="mostrecent",
)
INFLIGHT = Gauge(
    "toolbag_inflight_attempts", "Attempts currently calling a vendor", ["provider"], multiprocess_mode="livesum"
)
STALE_DELIVERIES = Counter(
    "toolbag_stale_deliveries_total", "Duplicate or stale deliveries acked and dropped", ["provider"]
)
REQUEUED = Counter(
    "toolbag_jobs_requeued_total",
    "Queued jobs whose message died with a worker, put back on their queue by the supervisor",
    ["reason"],  # unclaimed_delivery | vanished_message
)
SDK_ERRORS = Counter(
    "toolbag_sdk_errors_total", "Vendor errors by normalized class", ["provider", "error_class"]
)
TOOL_CALLS = Counter("toolbag_tool_calls_total", "Tool calls through the gateway", ["tool", "decision"])
WORKERS_UP = Gauge(
    "toolbag_workers_up", "Worker processes consuming each queue (heartbeats seen by the supervisor)",
    ["provider", "tier"],
    multiprocess_mode="mostrecent",
)

# Vendor batches (the batch tier on the vendors' batch APIs). The functions that keep them are in
# toolbag/telemetry/vendorbatch.py; the open-batch gauges are set by the poller (one per provider fleet-wide:
# aggregate with max across supervisors).
_BATCH_AGE_BUCKETS_S = (60, 300, 900, 1800, 3600, 7200, 14_400, 28_800, 43_200, 86_400, 172_800)
VENDOR_BATCHES_SUBMITTED = Counter(
    "toolbag_vendor_batches_submitted_total", "Vendor batches created (one per batch API call that made one)",
    ["provider", "model"],
)
VENDOR_BATCH_ITEMS = Counter(
    "toolbag_vendor_batch_items_total", "Attempts sent inside vendor batches", ["provider", "model"],
)
VENDOR_BATCHES_OPEN = Gauge(
    "toolbag_vendor_batches_open", "Vendor batches submitted and not yet ended (set by the poller)", ["provider"],
    multiprocess_mode="mostrecent",
)
VENDOR_BATCH_OLDEST_AGE = Gauge(
    "toolbag_vendor_batch_oldest_age_seconds", "Age of the oldest vendor batch not yet ended (0: none open)",
    ["provider"], multiprocess_mode="mostrecent",
)
VENDOR_BATCH_DURATION = Histogram(
    "toolbag_vendor_batch_duration_seconds", "From a vendor batch's submission to its end, by how it ended",
    ["provider", "ending"], buckets=_BATCH_AGE_BUCKETS_S,
)
VENDOR_BATCH_DROPPED = Counter(
    "toolbag_vendor_batch_results_dropped_total",
    "Vendor batch results dropped because their job had moved on (cancelled, expired, retried elsewhere)",
    ["provider"],
)
VENDOR_BATCH_SAVED = Counter(
    "toolbag_vendor_batch_saved_usd_total",
    "USD saved by vendor batches: the real-time price minus the batch price of each batch-served attempt",
    ["provider", "model", "capability"],
)

API_REQUESTS = Counter(
    "toolbag_api_requests_total",
    "Front-door requests by endpoint, capability (unknown = refused before one was known), tier and HTTP status",
    ["endpoint", "capability", "tier", "status"],
)
API_TIME_TO_FIRST_TOKEN = Histogram(
    "toolbag_api_time_to_first_token_seconds",
    "Front door: from a streamed request's arrival to its first text sent to the caller",
    ["capability", "tier"],
    buckets=_LATENCY_BUCKETS_S,
)
API_STREAMS = Counter(
    "toolbag_api_stream_outcomes_total",
    "Front-door streams by how they ended: complete, cut (error event after text), failed (error event before "
    "text), stalled, timeout, disconnected (the caller left)",
    ["capability", "tier", "outcome"],
)
API_OPEN_STREAMS = Gauge(
    "toolbag_api_open_streams", "Streams the front door holds open now", multiprocess_mode="livesum",
)
API_OVERLOAD = Counter(
    "toolbag_api_overload_total",
    "Front-door requests refused with 429: the tier's queue past its depth (queue_depth) or a key's rpm (rpm)",
    ["tier", "reason"],
)

VENDOR_BATCH_HELD = Counter(
    "toolbag_vendor_batch_held_total",
    "Batch-tier attempts a worker handed to a vendor batch's pending collection (no real-time call or rate-limit "
    "slot)",
    ["provider", "model"],
)
VENDOR_BATCH_RECOVERED = Counter(
    "toolbag_vendor_batch_recovered_total",
    "Vendor batches the poller gave up on, their attempts failed and decided on: stuck (running past "
    "fleet.vendor_batch.stuck_after_s: cancelled), abandoned (taken but never created at the vendor), refused "
    "(the create call failed)",
    ["provider", "why"],
)
VENDOR_BATCH_PENDING_DROPPED = Counter(
    "toolbag_vendor_batch_pending_dropped_total",
    "Attempts taken out of a pending collection unsent because their job had moved on (cancelled, expired)",
    ["provider"],
)
VENDOR_BATCH_PENDING = Gauge(
    "toolbag_vendor_batch_pending",
    "Attempts waiting in a pending collection for their vendor batch (set by the poller)",
    ["provider", "model"],
    multiprocess_mode="mostrecent",
)

SIM_REQUESTS = Counter(
    "toolbag_simulator_requests_total",
    "Vendor requests the simulator answered, by vendor, injected fault (ok = none) and HTTP status",
    ["vendor", "fault", "status"],
)

log = logging.getLogger("toolbag.telemetry.metrics")

# Fields of the ``<prefix>stats`` hash, written by submit.lua, complete.lua and finish.lua.
SUBMITTED_FIELD = "submitted|{tier}|{capability}"
FINISHED_FIELD = "finished|{tier}|{status}|{capability}"


class FleetCounters(Collector):
    """Exports the fleet-wide job counters kept in the ``stats`` hash of Redis (one HGETALL per scrape)."""

    def __init__(self, client: Any, stats_key: str) -> None:
        self.client = client
        self.stats_key = stats_key

    def describe(self) -> Iterable[Metric]:
        return [self._submitted(), self._finished(), self._rejected()]

    def collect(self) -> Iterator[Metric]:
        submitted, finished, rejected = self._submitted(), self._finished(), self._rejected()
        try:
            raw = self.client.hgetall(self.stats_key)
        except Exception as err:  # a scrape must not fail because Redis blinked; the series pause instead
            log.warning("fleet counters unavailable: %s", err)
            raw = {}
        for field_raw, value_raw in sorted(raw.items()):
            field = field_raw.decode() if isinstance(field_raw, bytes) else str(field_raw)
            value = float(value_raw)
            kind, _, rest = field.partition("|")
            if kind == "submitted":
                tier, _, capability = rest.partition("|")
                submitted.add_metric([capability, tier], value)
            elif kind == "finished":
                tier, _, rest = rest.partition("|")
                status, _, capability = rest.partition("|")
                finished.add_metric([capability, tier, status], value)
            elif kind == "rejected":
                rejected.add_metric([rest], value)
        yield submitted
        yield finished
        yield rejected

    @staticmethod
    def _submitted() -> CounterMetricFamily:
        return CounterMetricFamily(JOBS_SUBMITTED._name, JOBS_SUBMITTED._documentation, labels=["capability", "tier"])

    @staticmethod
    def _rejected() -> CounterMetricFamily:
        return CounterMetricFamily(JOBS_REJECTED._name, JOBS_REJECTED._documentation, labels=["reason"])

    @staticmethod
    def _finished() -> CounterMetricFamily:
        return CounterMetricFamily(
            JOBS_FINISHED._name, JOBS_FINISHED._documentation, labels=["capability", "tier", "status"]
        )


def multiprocess() -> bool:
    """True when this process writes its metrics to ``$PROMETHEUS_MULTIPROC_DIR`` (prefork-safe mode)."""
    return bool(os.environ.get(MULTIPROC_ENV))


def serving_registry() -> CollectorRegistry:
    """What ``/metrics`` exposes: this process's registry, or the sum over every process in multiprocess mode."""
    if not multiprocess():
        return REGISTRY
    from prometheus_client import multiprocess as mp

    registry = CollectorRegistry()
    mp.MultiProcessCollector(registry)
    return registry


def mark_dead(pid: int) -> None:
    """Forget a dead process's live gauges (multiprocess mode; its counters keep counting, as they must)."""
    if multiprocess():
        from prometheus_client import multiprocess as mp

        mp.mark_process_dead(pid)


_served: dict[int, CollectorRegistry] = {}
_serve_lock = threading.Lock()


class MetricsServeError(ToolbagError):
    """``/metrics`` cannot listen where asked; ``port_taken`` when another process holds the port."""

    def __init__(self, addr: str, port: int, err: OSError) -> None:
        self.addr, self.port = addr, port
        self.port_taken = err.errno == errno.EADDRINUSE
        super().__init__(f"cannot serve /metrics on {addr}:{port}: {err.strerror or err}")


def serve(port: int, role: str, *, collectors: Sequence[Collector] = (), addr: str = "0.0.0.0") -> int:
    """Expose ``/metrics`` on ``addr:port`` (port 0 picks a free one), plus ``collectors``. Returns the bound port.

    Idempotent per port. ``role`` (``worker:<provider>``, ``supervisor``, ``simulator``) labels
    ``toolbag_build_info``. Raises :class:`MetricsServeError` when the port is taken or ``addr`` is unusable.
    """
    BUILD_INFO.labels(__version__, role).set(1)
    with _serve_lock:
        if port and port in _served:
            return port
        registry = serving_registry()
        for collector in collectors:
            registry.register(collector)
        try:
            server, _thread = start_http_server(port, addr=addr, registry=registry)
        except OSError as err:
            for collector in collectors:
                registry.unregister(collector)
            raise MetricsServeError(addr, port, err) from None
        bound = int(server.server_address[1])
        _served[bound] = registry
        return bound
