"""What each vendor receives for a skill: the request ``toolbag skills render NAME --provider all --case C``
prints, per provider, for one of the skill's eval cases (same renderer, same adapters, same model choice)."""

from __future__ import annotations

from dataclasses import dataclass

from toolbag.config import Config, ConfigError
from toolbag.skills import Skill, SkillError, canonical_json, render
from toolbag.skills.cli import _wire


@dataclass(frozen=True)
class VendorView:
    provider: str
    model: str
    model_id: str
    body: str  # canonical JSON, as the CLI prints it
    error: str = ""


def _model_for(config: Config, skill: Skill, provider: str) -> str | None:
    """The route's first candidate on ``provider`` for the skill's tier, else the provider's first model."""
    if skill.capability in config.routes:
        for candidate in config.route(skill.capability, skill.default_tier).candidates:
            if config.provider_of(candidate) == provider:
                return candidate
    return next((name for name, entry in config.models.items() if entry.provider == provider), None)


def vendor_views(config: Config, skill: Skill, case_id: str | None) -> tuple[str, list[VendorView]]:
    """The case used and every provider's request for it (an error in place of a request that cannot be
    rendered)."""
    if not skill.evals:
        return "", []
    case = next((c for c in skill.evals if c.id == case_id), skill.evals[0])
    try:
        request = render(skill, dict(case.input))
    except SkillError as err:
        return case.id, [VendorView(p, "", "", "", str(err)) for p in sorted(config.providers)]
    out = []
    for provider in sorted(config.providers):
        model = _model_for(config, skill, provider)
        if model is None:
            out.append(VendorView(provider, "", "", "", "no model of this provider in the config"))
            continue
        try:
            body = canonical_json(_wire(config, provider, model, request), pretty=True)
        except ConfigError as err:
            out.append(VendorView(provider, model, config.models[model].model_id, "", str(err)))
            continue
        out.append(VendorView(provider, model, config.models[model].model_id, body))
    return case.id, out
