"""Which path an attempt takes: the vendor's batch API or a real-time call. A pure rule, no Redis."""

from __future__ import annotations

from toolbag.config import Config, Tier

__all__ = ["takes_vendor_batch"]


def takes_vendor_batch(config: Config, *, capability: str, tier: Tier, model: str, deadline_in_s: float) -> bool:
    """True when an attempt goes through the vendor's batch API: a batch-tier job, on a model whose vendor
    batches it (``features.batch``), on a route that allows it (``policy.vendor_batch``), with a deadline a
    vendor batch can meet (at least ``fleet.vendor_batch.completion_window_s`` away). Anything else calls in
    real time."""
    if tier != "batch":
        return False
    settings = config.models.get(model)
    if settings is None or not settings.features.batch:
        return False
    if capability in config.routes and not config.route(capability, tier).policy.vendor_batch:
        return False
    return deadline_in_s >= config.fleet.vendor_batch.completion_window_s
