"""The eval checker: each kind of check, paths through lists, and semantic checks skipped on the simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from toolbag.skills import Check, EvalCase, check_case, load_skill
from toolbag.skills.evals import active_checks, resolve, run_check
from toolbag.skills.model import CHECK_KINDS, Skill

SKILLS = Path(__file__).resolve().parent.parent / "skills"

INVOICE_OUTPUT: dict[str, Any] = {
    "vendor_name": "Müller Bürobedarf GmbH",
    "vendor_tax_id": "DE811234567",
    "invoice_number": "R-2025-0317",
    "issue_date": "2025-03-14",
    "due_date": "2025-04-13",
    "currency": "EUR",
    "line_items": [
        {"description": "Druckerpapier A4", "quantity": 10, "unit_price": 4.5, "amount": 45.0},
        {"description": "Toner HP 305A", "quantity": 2, "unit_price": 89.9, "amount": 179.8},
    ],
    "subtotal": 224.8,
    "tax": 42.71,
    "total": 267.51,
}


@pytest.fixture(scope="module")
def invoice() -> Skill:
    return load_skill(SKILLS / "extract-invoice")


def check(kind: str, value: Any, field: str | None = None) -> Check:
    return Check(kind=kind, value=value, field=field, semantic=CHECK_KINDS[kind])


def test_a_good_answer_passes_every_check_of_the_case(invoice: Skill) -> None:
    assert check_case(invoice, invoice.case("german-ocr"), INVOICE_OUTPUT) == []


def test_a_wrong_answer_fails_with_reasons(invoice: Skill) -> None:
    wrong = {**INVOICE_OUTPUT, "total": 999.0, "currency": "USD", "line_items": INVOICE_OUTPUT["line_items"][:1]}
    failures = check_case(invoice, invoice.case("german-ocr"), wrong)
    assert failures == [
        "case 'german-ocr': currency should be 'EUR' but is 'USD'",
        "case 'german-ocr': total should be 267.51 but is 999.0",
        "case 'german-ocr': line_items should have at least 2 item(s) but has 1",
        "case 'german-ocr': line_items.amount should be 179.8 but is 45.0",
    ]


def test_schema_failures_come_first_and_do_not_crash_the_checks(invoice: Skill) -> None:
    failures = check_case(invoice, invoice.case("german-ocr"), {"total": "267,51"})
    assert failures[0] == "case 'german-ocr': output.currency: is required but missing"
    assert "case 'german-ocr': output.total: should be a number or null, got the string '267,51'" in failures
    assert "case 'german-ocr': invoice_number is missing from the output" in failures


def test_semantic_false_runs_only_structural_checks(invoice: Skill) -> None:
    case = invoice.case("german-ocr")
    assert [c.kind for c in active_checks(case, semantic=False)] == ["schema_valid"]
    content_free = {key: None for key in INVOICE_OUTPUT} | {"line_items": [], "vendor_name": "sim"}
    assert check_case(invoice, case, content_free, semantic=False) == []
    assert len(check_case(invoice, case, content_free, semantic=True)) == 7


def test_semantic_override_in_the_file(invoice: Skill) -> None:
    (overridden,) = [c for c in invoice.case("not-an-invoice").checks if c.kind == "max_items"]
    assert overridden.semantic is True  # max_items is structural by default; the file says semantic: true


def test_paths_through_lists() -> None:
    output = {"entities": [{"text": "Ada", "type": "person"}, {"text": "Paris", "type": "location"}]}
    assert resolve(output, "entities.type") == (["person", "location"], True)
    assert resolve(output, "entities.missing") == ([], True)
    assert resolve(output, "nothing") == ([], False)
    assert run_check(check("equals", "location", "entities.type"), output) == ""
    assert run_check(check("one_of", ["person"], "entities.type"), output) == (
        "entities.type should be one of 'person' but is 'location'"
    )
    assert run_check(check("contains", "ada", "entities.text"), output) == ""


@pytest.mark.parametrize(
    ("kind", "value", "field", "output", "passes"),
    [
        ("equals", "Billing", "label", {"label": "billing "}, True),
        ("equals", True, "flag", {"flag": 1}, False),
        ("equals", None, "sql", {"sql": None}, True),
        ("equals", 5.3, "total", {"total": 5.30}, True),
        ("contains", "100 gb", "answer", {"answer": "It has 100 GB [s2]."}, True),
        ("contains", "jeudi", "translation", {"translation": "mardi"}, False),
        ("not_contains", "jane@example.com", None, {"text": "Mail [EMAIL_1]"}, True),
        ("not_contains", "JANE@example.com", None, {"a": {"b": ["write jane@example.com"]}}, False),
        ("matches", r"(?i)^\s*select\b", "sql", {"sql": "  SELECT 1"}, True),
        ("matches", r"\bSie\b", "t", {"t": "sie kommt"}, False),
        ("min_items", 2, "items", {"items": [1]}, False),
        ("max_items", 1, "items", {"items": [1]}, True),
        ("max_items", 0, "items", {"items": "not a list"}, False),
        ("max_words", 3, "title", {"title": "one two three"}, True),
        ("max_words", 2, "title", {"title": "one two three"}, False),
        ("max_chars", 5, "title", {"title": "toolong"}, False),
        ("not_null", True, "reply", {"reply": ""}, False),
        ("not_null", True, "reply", {"reply": "Hi"}, True),
        ("one_of", ["p3", "p4"], "priority", {"priority": "p1"}, False),
    ],
)
def test_each_kind(kind: str, value: Any, field: str | None, output: Any, passes: bool) -> None:
    reason = run_check(check(kind, value, field), output)
    assert (reason == "") is passes, reason


def test_a_missing_field_fails_every_kind() -> None:
    for kind, value in (("equals", 1), ("not_contains", "x"), ("max_words", 3)):
        assert run_check(check(kind, value, "gone"), {"here": 1}) == "gone is missing from the output"


def test_check_case_on_a_hand_made_case(invoice: Skill) -> None:
    case = EvalCase(id="hand", input={"text": "x"}, checks=(check("equals", "EUR", "currency"),))
    assert check_case(invoice, case, INVOICE_OUTPUT) == []
    assert check_case(invoice, case, {**INVOICE_OUTPUT, "currency": "eur"}) == []
    assert check_case(invoice, case, {**INVOICE_OUTPUT, "currency": None}) == [
        "case 'hand': currency should be 'EUR' but is null"
    ]
