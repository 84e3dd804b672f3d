"""Rendering: what the model receives, and that it is byte-identical across loads, folders, runs and machines."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from toolbag.providers.base import ModelRequest
from toolbag.skills import SkillInputError, canonical_json, content_hash, load_skill, render, request_bytes
from toolbag.skills.render import JSON_ONLY_LINE, request_dict

REPO = Path(__file__).resolve().parent.parent
SKILLS = REPO / "skills"

# A skill written out by the test itself, so its rendering can be pinned to constants: if any machine,
# Python hash seed or locale rendered it differently, the digest below would differ.
PINNED_SKILL_MD = textwrap.dedent(
    """\
    ---
    name: pinned
    description: A fixed skill used to pin rendering bytes. Use in tests only.
    license: Apache-2.0
    metadata:
      toolbag.version: "2.1.0"
      toolbag.capability: classify
      toolbag.max-output-tokens: "321"
    ---
    # Pinned

    Sort the text into one of {{ labels }} for {{ who.name }} (ünïcode stays as is).

    ## Input

    <text>
    {{ text }}
    </text>
    """
)
PINNED_SCHEMA = """{
  "input": {"type": "object", "additionalProperties": false, "required": ["text", "labels"],
            "properties": {"text": {"type": "string"}, "labels": {"type": "array", "items": {"type": "string"}},
                           "who": {"type": "object", "properties": {"name": {"type": "string", "default": "a reader"}},
                                   "default": {}, "additionalProperties": false}}},
  "output": {"type": "object", "properties": {"label": {"type": "string"}, "notes": {"type": ["string", "null"]}},
             "required": ["label", "notes"], "additionalProperties": false}
}
"""
PINNED_EVALS = textwrap.dedent(
    """\
    examples:
      - input: {text: "the sky", labels: [blue, red]}
        output: {notes: null, label: blue}
    cases:
      - id: one
        input: {text: a, labels: [x, y]}
        checks: [{schema_valid: true}]
      - id: two
        input: {text: b, labels: [x, y]}
        checks: [{schema_valid: true}]
      - id: three
        input: {text: c, labels: [x, y]}
        checks: [{schema_valid: true}]
    """
)
PINNED_INPUT = {"text": "Ünïcödé & <b>tags</b>", "labels": ["b", "a"], "who": {"name": "Ana"}}
PINNED_CONTENT_HASH = "59475785e02008e454e0cf4113a94849dc4f8fe319ddf8c38bd14c1ec5386f48"
PINNED_REQUEST_SHA256 = "8846079cfadfeae0ad2245228dbed30bcbacfc9bed5f683270fb0bda9a037ea9"


def write_pinned(folder: Path, newline: str = "\n") -> Path:
    folder.mkdir(parents=True)
    for name, text in (("SKILL.md", PINNED_SKILL_MD), ("schema.json", PINNED_SCHEMA), ("evals.yaml", PINNED_EVALS)):
        (folder / name).write_bytes(text.replace("\n", newline).encode("utf-8"))
    return folder


def test_pinned_skill_renders_to_the_pinned_bytes(tmp_path: Path) -> None:
    skill = load_skill(write_pinned(tmp_path / "pinned"))
    request = request_dict(render(skill, PINNED_INPUT))
    # Only what the skill decides (timeouts and streaming are the worker's, set per tier).
    content = {
        key: request[key] for key in ("system", "messages", "json_schema", "json_schema_name", "max_output_tokens")
    }
    assert skill.content_hash == PINNED_CONTENT_HASH
    assert hashlib.sha256(canonical_json(content).encode("utf-8")).hexdigest() == PINNED_REQUEST_SHA256


def test_pinned_skill_reads_as_intended(tmp_path: Path) -> None:
    skill = load_skill(write_pinned(tmp_path / "pinned"))
    request = render(skill, {"text": "hello", "labels": ["x", "y"]})
    assert request.system == (
        "# Pinned\n\n"
        'Sort the text into one of ["x", "y"] for a reader (ünïcode stays as is).\n\n'
        "## Examples\n\n"
        "### Example 1\n\nInput:\n\n<text>\nthe sky\n</text>\n\n"
        'Output:\n\n```json\n{\n  "label": "blue",\n  "notes": null\n}\n```\n\n' + JSON_ONLY_LINE
    )
    assert request.messages[0].role == "user"
    assert request.messages[0].text == "<text>\nhello\n</text>"
    assert request.max_output_tokens == 321
    assert request.json_schema == skill.output_schema
    assert request.json_schema_name == "pinned"


def test_line_endings_and_byte_order_mark_do_not_change_anything(tmp_path: Path) -> None:
    unix = load_skill(write_pinned(tmp_path / "a" / "pinned"))
    windows = load_skill(write_pinned(tmp_path / "b" / "pinned", newline="\r\n"))
    bom = tmp_path / "c" / "pinned"
    write_pinned(bom)
    (bom / "schema.json").write_bytes(b"\xef\xbb\xbf" + (bom / "schema.json").read_bytes())
    assert windows.content_hash == unix.content_hash == load_skill(bom).content_hash
    assert request_bytes(render(windows, PINNED_INPUT)) == request_bytes(render(unix, PINNED_INPUT))


@pytest.mark.parametrize("name", sorted(p.name for p in SKILLS.iterdir() if (p / "SKILL.md").is_file()))
def test_every_skill_renders_identically_across_loads_and_folders(name: str, tmp_path: Path) -> None:
    first, second = load_skill(SKILLS / name), load_skill(SKILLS / name)
    moved = tmp_path / "somewhere" / "else" / name
    shutil.copytree(SKILLS / name, moved)
    elsewhere = load_skill(moved)
    assert first.content_hash == second.content_hash == elsewhere.content_hash == content_hash(moved)
    for case in first.evals:
        reference = request_bytes(render(first, case.input))
        assert request_bytes(render(second, case.input)) == reference
        assert request_bytes(render(elsewhere, case.input)) == reference
        reordered = dict(reversed(list(case.input.items())))
        assert request_bytes(render(first, reordered)) == reference
        assert str(tmp_path) not in reference.decode("utf-8")


def test_same_bytes_in_a_fresh_process_with_another_hash_seed(tmp_path: Path) -> None:
    """Another interpreter, another PYTHONHASHSEED, another working directory: the same bytes."""
    script = textwrap.dedent(
        f"""
        import hashlib, sys
        sys.path.insert(0, {str(REPO)!r})
        from toolbag.skills import SkillLibrary, render, request_bytes
        library = SkillLibrary({str(SKILLS)!r})
        digest = hashlib.sha256()
        for name in library.names():
            skill = library.get(name)
            for case in skill.evals:
                digest.update(request_bytes(render(skill, case.input)))
        print(digest.hexdigest())
        """
    )
    digest = hashlib.sha256()
    for name in sorted(p.name for p in SKILLS.iterdir() if (p / "SKILL.md").is_file()):
        skill = load_skill(SKILLS / name)
        for case in skill.evals:
            digest.update(request_bytes(render(skill, case.input)))
    env = {**os.environ, "PYTHONHASHSEED": "12345", "LC_ALL": "C", "TZ": "Pacific/Auckland"}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == digest.hexdigest()


def test_content_hash_follows_the_content_not_the_path(tmp_path: Path) -> None:
    folder = tmp_path / "summarize"
    shutil.copytree(SKILLS / "summarize", folder)
    before = content_hash(folder)
    assert before == load_skill(SKILLS / "summarize").content_hash
    text = (folder / "SKILL.md").read_text(encoding="utf-8")
    (folder / "SKILL.md").write_text(text.replace("exact.", "exact and in full."), encoding="utf-8")
    after_body = content_hash(folder)
    assert after_body != before
    evals = (folder / "evals.yaml").read_text(encoding="utf-8")
    (folder / "evals.yaml").write_text(evals + "\n# a comment\n", encoding="utf-8")
    assert content_hash(folder) not in (before, after_body)
    (folder / "notes.txt").write_text("not part of the skill", encoding="utf-8")
    assert content_hash(folder) == content_hash(folder)


def test_defaults_fill_placeholders_and_feedback_is_appended() -> None:
    skill = load_skill(SKILLS / "summarize")
    plain = render(skill, {"text": "Some text."})
    assert "at most 80 words" in plain.system and "for a busy reader" in plain.system
    assert plain.messages[0].text == "<text>\nSome text.\n</text>"
    retry = render(skill, {"text": "Some text."}, feedback="output.summary: is required but missing")
    assert retry.system == plain.system
    assert retry.messages[0].text.startswith(plain.messages[0].text + "\n\n")
    assert "output.summary: is required but missing" in retry.messages[0].text
    assert len(retry.messages) == 1


def test_without_an_input_section_the_input_goes_as_canonical_json(tmp_path: Path) -> None:
    folder = write_pinned(tmp_path / "pinned")
    text = (folder / "SKILL.md").read_text(encoding="utf-8")
    (folder / "SKILL.md").write_text(text.split("## Input")[0], encoding="utf-8")
    skill = load_skill(folder)
    request = render(skill, {"labels": ["x"], "text": "é"})
    assert (
        request.messages[0].text
        == '{\n  "labels": [\n    "x"\n  ],\n  "text": "é",\n  "who": {\n    "name": "a reader"\n  }\n}'
    )


def test_bad_input_is_refused_before_rendering() -> None:
    skill = load_skill(SKILLS / "summarize")
    with pytest.raises(SkillInputError) as caught:
        render(skill, {"text": "x", "max_words": 3})
    assert caught.value.errors == ("input.max_words: 3 is less than the minimum of 10",)


def test_the_request_does_not_share_the_skills_schema() -> None:
    skill = load_skill(SKILLS / "summarize")
    request = render(skill, {"text": "x"})
    assert request.json_schema is not None
    request.json_schema["properties"]["summary"]["type"] = "integer"
    assert skill.output_schema["properties"]["summary"]["type"] == "string"
    assert render(skill, {"text": "x"}).json_schema == skill.output_schema


def test_the_worker_can_set_timeouts_and_streaming_without_changing_the_content() -> None:
    skill = load_skill(SKILLS / "title")
    request = render(skill, {"text": "x"})
    tuned = dataclasses.replace(request, stream=True)
    assert isinstance(tuned, ModelRequest)
    assert tuned.system == request.system and tuned.messages == request.messages
