"""Validating a file's data with pydantic, and what its errors carry on their way to plain-words problems.

A validator that can say itself what is wrong and how to fix it raises :func:`rejected`; :func:`own_words`
reads that back. Every other pydantic error (a missing key, a wrong type, a value out of range) is put into
words by the reader of its file, which knows what the place means to the person editing it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from toolbag.skills.jsonpath import JsonPath

_OWN_WORDS = "toolbag_own_words"

Model = TypeVar("Model", bound=BaseModel)


@dataclass(frozen=True)
class Words:
    """What a validator said about a value: the message, the fix, and where inside the value (if deeper)."""

    message: str
    fix: str
    at: JsonPath


def rejected(message: str, fix: str = "", at: JsonPath = ()) -> PydanticCustomError:
    """The error a validator raises when it can say what is wrong; ``at`` is a place inside the value."""
    return PydanticCustomError(_OWN_WORDS, "{message}", {"message": message, "fix": fix, "at": at})


def own_error(loc: JsonPath, message: str, fix: str = "", at: JsonPath = ()) -> ErrorDetails:
    """An error in own words at ``loc``, for a rule checked outside a model (e.g. across the items of a list)."""
    context = {"message": message, "fix": fix, "at": at}
    return {"type": _OWN_WORDS, "loc": loc, "msg": message, "input": None, "ctx": context}


def own_words(error: ErrorDetails) -> Words | None:
    """The words of an error raised with :func:`rejected`, else ``None``."""
    context = error.get("ctx")
    if error["type"] != _OWN_WORDS or context is None:
        return None
    return Words(str(context["message"]), str(context["fix"]), tuple(context["at"]))


def validated(
    model: type[Model], data: object, context: object = None
) -> tuple[Model | None, list[ErrorDetails]]:
    """``(model, [])`` for valid ``data``, else ``(None, every error)``, unknown keys first, by name."""
    try:
        return model.model_validate(data, context=context), []
    except ValidationError as err:
        return None, sorted(err.errors(include_url=False), key=_unknown_keys_first)


def _unknown_keys_first(error: ErrorDetails) -> tuple[bool, str]:
    unknown = is_unknown_key(error, depth=1)
    return not unknown, str(error["loc"][0]) if unknown else ""


def is_unknown_key(error: ErrorDetails, depth: int | None = None) -> bool:
    """Whether ``error`` is a key the model does not have (at that ``depth`` of nesting, when given)."""
    return error["type"] == "extra_forbidden" and (depth is None or len(error["loc"]) == depth)


def within(prefix: JsonPath, errors: Iterable[ErrorDetails]) -> list[ErrorDetails]:
    """``errors`` of a part validated on its own, placed at ``prefix`` in the whole file."""
    return [{**error, "loc": (*prefix, *error["loc"])} for error in errors]


def failed(errors: Sequence[ErrorDetails], path: JsonPath) -> bool:
    """Whether any error points at ``path`` or inside it."""
    return any(tuple(error["loc"][: len(path)]) == path for error in errors)
