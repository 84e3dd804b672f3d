"""What a call is expected to cost before it is made: the fleet's input-token estimate (deliberately high)
and the most the model may write, at the model's prices."""

from __future__ import annotations

from collections.abc import Sequence

from toolbag.attempt.tokens import estimate_input_tokens
from toolbag.config import Config
from toolbag.providers.base import ModelRequest


def call_cost_usd(config: Config, model: str, request: ModelRequest) -> float:
    """The most one call of ``request`` on ``model`` should cost: estimated input plus the output cap."""
    prices = config.models[model]
    return prices.cost_usd(estimate_input_tokens(request), min(request.max_output_tokens, prices.max_output_tokens))


def reservation_usd(config: Config, plan: Sequence[str], request: ModelRequest) -> float:
    """What a job reserves against its budgets: one call on the dearest model of its plan."""
    return max((call_cost_usd(config, model, request) for model in plan), default=0.0)
