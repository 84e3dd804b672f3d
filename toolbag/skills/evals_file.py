"""Reading evals.yaml: ``cases:`` (at least three) and, optionally, ``examples:`` shown to the model.

The shape of each part is a pydantic model below; each case and each example is checked on its own, so one
broken case does not hide the problems of the others, and every case that is fine is still checked against
the schemas by :mod:`toolbag.skills.validation`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    ModelWrapValidatorHandler,
    StrictBool,
    StringConstraints,
    Tag,
    create_model,
    model_validator,
)
from pydantic_core import ErrorDetails

from toolbag.skills.errors import Problem, did_you_mean
from toolbag.skills.hashing import EVALS_FILE
from toolbag.skills.jsonpath import JsonPath, path_label
from toolbag.skills.model import CHECK_KINDS, Check, EvalCase, Example
from toolbag.skills.patterns import RE2_SYNTAX, pattern_problem
from toolbag.skills.plain_errors import is_unknown_key, own_error, own_words, rejected, validated, within
from toolbag.skills.yamlfile import YamlDocument, YamlLimitError, YamlSyntaxError, load_yaml

MIN_EVAL_CASES = 3
_TOP_KEYS = ("cases", "examples")
_CASE_KEYS = ("id", "description", "input", "expected", "checks")
_EXAMPLE_KEYS = ("input", "output")
_CHECK_OPTIONS = ("field", "semantic")
_KINDS = list(CHECK_KINDS)
_FIRST_CASE = "cases:\n  - id: first-case\n    input: ..."


# ---------------------------------------------------------------- values


def non_json_path(value: object, path: JsonPath = ()) -> JsonPath | None:
    """The path of the first thing JSON cannot hold (a key that is not text, a YAML-only type), if any."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return (*path, str(key))
            found = non_json_path(item, (*path, key))
            if found is not None:
                return found
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = non_json_path(item, (*path, index))
            if found is not None:
                return found
        return None
    return None if value is None or isinstance(value, (str, bool, int, float)) else path


def _json_only(value: object) -> object:
    bad = non_json_path(value) if isinstance(value, dict) else None
    if bad is not None:
        raise rejected("this value cannot be JSON (keys must be text)", 'Quote the key, e.g. "1": ...', at=bad)
    return value


def _compiles(pattern: str) -> str:
    problem = pattern_problem(pattern)
    if problem is not None:
        raise rejected(f"`matches:` {pattern!r} cannot be used: {problem}", RE2_SYNTAX)
    return pattern


def _is_true(value: bool) -> bool:
    if not value:
        raise ValueError("false")
    return value


def _text(value: object) -> str:
    return str(value or "")


#: A mapping of text keys to JSON values, as a case's input and expected output are.
JsonObject = Annotated[dict[str, Any], BeforeValidator(_json_only)]
CaseId = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]

OnlyTrue = Annotated[StrictBool, AfterValidator(_is_true)]
Count = Annotated[int, Field(strict=True, ge=0)]
Text = Annotated[str, Field(strict=True, min_length=1)]
Regex = Annotated[str, Field(strict=True), AfterValidator(_compiles)]
Choices = Annotated[list[Any], Field(strict=True, min_length=1)]

_A_COUNT = "takes a whole number (0 or more), got {value!r}"
_A_TEXT = "takes a piece of text, got {value!r}"
#: The value each kind of check takes, and how a wrong one is described (``{value!r}`` is the value given).
CHECK_VALUES: dict[str, tuple[Any, str]] = {
    "schema_valid": (OnlyTrue, "takes the value true"),
    "not_null": (OnlyTrue, "takes the value true"),
    "max_items": (Count, _A_COUNT),
    "min_items": (Count, _A_COUNT),
    "max_words": (Count, _A_COUNT),
    "max_chars": (Count, _A_COUNT),
    "contains": (Text, _A_TEXT),
    "not_contains": (Text, _A_TEXT),
    "matches": (Regex, "takes a regular expression as text, got {value!r}"),
    "one_of": (Choices, "takes a list of allowed values"),
    "equals": (Any, ""),
}


# ---------------------------------------------------------------- checks


