"""``toolbag eval``: run skills' eval cases through the fleet, per provider, and judge each answer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from toolbag.client import Client, JobRequest
from toolbag.config import Config


@dataclass
class CaseResult:
    skill: str
    provider: str
    model: str
    case: str
    passed: bool
    problems: list[str] = field(default_factory=list)


def model_for(config: Config, provider: str, route_candidates: Sequence[str]) -> str | None:
    """The model a provider uses for an eval: its first candidate in the skill's route, else its first
    configured model with structured output."""
    for name in route_candidates:
        if config.models[name].provider == provider:
            return name
    for name, model in config.models.items():
        if model.provider == provider and model.features.json_schema:
            return name
    return None


def run_evals(
    client: Client, skill_names: Sequence[str], providers: Sequence[str], *, semantic: bool, timeout_s: float = 120
) -> list[CaseResult]:
    """Every case of every skill on every provider, submitted together and judged as they finish."""
    from toolbag.skills import SkillLibrary, check_case, default_skills_dir

    library = client._skills or SkillLibrary(default_skills_dir())
    client._skills = library
    plan: list[tuple[str, str, str, str]] = []
    requests: list[JobRequest] = []
    for name in skill_names:
        skill = library.get(name)
        route = client.config.route(skill.capability, skill.default_tier).candidates
        for provider in providers:
            model = model_for(client.config, provider, route)
            if model is None:
                continue
            for case in skill.evals:
                plan.append((name, provider, model, case.id))
                requests.append(JobRequest(skill=name, input=dict(case.input), caller="toolbag-eval",
                                           candidates=(model,)))
    jobs = client.submit_many(requests)
    out = []
    for (name, provider, model, case_id), result in zip(plan, client.results(jobs, timeout_s), strict=True):
        skill = library.get(name)
        if result.ok:
            problems = check_case(skill, skill.case(case_id), result.output, semantic=semantic)
        else:
            problems = [f"job {result.status.value}: {result.error}"]
        out.append(CaseResult(name, provider, model, case_id, not problems, problems))
    return out
