"""A cost estimate for a batch before it runs: tokens from text length, prices of the chosen model.

Input tokens are the fleet's one estimate (``toolbag.attempt.tokens``, deliberately high) of the request a
worker would send; output tokens are the job's output cap (the skill's ``max-output-tokens``) unless the
caller gives a typical size. It is an estimate, labelled as one.

It is priced both ways: every job on a real-time call, and every job on the path the fleet would give it
(:func:`toolbag.routing.vendorbatch.vendor_batch_eligible`: a vendor batch at the model's batch price where
the job qualifies, real time otherwise).
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
    """The estimated part of one model (the first candidate a line was routed to). ``batch_jobs`` of them
    would go through the vendor's batch API; ``batch_*_usd`` price them all on the fleet's path."""

    jobs: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    input_usd: float = 0.0
    output_usd: float = 0.0
    batch_jobs: int = 0
    batch_input_usd: float = 0.0
    batch_output_usd: float = 0.0


@dataclass
class Estimate:
    """Estimated tokens and cost of the jobs a run would submit. ``output_is_cap`` says the output figure is
    the per-job cap (an upper bound), not a typical size given by the caller. ``input_usd``, ``output_usd`` and
    ``total_usd`` are all real time; ``path_*_usd`` are on the path each job would take (vendor batch or
    real time)."""

    output_is_cap: bool = True
    by_model: dict[str, ModelShare] = field(default_factory=dict)

    def add(self, config: Config, model: str, request: ModelRequest, output_tokens: int | None,
            vendor_batch: bool = False) -> None:
        """Price one job on ``model``; ``vendor_batch``: the fleet would send it through a vendor batch."""
        share = self.by_model.setdefault(model, ModelShare())
        prices = config.models[model]
        in_tok = estimate_input_tokens(request)
        out_tok = output_tokens if output_tokens is not None else min(request.max_output_tokens,
                                                                      prices.max_output_tokens)
        share.jobs += 1
        share.input_tokens += in_tok
        share.output_tokens += out_tok
        real_in, real_out = prices.cost_usd(in_tok, 0), prices.cost_usd(0, out_tok)
        share.input_usd += real_in
        share.output_usd += real_out
        if vendor_batch:
            share.batch_jobs += 1
            share.batch_input_usd += prices.cost_usd(in_tok, 0, batch=True)
            share.batch_output_usd += prices.cost_usd(0, out_tok, batch=True)
        else:
            share.batch_input_usd += real_in
            share.batch_output_usd += real_out

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

    @property
    def vendor_batch_jobs(self) -> int:
        return sum(s.batch_jobs for s in self.by_model.values())

    @property
    def path_input_usd(self) -> float:
        return sum(s.batch_input_usd for s in self.by_model.values())

    @property
    def path_output_usd(self) -> float:
        return sum(s.batch_output_usd for s in self.by_model.values())

    @property
    def path_total_usd(self) -> float:
        return self.path_input_usd + self.path_output_usd

    @property
    def saving_usd(self) -> float:
        """What vendor batches save against every job on a real-time call."""
        return self.total_usd - self.path_total_usd

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
            "vendor_batch": {
                "jobs": self.vendor_batch_jobs,
                "input_usd": round(self.path_input_usd, 6),
                "output_usd": round(self.path_output_usd, 6),
                "total_usd": round(self.path_total_usd, 6),
                "saving_usd": round(self.saving_usd, 6),
            },
            "by_model": {m: s.__dict__ | {k: round(v, 6) for k, v in s.__dict__.items() if isinstance(v, float)}
                         for m, s in self.by_model.items()},
        }
