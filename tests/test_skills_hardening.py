"""A skill's files cannot stall, crash or reach out of the fleet: YAML aliases and deep nesting are refused, patterns
run in linear time, no ``$ref`` is fetched, and one broken SKILL.md leaves the rest of the library usable."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from referencing.exceptions import Unresolvable
from typer.testing import CliRunner

from toolbag.client import Client
from toolbag.config import DEFAULT_CONFIG_PATH, load_config
from toolbag.errors import ToolbagError
from toolbag.skills import Problem, SkillLibrary, load_skill, validate_input, validate_skill_dir
from toolbag.skills.cli import app
from toolbag.skills.contract import parse_output_text, schema_errors
from toolbag.skills.hashing import HASHED_FILES, content_hash, content_hash_of_texts
from toolbag.skills.limits import MAX_FILE_BYTES, MAX_FRONTMATTER_CHARS

SKILLS = Path(__file__).resolve().parent.parent / "skills"
FAST_S = 1.0

BILLION_LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n" for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.fixture
def library(tmp_path: Path) -> Path:
    """A library of two fresh copies, summarize (to break) and title (to stay valid)."""
    for name in ("summarize", "title"):
        shutil.copytree(SKILLS / name, tmp_path / name)
    return tmp_path


@pytest.fixture
def skill(library: Path) -> Path:
    return library / "summarize"


def edit(folder: Path, name: str, old: str, new: str) -> None:
    file = folder / name
    text = file.read_text(encoding="utf-8")
    assert old in text, f"test setup: {old!r} not in {name}"
    file.write_text(text.replace(old, new, 1), encoding="utf-8")


def edit_schema(folder: Path, change: Any) -> None:
    file = folder / "schema.json"
    schema = json.loads(file.read_text(encoding="utf-8"))
    change(schema)
    file.write_text(json.dumps(schema), encoding="utf-8")


def one(problems: list[Problem], file: str, containing: str) -> Problem:
    found = [p for p in problems if p.file.endswith(file) and containing in p.message]
    assert len(found) == 1, f"expected one {containing!r} problem in {file}, got:\n" + "\n".join(map(str, problems))
    return found[0]


def timed(action: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = action()
    return result, time.perf_counter() - start


# ------------------------------------------------------------------------------------------------ YAML


@pytest.mark.timeout(20)
def test_an_evals_alias_bomb_is_refused_at_once(skill: Path) -> None:
    (skill / "evals.yaml").write_text(BILLION_LAUGHS, encoding="utf-8")
    problems, took = timed(lambda: validate_skill_dir(skill))
    assert took < FAST_S
    problem = one(problems, "evals.yaml", "an alias (*name)")
    assert problem.location == "line 2"
    assert "Write the value out in full" in problem.fix


@pytest.mark.timeout(20)
def test_a_merge_key_alias_is_refused_too(skill: Path) -> None:
    edit(skill, "evals.yaml", "cases:\n", "base: &base {max_words: 50}\ncases:\n")
    edit(skill, "evals.yaml", "      max_words: 50\n", "      <<: *base\n")
    one(validate_skill_dir(skill), "evals.yaml", "an alias (*name)")


@pytest.mark.timeout(60)
def test_a_submit_with_an_alias_bomb_skill_returns_at_once(library: Path, redis_url: str) -> None:
    (library / "summarize" / "evals.yaml").write_text(BILLION_LAUGHS, encoding="utf-8")
    client = Client(load_config(), redis_url, skills_root=str(library))
    for _ in range(2):
        start = time.perf_counter()
        with pytest.raises(ToolbagError, match="alias"):
            client.submit(skill="summarize", input={"text": "hello"})
        assert time.perf_counter() - start < FAST_S
    assert client.submit(skill="title", input={"text": "hello"}).id


def test_deeply_nested_evals_are_refused(skill: Path) -> None:
    (skill / "evals.yaml").write_text("cases: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    problem = one(validate_skill_dir(skill), "evals.yaml", "nested more than 64 levels deep")
    assert problem.location == "line 1"


# ------------------------------------------------------------------------------------------------ patterns


@pytest.mark.timeout(30)
def test_a_backtracking_pattern_runs_in_linear_time_at_submit(library: Path, redis_url: str) -> None:
    text_field = '"text": {"type": "string", "minLength": 1,'
    edit(library / "summarize", "schema.json", text_field, '"text": {"type": "string", "pattern": "(a+)+b|.",')
    loaded = load_skill(library / "summarize")
    _, took = timed(lambda: validate_input(loaded, {"text": "a" * 30}))
    assert took < 0.05
    client = Client(load_config(), redis_url, skills_root=str(library))
    assert client.submit(skill="summarize", input={"text": "a" * 30}).id


@pytest.mark.timeout(20)
def test_pattern_properties_run_in_linear_time() -> None:
    schema = {
        "type": "object",
        "patternProperties": {"^(a+)+$": {"type": "string"}},
        "additionalProperties": False,
    }
    errors, took = timed(lambda: schema_errors(schema, {"a" * 30 + "!": "x", "aaa": 1}, "input"))
    assert took < 0.05
    assert errors == [
        "input.aaa: should be a string, got the whole number 1",
        f"input.{'a' * 30}!: is not an allowed field",
    ]


def test_a_pattern_re2_cannot_run_is_a_problem_at_load(skill: Path) -> None:
    edit(skill, "schema.json", '"text": {"type": "string",', '"text": {"type": "string", "pattern": "^(?!x)",')
    problem = one(validate_skill_dir(skill), "schema.json", "the pattern '^(?!x)' cannot be used")
    assert problem.location == "input.properties.text.pattern"
    assert "RE2" in problem.fix and "look-ahead" in problem.fix


def test_pattern_properties_with_unevaluated_properties_is_a_problem(skill: Path) -> None:
    def change(schema: dict[str, Any]) -> None:
        schema["input"]["properties"]["tags"] = {
            "type": "object",
            "patternProperties": {"^x-": {"type": "string"}},
            "unevaluatedProperties": False,
        }

    edit_schema(skill, change)
    problem = one(validate_skill_dir(skill), "schema.json", '"unevaluatedProperties"')
    assert problem.location == "input.properties.tags.patternProperties"


def test_a_regex_format_is_checked_by_re2() -> None:
    schema = {"type": "string", "format": "regex"}
    assert schema_errors(schema, "(a+)+b", "input") == []
    assert schema_errors(schema, r"(a)\1", "input") == [r"input: '(a)\\1' is not a valid regex"]


def test_an_eval_regex_re2_cannot_run_is_a_problem(skill: Path) -> None:
    edit(skill, "evals.yaml", 'matches: "(?i)april"', 'matches: "(?i)(?<=in )april"')
    problem = one(validate_skill_dir(skill), "evals.yaml", "cannot be used")
    assert "RE2" in problem.fix


@pytest.mark.timeout(20)
def test_a_reply_of_many_blank_lines_is_parsed_in_linear_time() -> None:
    start = time.perf_counter()
    with pytest.raises(ValueError):
        parse_output_text("```json" + "\n" * 50_000 + "x")
    assert time.perf_counter() - start < FAST_S
    assert parse_output_text('```json\n{"a": 1}\n```') == {"a": 1}


# ------------------------------------------------------------------------------------------------ $ref


@pytest.fixture
def no_fetch(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every URL anything tried to open; opening one fails."""
    opened: list[str] = []

    def refuse(url: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(getattr(url, "full_url", url)))
        raise OSError("the test allows no network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    yield opened


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        ("https://example.invalid/text.json", "is a URL"),
        ("http://127.0.0.1:9/s", "is a URL"),
        ("file:///etc/passwd", "is a URL"),
        ("/etc/passwd", "is an absolute path"),
        ("../title/schema.json#/input", "steps out of the skill folder with '..'"),
        ("defs/../../title/schema.json", "steps out of the skill folder with '..'"),
        ("common.json#/text", "common.json does not exist in the skill folder"),
    ],
)
def test_a_ref_that_leaves_the_folder_is_refused_at_load(
    skill: Path, no_fetch: list[str], ref: str, reason: str
) -> None:
    edit(skill, "schema.json", '"text": {"type": "string",', f'"text": {{"$ref": "{ref}", "type": "string",')
    problem = one(validate_skill_dir(skill), "schema.json", reason)
    assert problem.location == "input.properties.text.$ref"
    assert "\n" not in problem.message and "common.json#/$defs/<name>" in problem.fix
    assert no_fetch == []


