"""Every skill's eval cases, rendered and sent through each vendor's real SDK to the simulator: the native
structured output comes back, passes the output schema, and passes every structural (non-semantic) check."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from toolbag.config import DEFAULT_CONFIG_PATH, Config, parse_config
from toolbag.providers.base import Adapter
from toolbag.providers.registry import build_adapter
from toolbag.simulator.server import SimulatorServer
from toolbag.skills import SkillLibrary, accept_output, check_case, render

SKILLS = Path(__file__).resolve().parent.parent / "skills"
VENDORS = ["anthropic", "openai", "gemini"]


@pytest.fixture(scope="module")
def config() -> Iterator[Config]:
    with SimulatorServer() as sim:
        data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))
        data.update(dev=True, simulator_url=sim.url)
        yield parse_config(data)


@pytest.fixture(scope="module", params=VENDORS)
def vendor(request: pytest.FixtureRequest, config: Config) -> Iterator[tuple[str, Adapter, str]]:
    name = request.param
    adapter = build_adapter(name, config, environ={})  # no keys: the simulator
    model = next(m.model_id for m in config.models.values() if m.provider == name)
    yield name, adapter, model
    adapter.close()


def test_every_case_of_every_skill_passes_its_structural_checks(vendor: tuple[str, Adapter, str]) -> None:
    name, adapter, model = vendor
    library = SkillLibrary(SKILLS)
    ran = 0
    for skill_name in library.names():
        skill = library.get(skill_name)
        for case in skill.evals:
            response = adapter.call(model, render(skill, case.input))
            output = accept_output(skill, response)
            assert check_case(skill, case, output, semantic=False) == [], f"{name} {skill_name}/{case.id}"
            ran += 1
    assert ran >= 36


def test_a_retry_with_feedback_is_a_valid_request(vendor: tuple[str, Adapter, str]) -> None:
    _name, adapter, model = vendor
    skill = SkillLibrary(SKILLS).get("extract-invoice")
    request = render(skill, skill.evals[0].input, feedback="output.total: should be a number, got the string '1,0'")
    assert accept_output(skill, adapter.call(model, request))["line_items"] is not None
