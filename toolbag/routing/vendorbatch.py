"""Which path an attempt takes: the vendor's batch API or a real-time call (one rule, a pure function).

A job goes to a vendor batch when all of these hold: it is on the batch tier, its model has
``features.batch``, its route allows it (``RoutePolicy.vendor_batch``), and the time left before its deadline
is at least the route's ``vendor_batch_bound_s`` (the longest a vendor batch is trusted to take: the vendors
promise 24 hours). Anything else is a real-time call. The job path, ``toolbag batch run --dry-run`` and the
benchmarks all ask this function.
"""

from __future__ import annotations

from typing import Literal

from toolbag.config import Config, ModelConfig, RoutePolicy, Tier

Path = Literal["vendor_batch", "realtime"]
VENDOR_BATCH: Path = "vendor_batch"
REALTIME: Path = "realtime"


def vendor_batch_eligible(model: ModelConfig, policy: RoutePolicy, tier: Tier, time_left_s: float) -> bool:
    """True when an attempt of a ``tier`` job on ``model``, with ``time_left_s`` before its deadline, may be
    served by the vendor's batch API."""
    return (tier == "batch" and model.features.batch and policy.vendor_batch
            and time_left_s >= policy.vendor_batch_bound_s)


def attempt_path(config: Config, capability: str, tier: Tier, model: str, time_left_s: float) -> Path:
    """The path an attempt of ``capability``/``tier`` on ``model`` takes with ``time_left_s`` to its deadline."""
    policy = config.route(capability, tier).policy
    eligible = vendor_batch_eligible(config.models[model], policy, tier, time_left_s)
    return VENDOR_BATCH if eligible else REALTIME


def left_when_batched_s(config: Config, time_left_s: float) -> float:
    """What the rule sees of ``time_left_s`` (the time left before a deadline when a worker claims the attempt):
    the time left when a vendor batch's clock would start, after the longest an attempt waits in its pending
    collection before its batch is created (``fleet.vendor_batch.max_age_s``)."""
    return time_left_s - config.fleet.vendor_batch.max_age_s
