"""Is a skill's JSON Schema a correct Draft 2020-12 schema, free of the typos JSON Schema silently accepts?

JSON Schema ignores keywords it does not know, so ``"requried": [...]`` or ``"maxLenght": 5`` would quietly
check nothing. These checks name each such place in plain words.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import PurePosixPath
from typing import Any

from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from toolbag.skills.errors import did_you_mean
from toolbag.skills.jsonpath import JsonPath, path_text
from toolbag.skills.patterns import RE2_SYNTAX, pattern_problem
from toolbag.skills.schema_engine import meta_validator, registry_of

#: Every keyword of JSON Schema Draft 2020-12 (core, applicator, validation, annotations, format, content).
KNOWN_KEYWORDS: frozenset[str] = frozenset(
    {
        "$schema", "$id", "$ref", "$anchor", "$dynamicRef", "$dynamicAnchor", "$vocabulary", "$comment",
        "$defs", "prefixItems", "items", "contains", "additionalProperties", "properties",
        "patternProperties", "dependentSchemas", "propertyNames", "if", "then", "else", "allOf", "anyOf",
        "oneOf", "not", "unevaluatedItems", "unevaluatedProperties", "type", "const", "enum", "multipleOf",
        "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern",
        "maxItems", "minItems", "uniqueItems", "maxContains", "minContains", "maxProperties",
        "minProperties", "required", "dependentRequired", "title", "description", "default", "deprecated",
        "readOnly", "writeOnly", "examples", "format", "contentEncoding", "contentMediaType",
        "contentSchema",
    }
)  # fmt: skip
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "dependentSchemas")
_SCHEMA_ONE = (
    "items", "contains", "additionalProperties", "propertyNames", "if", "then", "else", "not",
    "unevaluatedItems", "unevaluatedProperties", "contentSchema",
)  # fmt: skip
_SCHEMA_LISTS = ("prefixItems", "allOf", "anyOf", "oneOf")
#: Keywords whose schemas check the same value as the schema holding them (not a part of it).
_IN_PLACE = ("allOf", "anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas")
JSON_TYPES = ("string", "number", "integer", "boolean", "array", "object", "null")

def subschemas(schema: Any, path: JsonPath = ()) -> Iterator[tuple[JsonPath, dict[str, Any]]]:
    """Every object (sub)schema with its path, the schema itself first."""
    if not isinstance(schema, dict):
        return
    yield path, schema
    for key in _SCHEMA_MAPS:
        children = schema.get(key)
        if isinstance(children, dict):
            for name, child in children.items():
                yield from subschemas(child, path + (key, name))
    for key in _SCHEMA_ONE:
        if key in schema:
            yield from subschemas(schema[key], path + (key,))
    for key in _SCHEMA_LISTS:
        children = schema.get(key)
        if isinstance(children, list):
            for i, child in enumerate(children):
                yield from subschemas(child, path + (key, i))


def meta_problems(schema: Any, root: str) -> list[tuple[str, str, str]]:
    """``(location, message, fix)`` for every place ``schema`` breaks the Draft 2020-12 meta-schema."""
    found: list[tuple[str, str, str]] = []
    meta = meta_validator()
    for error in sorted(meta.iter_errors(schema), key=lambda e: [str(p) for p in e.absolute_path]):
        where = path_text(root, tuple(error.absolute_path))
        if error.validator in ("anyOf", "type") and error.absolute_path and error.absolute_path[-1] == "type":
            found.append(
                (
                    where,
                    f"{error.instance!r} is not a JSON Schema type",
                    "Use one of: " + ", ".join(JSON_TYPES) + '; or a list such as ["string", "null"].',
                )
            )
        else:
            found.append((where, f"not a valid JSON Schema here: {error.message}", ""))
    return found


def keyword_problems(schema: Any, root: str) -> list[tuple[str, str, str]]:
    """``(location, message, fix)`` for unknown keywords (likely typos) and ``required`` names that are
    not properties: mistakes JSON Schema itself accepts silently."""
    found: list[tuple[str, str, str]] = []
    for path, node in subschemas(schema):
        for key in node:
            if key in KNOWN_KEYWORDS:
                continue
            if key == "nullable":
                fix = 'JSON Schema has no "nullable"; write "type": ["string", "null"] instead.'
            elif key == "definitions":
                fix = 'Draft 2020-12 calls this "$defs".'
            else:
                fix = "Remove it, or correct the spelling; JSON Schema ignores keywords it does not know."
            found.append(
                (
                    path_text(root, path + (key,)),
                    f"{key!r} is not a JSON Schema keyword{did_you_mean(key, sorted(KNOWN_KEYWORDS))}",
                    fix,
                )
            )
        required, properties = node.get("required"), node.get("properties")
        if isinstance(required, list) and isinstance(properties, dict):
            for name in required:
                if isinstance(name, str) and name not in properties:
                    found.append(
                        (
                            path_text(root, path + ("required",)),
                            f"{name!r} is required but is not one of the properties"
                            f"{did_you_mean(name, list(properties))}",
                            'List only names that appear under "properties".',
                        )
                    )
    return found


def engine_problems(
    schema: Any, root: str, documents: Mapping[str, Any] | None = None
) -> list[tuple[str, str, str]]:
    """``(location, message, fix)`` for what toolbag's validator (:mod:`toolbag.skills.schema_engine`) will not
    run: a pattern RE2 cannot compile, and a ``$ref`` that points at nothing. ``documents`` are the skill folder's
    files the schema refers to, read beforehand (:mod:`toolbag.skills.schema_refs` reports a file it could not
    read, so such a reference is not reported again here)."""
    return [*pattern_problems(schema, root), *_reference_problems(schema, root, documents or {})]


def pattern_problems(schema: Any, root: str) -> list[tuple[str, str, str]]:
    """``(location, message, fix)`` for each pattern RE2 cannot run, and ``patternProperties`` beside
    ``unevaluatedProperties``."""
    found: list[tuple[str, str, str]] = []
    unevaluated = any("unevaluatedProperties" in node for _path, node in subschemas(schema))
    for path, node in subschemas(schema):
        pattern = node.get("pattern")
        if isinstance(pattern, str) and (problem := pattern_problem(pattern)) is not None:
            where = path_text(root, path + ("pattern",))
            found.append((where, f"the pattern {pattern!r} cannot be used: {problem}", RE2_SYNTAX))
        keyed = node.get("patternProperties")
        if not isinstance(keyed, dict):
            continue
        where = path_text(root, path + ("patternProperties",))
        for key in keyed:
            if (problem := pattern_problem(key)) is not None:
                found.append((where, f"the pattern {key!r} cannot be used: {problem}", RE2_SYNTAX))
        if unevaluated:
            found.append(
                (
                    where,
                    '"patternProperties" cannot be used in a schema that also has "unevaluatedProperties"',
                    'Write "additionalProperties" where the schema says "unevaluatedProperties".',
                )
            )
    return found


def _reference_problems(schema: Any, root: str, documents: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    found: list[tuple[str, str, str]] = []
    targets: dict[int, list[Any]] = {}
    registry = registry_of(documents)
    walks = [(root, schema, registry.resolver_with_root(DRAFT202012.create_resource(schema)))]
    walks += [(str(PurePosixPath(uri)), doc, registry.resolver(base_uri=uri)) for uri, doc in documents.items()]
    for label, document, top in walks:
        resolvers: dict[JsonPath, Any] = {(): top}
        for path, node in subschemas(document):
            resolver = next(resolvers[path[:end]] for end in range(len(path), -1, -1) if path[:end] in resolvers)
            if path and "$id" in node:
                resolver = resolvers[path] = resolver.in_subresource(DRAFT202012.create_resource(node))
            for keyword in ("$ref", "$dynamicRef"):
                ref = node.get(keyword)
                if not isinstance(ref, str):
                    continue
                try:
                    targets.setdefault(id(node), []).append(resolver.lookup(ref).contents)
                except Unresolvable:
                    if not ref.startswith("#"):
                        continue  # a file that could not be read: schema_refs named it already
                    where = path_text(label, path + (keyword,))
                    found.append(
                        (
                            where,
                            f"{ref!r} points at nothing in the {label} schema",
                            f'A reference starts at the top of the {label} schema: "#/$defs/<name>" needs '
                            '"$defs": {"<name>": {...}} there.',
                        )
                    )
    labels = {id(node): path_text(name, path) for name, document, _top in walks for path, node in subschemas(document)}
    return found or _loop_problems(schema, root, targets, labels)


def _loop_problems(
    schema: Any, root: str, targets: dict[int, list[Any]], labels: dict[int, str]
) -> list[tuple[str, str, str]]:
    """A problem when a ``$ref`` leads back to a schema that holds it without checking a part of the value
    first (``{"$ref": "#"}`` at the top, say): checking any value against it would never end."""

    def steps(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
        for key in _IN_PLACE:
            value = node.get(key)
            if key == "dependentSchemas" and isinstance(value, dict):
                value = list(value.values())
            yield from (child for child in (value if isinstance(value, list) else [value]) if isinstance(child, dict))
        yield from (target for target in targets.get(id(node), []) if isinstance(target, dict))

    open_now, done = set(), set()
    for _path, start in subschemas(schema):
        if id(start) in done:
            continue
        stack = [(start, steps(start))]
        open_now.add(id(start))
        while stack:
            node, pending = stack[-1]
            child = next(pending, None)
            if child is None:
                stack.pop()
                open_now.discard(id(node))
                done.add(id(node))
            elif id(child) in open_now:
                where = labels.get(id(child), root)
                return [
                    (
                        where,
                        "this schema leads back to itself through \"$ref\" without checking a part of the value "
                        "first, so checking a value against it would never end",
                        'Put the "$ref" that leads back here under "properties" or "items", so that each step '
                        "checks a part of the value.",
                    )
                ]
            elif id(child) not in done:
                open_now.add(id(child))
                stack.append((child, steps(child)))
    return []
