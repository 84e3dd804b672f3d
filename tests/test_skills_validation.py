"""Each kind of broken skill gets a plain-words problem naming the file, the place, and a fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from toolbag.skills import Problem, SkillLoadError, load_skill, validate_skill_dir

REPO = Path(__file__).resolve().parent.parent
SUMMARIZE = REPO / "skills" / "summarize"


@pytest.fixture
def skill(tmp_path: Path) -> Path:
    """A fresh copy of skills/summarize, to break."""
    target = tmp_path / "summarize"
    shutil.copytree(SUMMARIZE, target)
    return target


def edit(folder: Path, name: str, old: str, new: str) -> None:
    file = folder / name
    text = file.read_text(encoding="utf-8")
    assert old in text, f"test setup: {old!r} not in {name}"
    file.write_text(text.replace(old, new, 1), encoding="utf-8")


def line_number(folder: Path, name: str, needle: str) -> int:
    for number, line in enumerate((folder / name).read_text(encoding="utf-8").splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {name}")


def only(problems: list[Problem], file: str, containing: str) -> Problem:
    """The single problem in ``file`` whose message contains ``containing``."""
    found = [p for p in problems if p.file.endswith(file) and containing in p.message]
    assert len(found) == 1, f"expected one {containing!r} problem in {file}, got:\n" + "\n".join(map(str, problems))
    return found[0]


def test_the_copy_is_valid(skill: Path) -> None:
    assert validate_skill_dir(skill) == []


# ---------------------------------------------------------------------------------------------- SKILL.md


def test_unknown_top_level_key_says_move_it_under_metadata(skill: Path) -> None:
    edit(skill, "SKILL.md", "license: Apache-2.0\n", "license: Apache-2.0\nversion: 1.0.0\n")
    problems = validate_skill_dir(skill)
    problem = only(problems, "SKILL.md", "'version' is not allowed at the top of the frontmatter")
    assert problem.location.startswith(f"line {line_number(skill, 'SKILL.md', 'version: 1.0.0')}")
    assert "toolbag.version" in problem.fix and "metadata" in problem.fix
    with pytest.raises(SkillLoadError) as caught:
        load_skill(skill)
    assert "'version' is not allowed" in str(caught.value)


def test_name_differs_from_folder(skill: Path) -> None:
    edit(skill, "SKILL.md", "name: summarize", "name: summarise")
    problem = only(validate_skill_dir(skill), "SKILL.md", "is not the same as the folder name")
    assert problem.location == "line 2, name"
    assert "summarise" in problem.fix and "summarize" in problem.fix


def test_uppercase_name(tmp_path: Path) -> None:
    folder = tmp_path / "Summarize"
    shutil.copytree(SUMMARIZE, folder)
    edit(folder, "SKILL.md", "name: summarize", "name: Summarize")
    problem = only(validate_skill_dir(folder), "SKILL.md", "must be lowercase")
    assert problem.location == "line 2, name"


def test_flow_style_metadata_is_explained(skill: Path) -> None:
    edit(
        skill,
        "SKILL.md",
        'metadata:\n  toolbag.version: "1.0.1"\n  toolbag.capability: summarize\n  toolbag.tier: standard',
        'metadata: {toolbag.version: "1.0.1", toolbag.capability: summarize}',
    )
    problem = only(validate_skill_dir(skill), "SKILL.md", "not valid strict YAML")
    assert "braces" in problem.message
    assert problem.location == f"line {line_number(skill, 'SKILL.md', 'metadata: {')}, frontmatter"
    assert "one `key: value` per line" in problem.fix


def test_unquoted_colon_in_description(skill: Path) -> None:
    edit(skill, "SKILL.md", "description: Summarizes", "description: Use when: Summarizes")
    problem = only(validate_skill_dir(skill), "SKILL.md", "not valid strict YAML")
    assert "colon followed by a space" in problem.message
    assert problem.location == "line 3, frontmatter"


def test_no_frontmatter(skill: Path) -> None:
    text = (skill / "SKILL.md").read_text(encoding="utf-8")
    (skill / "SKILL.md").write_text("# Summarize\n" + text.split("---", 2)[2], encoding="utf-8")
    problems = validate_skill_dir(skill)
    problem = only(problems, "SKILL.md", "must start with a line of three dashes")
    assert problem.location == "line 1"
    assert len(problems) == 1  # the reference validator's duplicate of the same problem is not repeated


def test_missing_required_toolbag_field_and_typo(skill: Path) -> None:
    edit(skill, "SKILL.md", "toolbag.capability: summarize", "toolbag.capabilty: summarize")
    problems = validate_skill_dir(skill)
    typo = only(problems, "SKILL.md", "'toolbag.capabilty' is not a toolbag field")
    assert "did you mean 'toolbag.capability'" in typo.message
    assert typo.location.startswith(f"line {line_number(skill, 'SKILL.md', 'toolbag.capabilty')}")
    missing = only(problems, "SKILL.md", "metadata has no toolbag.capability")
    assert "toolbag.capability" in missing.fix


def test_bad_version_tier_tokens_and_route_hints(skill: Path) -> None:
    edit(skill, "SKILL.md", 'toolbag.version: "1.0.1"', 'toolbag.version: "1.0"')
    edit(skill, "SKILL.md", "toolbag.tier: standard", "toolbag.tier: standrd")
    edit(
        skill,
        "SKILL.md",
        "toolbag.tier: standrd",
        'toolbag.tier: standrd\n  toolbag.max-output-tokens: "lots"\n'
        '  toolbag.route-hints: "prefer=anthropic mincontext=5"',
    )
    problems = validate_skill_dir(skill)
    version = only(problems, "SKILL.md", "is not a semantic version")
    assert version.location.startswith(f"line {line_number(skill, 'SKILL.md', 'toolbag.version')}")
    assert "1.0.0" in version.fix
    tier = only(problems, "SKILL.md", "'standrd' is not a tier")
    assert "did you mean 'standard'" in tier.message
    only(problems, "SKILL.md", "toolbag.max-output-tokens 'lots' is not a whole number")
    hint = only(problems, "SKILL.md", "'mincontext' is not a route hint")
    assert "did you mean 'min-context'" in hint.message


def test_capability_must_have_a_route_when_the_config_is_given(skill: Path) -> None:
    edit(skill, "SKILL.md", "toolbag.capability: summarize", "toolbag.capability: sumarize")
    assert validate_skill_dir(skill) == []  # without a config, any well-formed name is accepted
    problem = only(
        validate_skill_dir(skill, capabilities=["summarize", "extract"]), "SKILL.md", "has no route in toolbag.yaml"
    )
    assert "did you mean 'summarize'" in problem.message
    assert "extract" in problem.fix


def test_route_hint_targets_are_checked_against_the_config(skill: Path) -> None:
    edit(
        skill, "SKILL.md", "toolbag.tier: standard", 'toolbag.tier: standard\n  toolbag.route-hints: "prefer=antropic"'
    )
    problem = only(
        validate_skill_dir(skill, route_targets=["anthropic", "openai", "claude-haiku"]),
        "SKILL.md",
        "neither a provider nor a model",
    )
    assert "did you mean 'anthropic'" in problem.message


def test_missing_files(skill: Path) -> None:
    (skill / "schema.json").unlink()
    (skill / "evals.yaml").unlink()
    problems = validate_skill_dir(skill)
    only(problems, "schema.json", "has no schema.json")
    only(problems, "evals.yaml", "has no evals.yaml")
    (skill / "SKILL.md").rename(skill / "skill.md")
    assert "Rename it to SKILL.md" in only(validate_skill_dir(skill), "skill.md", "named skill.md").fix


# ---------------------------------------------------------------------------------------------- the body


def test_placeholder_that_is_not_an_input_field(skill: Path) -> None:
    edit(skill, "SKILL.md", "at most {{ max_words }} words", "at most {{ max_word }} words")
    problems = validate_skill_dir(skill)
    problem = only(problems, "SKILL.md", "{{ max_word }} is not an input field")
    assert "did you mean 'max_words'" in problem.message
    assert problem.location == f"line {line_number(skill, 'SKILL.md', '{{ max_word }}')}"
    assert "audience, max_words, text" in problem.fix
    # ... so max_words is no longer shown anywhere
    only(problems, "SKILL.md", "'max_words' never reaches the model")


def test_unclosed_placeholder(skill: Path) -> None:
    edit(skill, "SKILL.md", "summaries for {{ audience }} who", "summaries for {{ audience who")
    problems = validate_skill_dir(skill)
    problem = only(problems, "SKILL.md", "not part of a placeholder")
    assert problem.location == f"line {line_number(skill, 'SKILL.md', '{{ audience who')}"


def test_placeholder_with_spaces_in_the_name(skill: Path) -> None:
    edit(skill, "SKILL.md", "{{ max_words }}", "{{ max words }}")
    only(validate_skill_dir(skill), "SKILL.md", "{{ max words }} is not a placeholder name")


def test_empty_input_section(skill: Path) -> None:
    text = (skill / "SKILL.md").read_text(encoding="utf-8")
    (skill / "SKILL.md").write_text(text.split("## Input")[0] + "## Input\n\n", encoding="utf-8")
    only(validate_skill_dir(skill), "SKILL.md", "the `## Input` section is empty")


# ---------------------------------------------------------------------------------------------- schema.json


def test_schema_json_syntax_error_has_line_and_column(skill: Path) -> None:
    edit(skill, "schema.json", '"required": ["text"],', '"required": ["text"],,')
    problem = only(validate_skill_dir(skill), "schema.json", "not valid JSON")
    line = line_number(skill, "schema.json", '["text"],,')
    assert problem.location.startswith(f"line {line}, column ")
    assert "comma" in problem.fix


def test_misspelt_schema_keyword(skill: Path) -> None:
    edit(skill, "schema.json", '"required": ["text"],', '"requried": ["text"],')
    problem = only(validate_skill_dir(skill), "schema.json", "'requried' is not a JSON Schema keyword")
    assert "did you mean 'required'" in problem.message
    assert problem.location == "input.requried"


def test_bad_type_and_nullable(skill: Path) -> None:
    edit(skill, "schema.json", '"max_words": {"type": "integer"', '"max_words": {"type": "int"')
    edit(skill, "schema.json", '"summary": {"type": "string",', '"summary": {"type": "string", "nullable": true,')
    problems = validate_skill_dir(skill)
    assert only(problems, "schema.json", "'int' is not a JSON Schema type").location == (
        "input.properties.max_words.type"
    )
    nullable = only(problems, "schema.json", "'nullable' is not a JSON Schema keyword")
    assert '["string", "null"]' in nullable.fix


def test_required_name_that_is_not_a_property(skill: Path) -> None:
    edit(skill, "schema.json", '"required": ["text"],', '"required": ["txt"],')
    problem = only(validate_skill_dir(skill), "schema.json", "'txt' is required but is not one of the properties")
    assert "did you mean 'text'" in problem.message


def test_output_schema_must_fit_every_vendors_strict_mode(skill: Path) -> None:
    edit(skill, "schema.json", '"required": ["summary", "key_points"]', '"required": ["summary"]')
    edit(skill, "schema.json", '"summary": {"type": "string",', '"summary": {"type": "string", "maxLength": 400,')
    problems = validate_skill_dir(skill)
    required = only(problems, "schema.json", 'every property must be listed in "required"; missing: key_points')
    assert required.location == "output.required"
    assert "null" in required.fix
    keyword = only(problems, "schema.json", "'maxLength' cannot be used in an output schema")
    assert keyword.location == "output.properties.summary.maxLength"
    assert "description" in keyword.fix


def test_open_output_object(skill: Path) -> None:
    schema = (skill / "schema.json").read_text(encoding="utf-8")
    head, output = schema.split('"output"')
    (skill / "schema.json").write_text(
        head + '"output"' + output.replace('"additionalProperties": false', '"additionalProperties": true'),
        encoding="utf-8",
    )
    problem = only(validate_skill_dir(skill), "schema.json", '"additionalProperties": false')
    assert problem.location == "output"


def test_input_schema_must_be_closed(skill: Path) -> None:
    edit(skill, "schema.json", '"additionalProperties": false', '"additionalProperties": true')
    problem = only(validate_skill_dir(skill), "schema.json", "misspelt field name")
    assert problem.location == "input"


# ---------------------------------------------------------------------------------------------- evals.yaml


def test_eval_input_that_breaks_the_input_schema(skill: Path) -> None:
    edit(skill, "evals.yaml", "max_words: 50\n    checks:", "max_words: 5\n    checks:")
    problem = only(validate_skill_dir(skill), "evals.yaml", "input.max_words: 5 is less than the minimum of 10")
    assert problem.location == f"line {line_number(skill, 'evals.yaml', 'max_words: 5')}, case 'meeting-notes'"


def test_check_on_a_field_the_output_does_not_have(skill: Path) -> None:
    edit(
        skill,
        "evals.yaml",
        "      - field: summary\n        contains: Kubernetes",
        "      - field: sumary\n        contains: Kubernetes",
    )
    problem = only(validate_skill_dir(skill), "evals.yaml", "field 'sumary' is not in the output schema")
    assert "did you mean 'summary'" in problem.message
    assert problem.location.startswith(f"line {line_number(skill, 'evals.yaml', 'field: sumary')}")


def test_check_that_can_never_pass(tmp_path: Path) -> None:
    folder = tmp_path / "sentiment"
    shutil.copytree(REPO / "skills" / "sentiment", folder)
    edit(folder, "evals.yaml", "equals: positive", "equals: postive")
    problem = only(validate_skill_dir(folder), "evals.yaml", "this check can never pass")
    assert "'postive' is not one of the allowed values" in problem.message


def test_unknown_check_kind_and_two_kinds_in_one(skill: Path) -> None:
    edit(skill, "evals.yaml", "        max_words: 50\n", "        max_word: 50\n")
    edit(skill, "evals.yaml", "        contains: Friday\n", "        contains: Friday\n        max_words: 3\n")
    problems = validate_skill_dir(skill)
    assert "did you mean 'max_words'" in only(problems, "evals.yaml", "'max_word' is not a kind of check").message
    only(problems, "evals.yaml", "a check needs exactly one kind, this one has 2")


def test_too_few_cases_duplicate_ids_and_keys(skill: Path) -> None:
    text = (skill / "evals.yaml").read_text(encoding="utf-8")
    head, _rest = text.split("  - id: injected-instruction")
    head = head.replace("  - id: tiny-text", "  - id: meeting-notes")
    head = head.replace("    input:\n      text: The office", "    input:\n      text: a\n      text: The office")
    (skill / "evals.yaml").write_text(head, encoding="utf-8")
    problems = validate_skill_dir(skill)
    assert "at least 3" in only(problems, "evals.yaml", "there are 2 case(s)").message
    only(problems, "evals.yaml", "two cases have the id 'meeting-notes'")
    duplicate = only(problems, "evals.yaml", "'text' appears twice")
    assert duplicate.location.startswith(f"line {line_number(skill, 'evals.yaml', 'text: The office')}")


def test_yaml_syntax_error_has_the_line(skill: Path) -> None:
    edit(skill, "evals.yaml", "  - id: injected-instruction\n", "  - id: injected-instruction\n   bad: indent\n")
    problem = only(validate_skill_dir(skill), "evals.yaml", "not valid YAML")
    assert problem.location.startswith("line ")
    assert "indentation" in problem.fix


def test_yaml_dates_and_no_stay_text(skill: Path) -> None:
    """``2024-03-01`` and ``no`` in an eval input are text, as a non-programmer expects, not a date and false."""
    edit(skill, "evals.yaml", "text: The office is closed on Friday.", "text: 2024-03-01")
    edit(skill, "evals.yaml", "audience: an investor", "audience: no")
    assert validate_skill_dir(skill) == []
    skill_obj = load_skill(skill)
    assert skill_obj.case("tiny-text").input["text"] == "2024-03-01"
    assert skill_obj.case("injected-instruction").input["audience"] == "no"


def test_example_that_breaks_the_output_schema(tmp_path: Path) -> None:
    folder = tmp_path / "triage-ticket"
    shutil.copytree(REPO / "skills" / "triage-ticket", folder)
    edit(folder, "evals.yaml", "      priority: p3\n", "      priority: urgent\n")
    problem = only(validate_skill_dir(folder), "evals.yaml", "the example's output does not fit schema.json")
    assert "output.priority: 'urgent' is not one of the allowed values" in problem.message
    assert problem.location.startswith(f"line {line_number(folder, 'evals.yaml', 'priority: urgent')}")


def test_problem_text_reads_as_one_sentence_with_a_fix(skill: Path) -> None:
    edit(skill, "SKILL.md", "name: summarize", "name: summarise")
    text = str(only(validate_skill_dir(skill), "SKILL.md", "folder name"))
    assert text.startswith(str(skill / "SKILL.md") + ", line 2, name: the name 'summarise'")
    assert "\n    fix: Make them the same" in text
