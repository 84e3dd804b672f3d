"""What the vendor-batch path tells the metrics: batches submitted and ended, items, open batches and their age,
results dropped for jobs that moved on, and what each batch-served attempt cost and saved.

The job path calls these; the metric objects themselves are defined once, in :mod:`toolbag.telemetry.metrics`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from toolbag.config import ModelConfig
from toolbag.telemetry import metrics


@dataclass(frozen=True)
class BatchItemCost:
    """One batch-served attempt's price: what it cost at the batch price, and what the same call would have
    cost in real time."""

    batch_usd: float
    realtime_usd: float

    @property
    def saved_usd(self) -> float:
        return max(0.0, self.realtime_usd - self.batch_usd)


def batch_item_cost(model: ModelConfig, input_tokens: int, output_tokens: int, *, cache_read_tokens: int = 0,
                    cache_write_tokens: int = 0) -> BatchItemCost:
    """The batch and the real-time price of one call with this usage (``input_tokens`` includes the cache
    reads and writes, as in :meth:`ModelConfig.cost_usd`)."""
    def cost(batch: bool) -> float:
        return model.cost_usd(input_tokens, output_tokens, cache_read_tokens=cache_read_tokens,
                              cache_write_tokens=cache_write_tokens, batch=batch)

    return BatchItemCost(cost(True), cost(False))


def record_batch_item_cost(model: ModelConfig, *, provider: str, model_name: str, capability: str,
                           input_tokens: int, output_tokens: int, cache_read_tokens: int = 0,
                           cache_write_tokens: int = 0) -> float:
    """Count one batch-served attempt whose result completed its job: its tokens and its spend at the batch
    price (``toolbag_tokens_total``, ``toolbag_cost_usd_total``, as the real-time runner counts a successful
    call), and the saving against the real-time price (``toolbag_vendor_batch_saved_usd_total``). Returns the
    batch cost in USD, the figure the attempt and the job record hold. Call it once per completed job, after
    the fenced completion succeeded (a dropped result: :func:`record_result_dropped`)."""
    price = batch_item_cost(model, input_tokens, output_tokens, cache_read_tokens=cache_read_tokens,
                            cache_write_tokens=cache_write_tokens)
    metrics.TOKENS.labels(provider, model_name, "input").inc(input_tokens)
    metrics.TOKENS.labels(provider, model_name, "output").inc(output_tokens)
    metrics.TOKENS.labels(provider, model_name, "cached").inc(cache_read_tokens)
    metrics.COST.labels(provider, model_name, capability).inc(price.batch_usd)
    metrics.VENDOR_BATCH_SAVED.labels(provider, model_name, capability).inc(price.saved_usd)
    return price.batch_usd


def record_batch_submitted(provider: str, model_name: str, items: int) -> None:
    """A vendor batch of ``items`` attempts was created."""
    metrics.VENDOR_BATCHES_SUBMITTED.labels(provider, model_name).inc()
    metrics.VENDOR_BATCH_ITEMS.labels(provider, model_name).inc(items)


def record_batch_ended(provider: str, ending: str, age_s: float) -> None:
    """A vendor batch ended (``ending``: a :class:`toolbag.providers.batch.BatchEnding` value, or ``stuck``
    when the fleet gave up on it) ``age_s`` after its submission."""
    metrics.VENDOR_BATCH_DURATION.labels(provider, ending).observe(max(0.0, age_s))


def record_result_dropped(provider: str, count: int = 1) -> None:
    """Results of a vendor batch whose jobs had moved on (the fenced completion refused them)."""
    metrics.VENDOR_BATCH_DROPPED.labels(provider).inc(count)


def record_open_batches(provider: str, ages_s: Iterable[float]) -> None:
    """The poller's view of one provider's open batches: how many, and the oldest one's age (0: none)."""
    ages = list(ages_s)
    metrics.VENDOR_BATCHES_OPEN.labels(provider).set(len(ages))
    metrics.VENDOR_BATCH_OLDEST_AGE.labels(provider).set(max(ages, default=0.0))
