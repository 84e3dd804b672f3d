"""The JSON Schema validator every skill schema runs on: Draft 2020-12, with two differences that keep a submit
fast and its answer fixed by the skill's files alone.

- Each regular expression (``pattern``, ``patternProperties``, ``format: regex``) runs on RE2
  (:mod:`toolbag.skills.patterns`), never on Python's backtracking ``re``.
- A ``$ref`` resolves within the schema, the files of the skill folder it refers to (read once, when the skill is
  read: :mod:`toolbag.skills.schema_refs`) and the Draft 2020-12 meta-schemas, which jsonschema ships; any other
  reference is unresolvable: no document is fetched or read while validating.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from toolbag.skills.patterns import is_pattern, search


def _never_retrieve(uri: str) -> Resource[Any]:
    raise LookupError(f"{uri} is outside the schema, and skill schemas are never fetched")


#: Knows the meta-schemas only; a reference to any other document is unresolvable instead of fetched.
LOCAL_REFS: Registry[Any] = Registry(retrieve=_never_retrieve)  # type: ignore[call-arg]  # attrs stubs mypy misreads


def unlisted_properties(instance: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """The keys of ``instance`` that neither ``properties`` nor a ``patternProperties`` pattern of ``schema`` covers."""
    properties = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    return [key for key in instance if key not in properties and not any(search(p, key) for p in patterns)]


def _pattern(validator: Any, pattern: str, instance: Any, schema: Mapping[str, Any]) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: Mapping[str, Any], instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    extras = unlisted_properties(instance, schema)
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif additional is False and extras:
        names = ", ".join(repr(extra) for extra in sorted(extras))
        verb = "was" if len(extras) == 1 else "were"
        yield ValidationError(f"Additional properties are not allowed ({names} {verb} unexpected)")


_SkillValidator = validators.extend(
    Draft202012Validator,
    {"pattern": _pattern, "patternProperties": _pattern_properties, "additionalProperties": _additional_properties},
)
_FORMATS = FormatChecker()
_FORMATS.checks("regex")(is_pattern)


def registry_of(documents: Mapping[str, Any]) -> Registry[Any]:
    """:data:`LOCAL_REFS` plus the skill folder's referenced files (relative path -> contents), read beforehand."""
    if not documents:
        return LOCAL_REFS
    return LOCAL_REFS.with_resources((uri, DRAFT202012.create_resource(doc)) for uri, doc in documents.items())


def schema_validator(schema: Mapping[str, Any], documents: Mapping[str, Any] | None = None) -> Any:
    """A validator of values against ``schema`` (which must have passed the checks of :mod:`toolbag.skills.schemas`);
    ``documents`` are the files its references point into, by relative path."""
    return _SkillValidator(schema, registry=registry_of(documents or {}), format_checker=_FORMATS)


def meta_validator() -> Any:
    """A validator of schemas against the Draft 2020-12 meta-schema."""
    return _SkillValidator(Draft202012Validator.META_SCHEMA, registry=LOCAL_REFS)