class CheckOptions(BaseModel):
    """What a check may say besides its kind: the output field it looks at, and whether it is semantic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    field: Annotated[str, StringConstraints(strict=True, pattern=r"\S")] | None = None
    semantic: StrictBool | None = None


class _KindCount(CheckOptions):
    """A check naming no kind, or several (every kind is a field, so only unknown keys are reported first)."""

    @model_validator(mode="wrap")
    @classmethod
    def _exactly_one_kind(cls, data: Any, handler: ModelWrapValidatorHandler[_KindCount]) -> _KindCount:
        handler(data)
        kinds = [str(key) for key in data if key in CHECK_KINDS]
        raise rejected(
            "a check needs exactly one kind" + (f", this one has {len(kinds)}: {', '.join(kinds)}" if kinds else ""),
            "Split it into separate `- ...` checks. Kinds: " + ", ".join(_KINDS) + ".",
        )


def _check_model(name: str, base: type[CheckOptions], fields: dict[str, Any]) -> type[CheckOptions]:
    return create_model(name, __base__=base, **fields)


_CHECK_MODELS = {
    kind: _check_model(f"Check_{kind}", CheckOptions, {kind: (CHECK_VALUES[kind][0], ...)}) for kind in CHECK_KINDS
}
_KIND_OF_MODEL = {model: kind for kind, model in _CHECK_MODELS.items()}
_NOT_ONE_KIND = "not one kind"
_NotOneKind = _check_model("NotOneKind", _KindCount, {kind: (Any, None) for kind in CHECK_KINDS})


def _kind_tag(check: object) -> str | None:
    if not isinstance(check, dict):
        return None
    kinds = [key for key in check if key in CHECK_KINDS]
    return str(kinds[0]) if len(kinds) == 1 else _NOT_ONE_KIND


#: One check, validated by the model of its kind (or by ``_NotOneKind``), which ``_kind_tag`` picks by its keys.
if TYPE_CHECKING:
    CheckEntry = CheckOptions
else:
    _TAGGED = [Annotated[model, Tag(kind)] for kind, model in _CHECK_MODELS.items()]
    CheckEntry = Annotated[
        Union[(*_TAGGED, Annotated[_NotOneKind, Tag(_NOT_ONE_KIND)])],  # noqa: UP007 - a Union built from a list
        Discriminator(_kind_tag),
    ]


def to_check(entry: CheckOptions) -> Check:
    """The :class:`Check` a valid check entry stands for."""
    kind = _KIND_OF_MODEL[type(entry)]
    semantic = CHECK_KINDS[kind] if entry.semantic is None else entry.semantic
    return Check(kind=kind, value=getattr(entry, kind), field=entry.field, semantic=semantic)


# ---------------------------------------------------------------- cases, examples, the file


class CaseEntry(BaseModel):
    """One eval case: an input, the checks its output must pass, and optionally the expected output."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: CaseId
    description: Annotated[str, BeforeValidator(_text)] = ""
    input: JsonObject
    expected: JsonObject | None = None
    checks: Annotated[list[CheckEntry], Field(min_length=1)]

    def to_case(self) -> EvalCase:
        """The :class:`EvalCase` this entry stands for."""
        checks = tuple(to_check(check) for check in self.checks)
        return EvalCase(self.id, self.input, checks, self.expected, self.description)


class ExampleEntry(BaseModel):
    """A worked example shown to the model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: JsonObject
    output: JsonObject


class EvalsFile(BaseModel):
    """The top level of evals.yaml; each case and example is checked on its own."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cases: Annotated[list[Any], Field(min_length=MIN_EVAL_CASES)]
    examples: list[Any] | None = None


@dataclass(frozen=True)
class Evals:
    """What could be read from evals.yaml: the cases and examples that are fine, by their index in the file."""

    file: str
    doc: YamlDocument
    cases: Mapping[int, EvalCase]
    examples: Mapping[int, Example]

    def where(self, path: JsonPath, label: str) -> str:
        """``line N, <label>`` for a place in evals.yaml."""
        line = self.doc.line(path)
        return f"line {line}, {label}" if line else label