def test_a_symlink_out_of_the_folder_is_refused(skill: Path, library: Path) -> None:
    (library / "outside.json").write_text('{"type": "string"}', encoding="utf-8")
    (skill / "text.json").symlink_to(library / "outside.json")
    edit(skill, "schema.json", '"text": {"type": "string",', '"text": {"$ref": "text.json", "type": "string",')
    problem = one(validate_skill_dir(skill), "schema.json", "leads out of the skill folder through a symlink")
    assert problem.location == "input.properties.text.$ref"


def split_schema(skill: Path, back: str) -> None:
    """summarize's max_words defined in common.json; its audience in defs/audience.json, whose ``$defs`` refer to
    ``back`` (relative to defs/)."""
    (skill / "defs").mkdir()
    (skill / "common.json").write_text(
        json.dumps({"$defs": {"words": {"type": "integer", "minimum": 10, "maximum": 1000}}}), encoding="utf-8"
    )
    (skill / "defs" / "audience.json").write_text(
        json.dumps({"type": "string", "maxLength": 200, "$defs": {"n": {"$ref": back}}}), encoding="utf-8"
    )

    def change(schema: dict[str, Any]) -> None:
        schema["input"]["properties"]["max_words"] = {"$ref": "common.json#/$defs/words", "default": 80}
        schema["input"]["properties"]["audience"] = {"$ref": "./defs/audience.json", "default": "a busy reader"}

    edit_schema(skill, change)


