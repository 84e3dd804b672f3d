"""Input and output validation: messages name the field path and the rule; bad output is ``invalid_output``."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolbag.providers.base import AttemptFailure, ModelResponse, OutcomeKind, Usage
from toolbag.skills import SkillInputError, accept_output, load_skill, validate_input, validate_output
from toolbag.skills.model import Skill

SKILLS = Path(__file__).resolve().parent.parent / "skills"


@pytest.fixture(scope="module")
def invoice() -> Skill:
    return load_skill(SKILLS / "extract-invoice")


@pytest.fixture(scope="module")
def citations() -> Skill:
    return load_skill(SKILLS / "answer-with-citations")


def input_errors(skill: Skill, value: object) -> tuple[str, ...]:
    with pytest.raises(SkillInputError) as caught:
        validate_input(skill, value)
    assert str(caught.value).startswith(f"skill {skill.name!r}: ")
    return caught.value.errors


def test_valid_input_passes(invoice: Skill) -> None:
    validate_input(invoice, {"text": "Invoice 1", "default_currency": "EUR"})
    validate_input(invoice, {"text": "Invoice 1", "default_currency": None})


def test_minimum_names_field_and_rule(citations: Skill) -> None:
    errors = input_errors(citations, {"question": "Why?", "sources": [{"id": "a", "text": "t"}], "max_words": -3})
    assert errors == ("input.max_words: -3 is less than the minimum of 10",)


def test_missing_unexpected_and_wrong_type(invoice: Skill) -> None:
    errors = input_errors(invoice, {"txt": "Invoice 1"})
    assert errors == (
        "input.text: is required but missing",
        "input.txt: is not an allowed field (allowed: default_currency, text)",
    )
    assert input_errors(invoice, {"text": 42}) == ("input.text: should be a string, got the whole number 42",)
    assert input_errors(invoice, ["text"]) == ("input: should be an object, got the list a list of 1 item(s)",)


def test_pattern_and_enum_and_nested_paths(invoice: Skill, citations: Skill) -> None:
    assert input_errors(invoice, {"text": "x", "default_currency": "euro"}) == (
        "input.default_currency: 'euro' does not match the pattern '^[A-Z]{3}$'",
    )
    errors = input_errors(citations, {"question": "Why?", "sources": [{"id": "a", "text": "t"}, {"id": "b c"}]})
    assert errors == (
        "input.sources[1].id: 'b c' does not match the pattern '^[A-Za-z0-9_-]{1,40}$'",
        "input.sources[1].text: is required but missing",
    )
    triage = load_skill(SKILLS / "triage-ticket")
    assert input_errors(triage, {"body": "x", "customer_plan": "gold"}) == (
        "input.customer_plan: 'gold' is not one of the allowed values: 'free', 'pro', 'enterprise'",
    )


def test_long_values_are_cut_in_messages(invoice: Skill) -> None:
    secret_tail = "SECRET-END"
    (message,) = input_errors(invoice, {"text": "x", "default_currency": "A" * 500 + secret_tail})
    assert secret_tail not in message and len(message) < 200


def test_error_carries_the_first_path_for_the_submit_error(citations: Skill) -> None:
    with pytest.raises(SkillInputError) as caught:
        validate_input(citations, {"question": "Why?", "sources": []})
    assert caught.value.path == "input.sources"
    assert caught.value.errors == ("input.sources: has 0 item(s); the minimum is 1",)
    assert isinstance(caught.value, ValueError)


def test_validate_output(invoice: Skill) -> None:
    good = {
        "vendor_name": "A", "vendor_tax_id": None, "invoice_number": "1", "issue_date": None, "due_date": None,
        "currency": "EUR", "line_items": [], "subtotal": None, "tax": None, "total": 3.5,
    }  # fmt: skip
    assert validate_output(invoice, good) == []
    bad = {**good, "total": "3,50", "extra": 1}
    bad.pop("currency")
    assert validate_output(invoice, bad) == [
        "output.currency: is required but missing",
        "output.extra: is not an allowed field (allowed: currency, due_date, invoice_number, issue_date, "
        "line_items, subtotal, tax, total, vendor_name, vendor_tax_id)",
        "output.total: should be a number or null, got the string '3,50'",
    ]
    assert validate_output(invoice, None) == ["output: should be an object, got null"]


def response(text: str, parsed: object = None) -> ModelResponse:
    return ModelResponse(text=text, model="m", usage=Usage(), parsed=parsed, request_id="req_1")


def test_accept_output_uses_parsed_or_text() -> None:
    title = load_skill(SKILLS / "title")
    assert accept_output(title, response("ignored", {"title": "A"})) == {"title": "A"}
    assert accept_output(title, response('{"title": "B"}')) == {"title": "B"}
    assert accept_output(title, response('```json\n{"title": "C"}\n```')) == {"title": "C"}


def test_accept_output_raises_invalid_output_with_the_reason_as_feedback() -> None:
    title = load_skill(SKILLS / "title")
    with pytest.raises(AttemptFailure) as caught:
        accept_output(title, response("", {"headline": "A"}))
    assert caught.value.kind is OutcomeKind.INVALID_OUTPUT
    assert caught.value.reason == (
        "output.headline: is not an allowed field (allowed: title); output.title: is required but missing"
    )
    assert caught.value.request_id == "req_1"
    with pytest.raises(AttemptFailure) as not_json:
        accept_output(title, response("Sure! Here is a title: Q3 results"))
    assert not_json.value.kind is OutcomeKind.INVALID_OUTPUT
    assert "not JSON" in not_json.value.reason