def read_evals_yaml(folder: Path, text: str | None) -> tuple[Evals | None, list[Problem]]:
    """Read evals.yaml (``None`` when it is missing); ``None`` back when it is not YAML."""
    file = str(folder / EVALS_FILE)
    if text is None:
        return None, [
            Problem(
                file,
                "",
                f"the skill has no evals.yaml; toolbag needs at least {MIN_EVAL_CASES} eval cases per skill",
                "Copy evals.yaml from another skill and write cases for this one.",
            )
        ]
    try:
        doc = load_yaml(text)
    except YamlLimitError as err:
        return None, [Problem(file, f"line {err.line}" if err.line else "", str(err), err.fix)]
    except YamlSyntaxError as err:
        return None, [
            Problem(
                file,
                f"line {err.line}" if err.line else "",
                f"not valid YAML: {err}",
                "Check the indentation (spaces, not tabs) and that each list item starts with `- `.",
            )
        ]
    problems = [
        Problem(
            file,
            f"line {line}, {path_label(path)}",
            f"{path[-1]!r} appears twice in the same place; YAML keeps only the last one",
            "Remove or rename one of them.",
        )
        for path, line in doc.duplicates
    ]
    _, errors = validated(EvalsFile, doc.data)
    raw_cases, raw_examples = _list_at(doc.data, "cases"), _list_at(doc.data, "examples")
    cases, case_errors = _read_cases(raw_cases)
    examples, example_errors = _read_examples(raw_examples)
    evals = Evals(file, doc, cases, examples)
    ordered = _in_file_order([*errors, *case_errors, *example_errors])
    return evals, problems + [_problem(evals, error, raw_cases) for error in ordered]


def _list_at(data: object, key: str) -> list[Any]:
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, list) else []


def _read_cases(items: list[Any]) -> tuple[dict[int, EvalCase], list[ErrorDetails]]:
    cases: dict[int, EvalCase] = {}
    errors: list[ErrorDetails] = []
    for index, item in enumerate(items):
        case, case_errors = validated(CaseEntry, item)
        errors += within(("cases", index), case_errors)
        if case is None:
            continue
        if any(other.id == case.id for other in cases.values()):
            message = f"two cases have the id {case.id!r}"
            errors.append(own_error(("cases", index), message, "Give each case its own id.", at=("id",)))
        else:
            cases[index] = case.to_case()
    return cases, errors


def _read_examples(items: list[Any]) -> tuple[dict[int, Example], list[ErrorDetails]]:
    examples: dict[int, Example] = {}
    errors: list[ErrorDetails] = []
    for index, item in enumerate(items):
        example, example_errors = validated(ExampleEntry, item)
        errors += within(("examples", index), example_errors)
        if example is not None:
            examples[index] = Example(input=example.input, output=example.output)
    return examples, errors


def _in_file_order(errors: Sequence[ErrorDetails]) -> list[ErrorDetails]:
    """Unknown top-level keys, then the cases one by one, their number, then the examples."""

    def order(error: ErrorDetails) -> tuple[int, int]:
        loc = error["loc"]
        if is_unknown_key(error, depth=1):
            return 0, 0
        if loc[:1] == ("cases",):
            return (1, int(loc[1])) if len(loc) > 1 else (2, 0)
        return 3, int(loc[1]) if len(loc) > 1 else -1

    return sorted(errors, key=order)


# ---------------------------------------------------------------- problems in plain words


def _problem(evals: Evals, error: ErrorDetails, raw_cases: Sequence[Any]) -> Problem:
    loc = tuple(error["loc"])
    match loc:
        case ():
            fix = "cases:\n  - id: first-case ..."
            return Problem(evals.file, "top level", "evals.yaml must start with `cases:`", fix)
        case (str(key),) if is_unknown_key(error):
            return Problem(
                evals.file,
                evals.where(loc, key),
                f"{key!r} is not expected here{did_you_mean(key, _TOP_KEYS)}",
                "evals.yaml holds `cases:` and, optionally, `examples:`.",
            )
        case ("cases",) if error["type"] == "missing":
            return Problem(evals.file, "top level", "there is no `cases:` list", _FIRST_CASE)
        case ("cases",) if error["type"] == "too_short":
            return Problem(
                evals.file,
                evals.where(loc, "cases"),
                f"there are {error['ctx']['actual_length']} case(s); toolbag needs at least {MIN_EVAL_CASES} per skill",
                "Add cases with different kinds of input: an ordinary one, an edge case and a hard one.",
            )
        case ("cases",):
            return Problem(
                evals.file,
                evals.where(loc, "cases"),
                "`cases:` must be a list; start each case with `- id: ...`",
                _FIRST_CASE,
            )
        case ("examples",):
            return Problem(
                evals.file,
                evals.where(loc, "examples"),
                "`examples:` must be a list of `- input: ... output: ...` items",
                "",
            )
        case ("cases", int(index), *rest):
            case_id = raw_cases[index].get("id") if isinstance(raw_cases[index], dict) else None
            label = f"case {case_id!r}" if isinstance(case_id, str) else f"cases[{index}]"
            return _case_problem(evals, error, ("cases", index), label, tuple(rest))
        case ("examples", int(index), *rest):
            return _example_problem(evals, error, ("examples", index), f"examples[{index}]", tuple(rest))
    return Problem(evals.file, evals.where(loc, path_label(loc)), error["msg"], "")