def test_a_ref_to_a_file_in_the_skill_folder_works(skill: Path, no_fetch: list[str]) -> None:
    (skill / "defs").mkdir()
    (skill / "common.json").write_text(
        json.dumps({"$defs": {"words": {"type": "integer", "minimum": 10, "maximum": 1000}}}), encoding="utf-8"
    )
    (skill / "defs" / "audience.json").write_text(
        json.dumps({"type": "string", "$defs": {"short": {"maxLength": 20}}, "$ref": "#/$defs/short"}),
        encoding="utf-8",
    )

    def change(schema: dict[str, Any]) -> None:
        schema["input"]["properties"]["max_words"] = {"$ref": "common.json#/$defs/words", "default": 80}
        schema["input"]["properties"]["audience"] = {"$ref": "./defs/audience.json", "default": "crew"}

    edit_schema(skill, change)
    assert validate_skill_dir(skill) == []
    loaded = load_skill(skill)
    with pytest.raises(ToolbagError, match="input.max_words: 5 is less than the minimum of 10"):
        validate_input(loaded, {"text": "x", "max_words": 5})
    with pytest.raises(ToolbagError, match="input.audience: is 21 characters long; the maximum is 20"):
        validate_input(loaded, {"text": "x", "audience": "a" * 21})
    validate_input(loaded, {"text": "x", "max_words": 50, "audience": "crew"})
    assert no_fetch == []


def test_a_step_back_that_stays_in_the_folder_is_fine(skill: Path) -> None:
    split_schema(skill, "../common.json#/$defs/words")
    assert validate_skill_dir(skill) == []


def test_a_step_out_inside_a_referenced_file_is_refused(skill: Path) -> None:
    split_schema(skill, "../../title/schema.json")
    problem = one(validate_skill_dir(skill), "audience.json", "steps out of the skill folder with '..'")
    assert problem.location == "defs/audience.json.$defs.n.$ref"


def test_a_bad_pointer_into_a_referenced_file_is_a_problem(skill: Path) -> None:
    (skill / "common.json").write_text(json.dumps({"$defs": {}}), encoding="utf-8")
    edit(skill, "schema.json", '"text": {"type": "string",', '"text": {"$ref": "common.json#/$defs/x",')
    problem = one(validate_skill_dir(skill), "schema.json", "'common.json#/$defs/x' points at nothing in common.json")
    assert problem.location == "input.properties.text.$ref"


def test_a_loop_inside_a_referenced_file_is_a_problem_named_there(skill: Path) -> None:
    loop = {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"allOf": [{"$ref": "#/$defs/a"}]}}}
    (skill / "common.json").write_text(json.dumps(loop), encoding="utf-8")
    edit(skill, "schema.json", '"text": {"type": "string",', '"text": {"$ref": "common.json#/$defs/a",')
    problem = one(validate_skill_dir(skill), "schema.json", "leads back to itself")
    assert problem.location in ("common.json.$defs.a", "common.json.$defs.b")


def test_a_referenced_file_is_checked_like_schema_json(skill: Path) -> None:
    (skill / "common.json").write_text(json.dumps({"$defs": {"t": {"type": "string", "pattern": "(?=a)"}}}), "utf-8")
    edit(skill, "schema.json", '"text": {"type": "string",', '"text": {"$ref": "common.json#/$defs/t",')
    problem = one(validate_skill_dir(skill), "common.json", "cannot be used")
    assert problem.location == "common.json.$defs.t.pattern"


