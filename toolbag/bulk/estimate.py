"""A cost estimate for a batch before it runs: tokens from text length, prices of the chosen model.

Input tokens are the fleet's one estimate (``toolbag.attempt.tokens``, deliberately high) of the request a
worker would send; output tokens are the job's output cap (the skill's ``max-output-tokens``) unless the
caller gives a typical size. It is an estimate, labelled as one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from toolbag.attempt.request import build_request
from toolbag.attempt.tokens import estimate_input_tokens
from toolbag.config import Config
from toolbag.providers.base import ModelRequest

if TYPE_CHECKING:
    from toolbag.skills.model import Skill


def request_for(config: Config, skill: Skill | None, capability: str, model: str, job_input: Any) -> ModelRequest:
    """The request the first attempt would send (built as the worker builds it)."""
    return build_request(config, capability=capability, tier="batch", model=model, job_input=job_input, skill=skill)


@dataclass
class ModelShare:
    """The estimated part of one model (the first candidate a line was routed to)."""

    jobs: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    input_usd: float = 0.0
    output_usd: float = 0.0


@dataclass
class Estimate:
    """Estimated tokens and cost of the jobs a run would submit. ``output_is_cap`` says the output figure is
    the per-job cap (an upper bound), not a typical size given by the caller."""

    output_is_cap: bool = True
    by_model: dict[str, ModelShare] = field(default_factory=dict)

    def add(self, config: Config, model: str, request: ModelRequest, output_tokens: int | None) -> None:
        share = self.by_model.setdefault(model, ModelShare())
        prices = config.models[model]
        in_tok = estimate_input_tokens(request)
        out_tok = output_tokens if output_tokens is not None else min(request.max_output_tokens,
                                                                      prices.max_output_tokens)
        share.jobs += 1
        share.input_tokens += in_tok
        share.output_tokens += out_tok
        share.input_usd += prices.cost_usd(in_tok, 0)
        share.output_usd += prices.cost_usd(0, out_tok)

    @property
    def jobs(self) -> int:
        return sum(s.jobs for s in self.by_model.values())

    @property
    def input_tokens(self) -> int:
        return sum(s.input_tokens for s in self.by_model.values())

    @property
    def output_tokens(self) -> int:
        return sum(s.output_tokens for s in self.by_model.values())

    @property
    def input_usd(self) -> float:
        return sum(s.input_usd for s in self.by_model.values())

    @property
    def output_usd(self) -> float:
        return sum(s.output_usd for s in self.by_model.values())

    @property
    def total_usd(self) -> float:
        return self.input_usd + self.output_usd

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimate": True,
            "jobs": self.jobs,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "output_tokens_are_cap": self.output_is_cap,
            "input_usd": round(self.input_usd, 6),
            "output_usd": round(self.output_usd, 6),
            "total_usd": round(self.total_usd, 6),
            "by_model": {m: s.__dict__ | {"input_usd": round(s.input_usd, 6), "output_usd": round(s.output_usd, 6)}
                         for m, s in self.by_model.items()},
        }
