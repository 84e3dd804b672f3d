"""Jobs by skill through the real fleet: structured output on every vendor, and every skill's evals."""

from __future__ import annotations

from collections.abc import Iterator

import jsonschema
import pytest

from tests.fleet import Fleet, running_fleet
from toolbag.jobs import SubmitError
from toolbag.skills import SkillLibrary
from toolbag.skills.fleet_evals import run_evals

PROVIDERS = ("anthropic", "openai", "gemini")


@pytest.fixture(scope="module")
def fleet(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(redis_server, tmp_path_factory.mktemp("skills"), providers=PROVIDERS,
                       concurrency=40) as f:
        yield f


@pytest.mark.parametrize("provider", PROVIDERS)
def test_skill_job_returns_schema_valid_structured_output(fleet: Fleet, provider: str) -> None:
    skills = SkillLibrary()
    skill = skills.get("extract-invoice")
    model = {"anthropic": "claude-haiku", "openai": "gpt-luna", "gemini": "gemini-flash"}[provider]
    case = skill.evals[0]
    result = fleet.client.submit(skill="extract-invoice", input=dict(case.input), candidates=(model,)).result(30)
    assert result.ok and result.provider == provider, result
    assert isinstance(result.output, dict)
    jsonschema.validate(result.output, skill.output_schema)
    assert result.skill == "extract-invoice" and result.skill_hash == skill.content_hash
    assert result.capability == skill.capability


def test_skill_input_is_validated_at_submit_naming_the_field(fleet: Fleet) -> None:
    with pytest.raises(SubmitError) as caught:
        fleet.client.submit(skill="extract-invoice", input={"not_the_field": 1})
    assert "input" in caught.value.field and caught.value.reason


def test_every_skill_passes_its_evals_on_every_simulated_vendor(fleet: Fleet) -> None:
    names = SkillLibrary().names()
    assert len(names) >= 12
    results = run_evals(fleet.client, names, PROVIDERS, semantic=False)
    failures = [r for r in results if not r.passed]
    assert not failures, failures[:5]
    assert {r.provider for r in results} == set(PROVIDERS)
    assert len(results) >= 12 * 3 * 3