def test_a_referenced_file_counts_in_the_content_hash_and_is_reloaded(library: Path, skill: Path) -> None:
    before = load_skill(skill).content_hash
    (skill / "common.json").write_text(json.dumps({"$defs": {"t": {"type": "string", "minLength": 1}}}), "utf-8")
    edit(skill, "schema.json", '"text": {"type": "string",', '"text": {"$ref": "common.json#/$defs/t",')
    skills = SkillLibrary(library)
    first = skills.get("summarize")
    assert first.content_hash != before
    (skill / "common.json").write_text(json.dumps({"$defs": {"t": {"type": "string", "minLength": 3}}}), "utf-8")
    second = skills.get("summarize")
    assert second.content_hash not in (before, first.content_hash)
    assert second.content_hash == content_hash(skill)
    with pytest.raises(ToolbagError, match="input.text: is 2 characters long; the minimum is 3"):
        validate_input(second, {"text": "ab"})


def test_a_missing_referenced_file_is_picked_up_when_it_appears_and_never_read_while_validating(
    library: Path, skill: Path
) -> None:
    edit(skill, "schema.json", '"text": {"type": "string",', '"text": {"$ref": "defs/text.json",')
    skills = SkillLibrary(library)
    with pytest.raises(ToolbagError, match="defs/text.json does not exist in the skill folder"):
        skills.get("summarize")
    (skill / "defs").mkdir()
    (skill / "defs" / "text.json").write_text('{"type": "string", "maxLength": 1000}', encoding="utf-8")
    loaded = skills.get("summarize")
    shutil.rmtree(skill / "defs")  # validating a job uses what was read with the skill
    with pytest.raises(ToolbagError, match="input.text: is 1001 characters long; the maximum is 1000"):
        validate_input(loaded, {"text": "a" * 1001})


def test_an_unchanged_skill_without_file_refs_keeps_its_hash() -> None:
    texts = {name: (SKILLS / "summarize" / name).read_text(encoding="utf-8") for name in HASHED_FILES}
    loaded = load_skill(SKILLS / "summarize")
    assert content_hash_of_texts(texts) == content_hash_of_texts(texts, {}) == loaded.content_hash


def test_validation_never_fetches_a_ref(no_fetch: list[str]) -> None:
    with pytest.raises(Unresolvable):
        schema_errors({"$ref": "http://127.0.0.1:9/s.json"}, 1, "input")
    assert no_fetch == []


def test_a_ref_inside_the_schema_works(skill: Path, no_fetch: list[str]) -> None:
    def change(schema: dict[str, Any]) -> None:
        schema["input"]["$defs"] = {"words": {"type": "integer", "minimum": 10}}
        schema["input"]["properties"]["max_words"] = {"$ref": "#/$defs/words", "default": 80}

    edit_schema(skill, change)
    assert validate_skill_dir(skill) == []
    with pytest.raises(ToolbagError, match="input.max_words: 5 is less than the minimum of 10"):
        validate_input(load_skill(skill), {"text": "x", "max_words": 5})
    assert no_fetch == []


def test_a_ref_to_nothing_is_a_problem(skill: Path) -> None:
    edit(skill, "schema.json", '"text": {"type": "string",', '"text": {"$ref": "#/$defs/missing", "type": "string",')
    problem = one(validate_skill_dir(skill), "schema.json", "'#/$defs/missing' points at nothing in the input schema")
    assert problem.location == "input.properties.text.$ref"


def test_a_ref_that_loops_without_checking_a_part_is_a_problem(skill: Path) -> None:
    def change(schema: dict[str, Any]) -> None:
        schema["input"]["$ref"] = "#"

    edit_schema(skill, change)
    problem = one(validate_skill_dir(skill), "schema.json", "leads back to itself")
    assert problem.location == "input"


def test_a_ref_that_loops_through_a_field_is_fine() -> None:
    tree = {"type": "object", "properties": {"child": {"$ref": "#"}}}
    assert schema_errors(tree, {"child": {"child": {"child": 1}}}, "input") == [
        "input.child.child.child: should be an object, got the whole number 1"
    ]


# ------------------------------------------------------------------------------------------------ bounds


