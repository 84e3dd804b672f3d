"""The starter library in skills/: every skill passes both validators and is portable across vendors;
and the SkillLibrary loader (lazy, cached, reloads edited skills)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from toolbag.config import DEFAULT_CONFIG_PATH, load_config
from toolbag.providers.structured import openai_strict_schema
from toolbag.skills import SkillLibrary, SkillLoadError, SkillNotFound, default_skills_dir, validate_skill_dir
from toolbag.skills.evals_file import MIN_EVAL_CASES

REPO = Path(__file__).resolve().parent.parent
SKILLS = REPO / "skills"
NAMES = sorted(p.name for p in SKILLS.iterdir() if p.is_dir())
ISSUE_SKILLS = {
    "summarize", "classify", "extract-entities", "extract-invoice", "translate", "sentiment", "redact-pii",
    "title", "triage-ticket", "sql-from-question", "code-review", "answer-with-citations",
}  # fmt: skip
AGENTSKILLS = Path(sys.executable).parent / "agentskills"


def test_the_library_has_the_skills_the_issue_asks_for() -> None:
    assert set(NAMES) >= ISSUE_SKILLS
    assert len(NAMES) >= 12
    assert SkillLibrary(SKILLS).names() == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_skill_passes_toolbag_validation_with_the_default_config(name: str) -> None:
    config = load_config(DEFAULT_CONFIG_PATH)
    targets = [*config.providers, *config.models]
    assert validate_skill_dir(SKILLS / name, capabilities=list(config.routes), route_targets=targets) == []


@pytest.mark.parametrize("name", NAMES)
def test_skill_passes_the_reference_validator_cli(name: str) -> None:
    """The strict reference validator (PyPI skills-ref, command `agentskills`), run as a user would."""
    result = subprocess.run(
        [str(AGENTSKILLS), "validate", str(SKILLS / name)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"Valid skill: {SKILLS / name}"


@pytest.mark.parametrize("name", NAMES)
def test_skill_is_complete_and_strict_mode_ready(name: str) -> None:
    skill = SkillLibrary(SKILLS).get(name)
    assert len(skill.evals) >= MIN_EVAL_CASES
    assert all(any(not c.semantic for c in case.checks) for case in skill.evals)  # the simulator checks something
    assert any(c.semantic for case in skill.evals for c in case.checks)  # and real vendors check content
    # OpenAI's strict-mode converter (the adapter's) finds nothing to change: the schema is strict as written.
    assert openai_strict_schema(dict(skill.output_schema)) == skill.output_schema
    assert skill.description and skill.license == "Apache-2.0"


def test_the_reference_validator_rejects_what_toolbag_rejects(tmp_path: Path) -> None:
    """Sanity check on the CLI test above: the command does fail on a bad skill."""
    folder = tmp_path / "summarize"
    shutil.copytree(SKILLS / "summarize", folder)
    text = (folder / "SKILL.md").read_text(encoding="utf-8")
    (folder / "SKILL.md").write_text(text.replace("license:", "version: 1\nlicense:"), encoding="utf-8")
    result = subprocess.run([str(AGENTSKILLS), "validate", str(folder)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Unexpected fields in frontmatter: version" in result.stderr


# ---------------------------------------------------------------------------------------------- the loader


def test_get_caches_and_reloads_an_edited_skill(tmp_path: Path) -> None:
    shutil.copytree(SKILLS / "title", tmp_path / "title")
    library = SkillLibrary(tmp_path)
    first = library.get("title")
    assert library.get("title") is first
    skill_md = tmp_path / "title" / "SKILL.md"
    skill_md.write_text(skill_md.read_text(encoding="utf-8").replace("one title", "one short title"), encoding="utf-8")
    second = library.get("title")
    assert second is not first
    assert second.content_hash != first.content_hash
    assert "one short title" in second.system_template


def test_a_skill_broken_after_loading_is_reported(tmp_path: Path) -> None:
    shutil.copytree(SKILLS / "title", tmp_path / "title")
    library = SkillLibrary(tmp_path)
    library.get("title")
    (tmp_path / "title" / "schema.json").write_text("{", encoding="utf-8")
    with pytest.raises(SkillLoadError) as caught:
        library.get("title")
    assert caught.value.problems[0].file.endswith("schema.json")
    assert "not valid JSON" in str(caught.value)


def test_unknown_names_and_paths_are_not_found(tmp_path: Path) -> None:
    shutil.copytree(SKILLS / "title", tmp_path / "lib" / "title")
    (tmp_path / "lib" / "empty-folder").mkdir()
    library = SkillLibrary(tmp_path / "lib")
    assert library.names() == ["title"]
    for name in ("nope", "../lib/title", "empty-folder", ""):
        with pytest.raises(SkillNotFound) as caught:
            library.get(name)
        assert "known: title" in str(caught.value)
    with pytest.raises(KeyError):  # the client catches KeyError
        library.get("nope")
    assert "title" in library and "nope" not in library
    assert SkillLibrary(tmp_path / "missing").names() == []


def test_default_root_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TOOLBAG_SKILLS_DIR", raising=False)
    assert default_skills_dir() == Path("skills")
    monkeypatch.setenv("TOOLBAG_SKILLS_DIR", str(tmp_path))
    assert default_skills_dir() == tmp_path
    assert SkillLibrary().root == tmp_path


def test_skill_fields(tmp_path: Path) -> None:
    skill = SkillLibrary(SKILLS).get("code-review")
    assert (skill.name, skill.version, skill.capability, skill.default_tier) == (
        "code-review", "1.0.0", "code-review", "standard",
    )  # fmt: skip
    assert skill.max_output_tokens == 4096
    assert skill.route_hints.min_context_tokens == 32000
    assert skill.required_features == ("json_schema",)
    assert skill.allowed_tools == ()
    assert skill.metadata["toolbag.capability"] == "code-review"
    assert skill.path == SKILLS / "code-review"


def test_allowed_tools_are_read_and_required(tmp_path: Path) -> None:
    folder = tmp_path / "summarize"
    shutil.copytree(SKILLS / "summarize", folder)
    text = (folder / "SKILL.md").read_text(encoding="utf-8")
    (folder / "SKILL.md").write_text(text.replace("license:", "allowed-tools: web.search fs.read\nlicense:"))
    skill = SkillLibrary(tmp_path).get("summarize")
    assert skill.allowed_tools == ("web.search", "fs.read")
    assert skill.required_features == ("json_schema", "tools")
