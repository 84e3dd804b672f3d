"""`toolbag skills list | show | validate | render`, through typer's CliRunner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from toolbag.config import DEFAULT_CONFIG_PATH
from toolbag.skills import canonical_json, load_skill, render
from toolbag.skills.cli import app
from toolbag.skills.render import request_dict

SKILLS = Path(__file__).resolve().parent.parent / "skills"
runner = CliRunner()


@pytest.fixture(autouse=True)
def default_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded config, and no vendor keys: every provider resolves to the simulator (no network is used)."""
    monkeypatch.setenv("TOOLBAG_CONFIG", str(DEFAULT_CONFIG_PATH))
    for key in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "LOCAL_LLM_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("TOOLBAG_SKILLS_DIR", raising=False)


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["--dir", str(SKILLS), *args])
    return result.exit_code, result.stdout, result.stderr


def test_list() -> None:
    code, out, _ = run("list")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == len([p for p in SKILLS.iterdir() if (p / "SKILL.md").is_file()])
    invoice = next(line for line in lines if line.startswith("extract-invoice "))
    assert "1.0.0" in invoice and " extract " in invoice and " standard " in invoice


def test_list_marks_a_broken_skill(tmp_path: Path) -> None:
    shutil.copytree(SKILLS / "title", tmp_path / "title")
    (tmp_path / "title" / "schema.json").write_text("{}", encoding="utf-8")
    result = runner.invoke(app, ["--dir", str(tmp_path), "list"])
    assert result.exit_code == 0
    assert "title" in result.stdout and "INVALID: run `toolbag skills validate title`" in result.stdout


def test_show() -> None:
    code, out, _ = run("show", "triage-ticket")
    assert code == 0
    skill = load_skill(SKILLS / "triage-ticket")
    assert out.startswith("triage-ticket 1.0.0\n")
    assert f"content hash:      {skill.content_hash}" in out
    assert '  customer_plan: string (one of: free, pro, enterprise), default "free"' in out
    assert "  body: string, required" in out
    assert "  enterprise-outage: 2 structural check(s), 4 semantic check(s)" in out


def test_show_unknown_skill() -> None:
    code, _, err = run("show", "summarise")
    assert code == 2
    assert err.startswith("error: no skill named 'summarise'") and "summarize" in err
    assert len(err.splitlines()) == 1


def test_show_broken_skill_is_one_error_line_naming_the_first_problem(tmp_path: Path) -> None:
    shutil.copytree(SKILLS / "title", tmp_path / "title")
    (tmp_path / "title" / "schema.json").write_text("{}", encoding="utf-8")
    result = runner.invoke(app, ["--dir", str(tmp_path), "show", "title"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: skill 'title' is not valid: {tmp_path / 'title' / 'schema.json'}")
    assert "`toolbag skills validate title` lists every problem" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_validate_all_ok() -> None:
    code, out, _ = run("validate")
    assert code == 0
    assert out.rstrip().endswith("skills checked: all valid")
    assert f"ok       {SKILLS / 'summarize'}" in out


def test_validate_reports_plain_problems_with_file_and_place(tmp_path: Path) -> None:
    shutil.copytree(SKILLS / "summarize", tmp_path / "summarize")
    shutil.copytree(SKILLS / "title", tmp_path / "title")
    skill_md = tmp_path / "summarize" / "SKILL.md"
    skill_md.write_text(
        skill_md.read_text(encoding="utf-8").replace("toolbag.capability: summarize", "toolbag.capability: sumarize"),
        encoding="utf-8",
    )
    result = runner.invoke(app, ["--dir", str(tmp_path), "validate"])
    assert result.exit_code == 1
    out = result.stdout
    assert f"PROBLEMS {tmp_path / 'summarize'}: 1" in out
    assert (
        f"  - {tmp_path / 'summarize' / 'SKILL.md'}, line 7, metadata.toolbag.capability: "
        "capability 'sumarize' has no route in toolbag.yaml (did you mean 'summarize'?)"
    ) in out
    assert "    fix: Use one of: " in out
    assert f"ok       {tmp_path / 'title'}" in out
    assert out.rstrip().endswith("2 skills checked: 1 with problems, 1 valid")


def test_validate_one_by_name_or_by_path(tmp_path: Path) -> None:
    assert run("validate", "title")[0] == 0
    folder = tmp_path / "copied"
    shutil.copytree(SKILLS / "title", folder)
    code, out, _ = run("validate", str(folder))
    assert code == 1
    assert "the name 'title' is not the same as the folder name 'copied'" in out
    code, _, err = run("validate", "no-such-skill")
    assert code == 2 and err.startswith("error: no skill named 'no-such-skill'")


def test_render_neutral_request_is_canonical_json() -> None:
    code, out, err = run("render", "summarize", "--input", '{"text": "Hello there.", "max_words": 20}')
    assert code == 0, err
    skill = load_skill(SKILLS / "summarize")
    expected = canonical_json(request_dict(render(skill, {"text": "Hello there.", "max_words": 20})), pretty=True)
    assert out == expected + "\n"
    assert run("render", "summarize", "--input", '{"max_words": 20, "text": "Hello there."}')[1] == out


def test_render_for_one_vendor_is_the_adapters_wire_body() -> None:
    code, out, err = run("render", "title", "--case", "headline-style", "--provider", "anthropic")
    assert code == 0, err
    body = json.loads(out)
    assert body["model"] == "claude-haiku-5-5"  # the interactive route's first Anthropic model
    assert body["max_tokens"] == 100
    assert body["output_config"]["format"]["type"] == "json_schema"
    (system,) = body["system"]  # one block, marked for the prompt cache
    assert "at most 10 words" in system["text"] and system["cache_control"] == {"type": "ephemeral"}
    assert "# anthropic: model claude-haiku (claude-haiku-5-5)" in err
    assert run("render", "title", "--case", "headline-style", "--provider", "anthropic")[1] == out


def test_render_for_every_vendor(tmp_path: Path) -> None:
    input_file = tmp_path / "input.yaml"
    input_file.write_text("text: Quarterly numbers are in.\nstyle: question\n", encoding="utf-8")
    code, out, err = run("render", "title", "--input", f"@{input_file}", "--provider", "all")
    assert code == 0, err
    bodies = json.loads(out)
    assert set(bodies) == {"anthropic", "openai", "gemini", "local"}
    assert bodies["openai"]["response_format"]["json_schema"]["strict"] is True
    gemini_config = json.dumps(bodies["gemini"])
    assert "Quarterly numbers are in." in gemini_config and "title" in gemini_config


def test_render_with_feedback_and_bad_input() -> None:
    code, out, _ = run("render", "title", "--input", '{"text": "x"}', "--feedback", "output.title: is required")
    assert code == 0 and "output.title: is required" in out
    code, _, err = run("render", "title", "--input", '{"text": "x", "max_words": 99}')
    assert code == 2
    assert err.startswith("error: ") and "input.max_words: 99 is greater than the maximum of 30" in err
    code, _, err = run("render", "title", "--input", "{text: x}")
    assert code == 2 and "not valid JSON (line 1, column 2)" in err
    code, _, err = run("render", "title", "--provider", "mistral")
    assert code == 2 and "unknown provider 'mistral'" in err
    assert err.splitlines() == [err.strip()], "the error is the only line: notes only come with a request"
    code, _, err = run("render", "title", "--provider", "anthropic", "--tier", "fast")
    assert code == 2 and "--tier: 'fast' is not a tier" in err