def test_an_esc_in_skill_md_is_a_problem_for_that_skill_only(library: Path) -> None:
    edit(library / "summarize", "SKILL.md", "description: Summarizes", "description: \x1b[2JSummarizes")
    problem = one(validate_skill_dir(library / "summarize"), "SKILL.md", "control character U+001B")
    assert problem.location == "line 3"
    assert validate_skill_dir(library / "title") == []

    runner = CliRunner()
    listed = runner.invoke(app, ["--dir", str(library), "list"], env={"TOOLBAG_CONFIG": str(DEFAULT_CONFIG_PATH)})
    assert listed.exit_code == 0, listed.output
    assert "summarize  INVALID" in listed.stdout and "\ntitle " in listed.stdout

    checked = runner.invoke(app, ["--dir", str(library), "validate"], env={"TOOLBAG_CONFIG": str(DEFAULT_CONFIG_PATH)})
    assert checked.exit_code == 1, checked.output
    assert "control character U+001B" in checked.stdout and f"ok       {library / 'title'}" in checked.stdout
    assert "\x1b" not in checked.stdout


def test_a_control_character_in_the_instructions_is_a_problem(skill: Path) -> None:
    edit(skill, "SKILL.md", "# Summarize", "# Summarize\x07")
    assert one(validate_skill_dir(skill), "SKILL.md", "U+0007").location == "line 10"


def test_a_deeply_nested_schema_is_a_problem(skill: Path) -> None:
    deep = '{"items": ' * 5000 + '{"type": "string"}' + "}" * 5000
    edit(skill, "schema.json", '"text": {', f'"deep": {deep}, "text": {{')
    problem = one(validate_skill_dir(skill), "schema.json", "nested 5004 levels deep")
    assert "$defs" in problem.fix


def test_a_schema_within_the_nesting_bound_is_checked_as_usual(skill: Path) -> None:
    deep = '{"type": "object", "properties": {"a": ' * 30 + '{"type": "string"}' + "}}" * 30
    edit(skill, "schema.json", '"text": {', f'"deep": {deep}, "text": {{')
    one(validate_skill_dir(skill), "SKILL.md", "the input field 'deep' never reaches the model")


@pytest.mark.parametrize(
    ("frontmatter", "message"),
    [
        ("  toolbag.deep: " + "[" * 3000 + "]" * 3000 + "\n", "nested more than 64 levels deep"),
        ("".join("  " * (i + 1) + f"k{i}:\n" for i in range(80)) + "  " * 81 + "v: x\n", "nested more than 64"),
        ("  toolbag.note: &n x\n  toolbag.again: *n\n", "an alias (*name)"),
        ("  toolbag.note: " + "x" * MAX_FRONTMATTER_CHARS + "\n", "the frontmatter is"),
    ],
)
def test_a_frontmatter_past_its_bounds_is_a_problem(skill: Path, frontmatter: str, message: str) -> None:
    edit(skill, "SKILL.md", "  toolbag.tier: standard\n", "  toolbag.tier: standard\n" + frontmatter)
    problems, took = timed(lambda: validate_skill_dir(skill))
    assert took < FAST_S
    one(problems, "SKILL.md", message)


@pytest.mark.parametrize("name", ["SKILL.md", "schema.json", "evals.yaml"])
def test_a_file_too_large_is_a_problem_and_not_read(skill: Path, name: str) -> None:
    with (skill / name).open("a", encoding="utf-8") as file:
        file.write("\n" + " " * MAX_FILE_BYTES)
    problems = validate_skill_dir(skill)
    assert one(problems, name, "larger than 256 KiB").location == ""
    assert not [p for p in problems if p.file.endswith(name) and "has no" in p.message]


def test_a_value_nested_past_the_bound_is_one_clear_error() -> None:
    node: dict[str, Any] = {"type": "object", "properties": {"child": {"$ref": "#"}}}
    deep: dict[str, Any] = {}
    for _ in range(5000):
        deep = {"child": deep}
    errors = schema_errors(node, deep, "input")
    assert errors == ["input: lists and objects are nested more than 64 levels deep, the most allowed"]
    with pytest.raises(ValueError, match="nested more than 64 levels deep"):
        parse_output_text("[" * 5000 + "]" * 5000)


def test_a_broken_skill_is_read_once_until_it_changes(skill: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from toolbag.skills import loader

    (skill / "evals.yaml").write_text(BILLION_LAUGHS, encoding="utf-8")
    reads: list[object] = []
    inspect = loader.inspect_skill_dir
    monkeypatch.setattr(loader, "inspect_skill_dir", lambda path: reads.append(path) or inspect(path))
    library = SkillLibrary(skill.parent)
    for _ in range(3):
        with pytest.raises(ToolbagError, match="alias"):
            library.get("summarize")
    assert len(reads) == 1