def _case_problem(evals: Evals, error: ErrorDetails, base: JsonPath, label: str, rest: JsonPath) -> Problem:
    if rest[:1] == ("checks",) and len(rest) > 1:
        check = (*base, "checks", rest[1])
        return _check_problem(evals, error, evals.where(check, f"{label}.checks[{rest[1]}]"), rest[3:])
    words = own_words(error)
    if words is not None:
        inside = (*rest, *words.at)
        where = evals.where((*base, *inside), f"{label}.{path_label(inside)}" if rest else label)
        return Problem(evals.file, where, words.message, words.fix)
    if not rest:
        return Problem(evals.file, evals.where(base, label), "a case must be `key: value` lines", "")
    key = str(rest[0])
    where = evals.where((*base, key), f"{label}.{key}")
    if is_unknown_key(error):
        return Problem(
            evals.file,
            where,
            f"{key!r} is not a case field{did_you_mean(key, _CASE_KEYS)}",
            "A case has: " + ", ".join(_CASE_KEYS) + ".",
        )
    if key == "id":
        return Problem(
            evals.file,
            evals.where(base, label),
            "each case needs an `id:` of letters, digits, - or _",
            "e.g. `- id: short-email`",
        )
    if key == "checks":
        return Problem(
            evals.file,
            where,
            "each case needs a `checks:` list with at least one check",
            "checks:\n  - schema_valid: true",
        )
    missing = error["type"] == "missing" or error["input"] is None
    return Problem(
        evals.file,
        where,
        f"the case's {key} must be a set of `field: value` lines" + (" (it is missing)" if missing else ""),
        f"{key}:\n  text: ...",
    )


def _check_problem(evals: Evals, error: ErrorDetails, where: str, rest: JsonPath) -> Problem:
    words = own_words(error)
    if words is not None:
        return Problem(evals.file, where, words.message, words.fix)
    if not rest:
        return Problem(
            evals.file, where, "a check must be `kind: value` lines", "e.g. `- field: summary\n    max_words: 80`"
        )
    key = str(rest[0])
    if is_unknown_key(error):
        return Problem(
            evals.file,
            where,
            f"{key!r} is not a kind of check{did_you_mean(key, _KINDS + list(_CHECK_OPTIONS))}",
            "Kinds of check: " + ", ".join(_KINDS) + " (plus `field:` and `semantic:`).",
        )
    if key == "field":
        message = "`field:` must be a dotted path into the output, e.g. summary or items.amount"
    elif key == "semantic":
        message = "`semantic:` must be true or false"
    else:
        message = f"`{key}:` " + CHECK_VALUES[key][1].format(value=error["input"])
    return Problem(evals.file, where, message, "")


def _example_problem(evals: Evals, error: ErrorDetails, base: JsonPath, label: str, rest: JsonPath) -> Problem:
    if not rest:
        return Problem(evals.file, evals.where(base, label), "an example needs input: and output:", "")
    key = str(rest[0])
    where = evals.where((*base, key), f"{label}.{key}")
    if is_unknown_key(error):
        return Problem(
            evals.file,
            where,
            f"{key!r} is not an example field{did_you_mean(key, _EXAMPLE_KEYS)}",
            "An example has input: and output:.",
        )
    return Problem(evals.file, where, f"the example's {key} must be a set of `field: value` lines", "")
