"""Reading ``evals.yaml``: JSON-like YAML (only ``true``/``false`` are booleans, dates stay text), with the
line of every value and a list of duplicate keys, so problems can say where they are.

Aliases (``*name``) are refused and nesting is bounded, so a small file cannot grow into a huge value."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from toolbag.errors import ToolbagError
from toolbag.skills.jsonpath import JsonPath
from toolbag.skills.limits import MAX_NESTING


class _PastBound(yaml.MarkedYAMLError):
    """The text goes past a bound of :class:`_JsonLikeLoader`; ``fix`` says what to write instead."""

    def __init__(self, problem: str, fix: str, mark: Any) -> None:
        super().__init__(problem=problem, problem_mark=mark)
        self.fix = fix


class _JsonLikeLoader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1 surprises: ``no``/``on`` stay strings and ``2024-03-01`` stays text; and without
    aliases or nesting deeper than :data:`MAX_NESTING`."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            raise _PastBound(
                "an alias (*name) repeats a value written elsewhere, which is not allowed here",
                "Write the value out in full where it is needed instead of `*name` (or `<<: *name`).",
                event.start_mark,
            )
        if self.depth >= MAX_NESTING:
            raise _PastBound(
                f"values are nested more than {MAX_NESTING} levels deep",
                f"Keep lists and `key: value` blocks within {MAX_NESTING} levels of indentation.",
                event.start_mark,
            )
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


_JsonLikeLoader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_JsonLikeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass
class YamlDocument:
    """A parsed YAML document with the 1-based line of each value path and any duplicated keys."""

    data: Any
    lines: dict[JsonPath, int] = field(default_factory=dict)
    duplicates: list[tuple[JsonPath, int]] = field(default_factory=list)

    def line(self, path: JsonPath) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return None


class YamlSyntaxError(ToolbagError):
    """The text is not YAML. ``line`` is 1-based when known."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


class YamlLimitError(YamlSyntaxError):
    """The text is YAML that goes past a bound (an alias, too deep a nesting); ``fix`` says what to write instead."""

    def __init__(self, message: str, line: int | None, fix: str) -> None:
        super().__init__(message, line)
        self.fix = fix


def compose_yaml(text: str) -> yaml.Node | None:
    """The node tree of ``text`` (``None`` when it is empty); raises :class:`YamlSyntaxError`."""
    return _read(text, construct=False)[0]


def load_yaml(text: str) -> YamlDocument:
    """Parse ``text`` or raise :class:`YamlSyntaxError` with a one-line reason and the line."""
    node, data = _read(text, construct=True)
    doc = YamlDocument(data=data)
    if node is not None:
        _index(node, (), doc)
    return doc


def _read(text: str, *, construct: bool) -> tuple[yaml.Node | None, Any]:
    try:
        loader = _JsonLikeLoader(text)
    except yaml.reader.ReaderError as err:
        line = text.count("\n", 0, err.position) + 1
        raise YamlSyntaxError(f"the control character U+{err.character:04X} is not allowed", line) from None
    try:
        node = loader.get_single_node()
        return node, loader.construct_document(node) if construct and node is not None else None
    except _PastBound as err:
        raise YamlLimitError(err.problem or "", _line(err), err.fix) from None
    except yaml.MarkedYAMLError as err:
        raise YamlSyntaxError(err.problem or err.context or "cannot be read", _line(err)) from None
    except yaml.YAMLError as err:
        raise YamlSyntaxError(str(err), None) from None
    finally:
        loader.dispose()


def _line(err: yaml.MarkedYAMLError) -> int | None:
    mark = err.problem_mark or err.context_mark
    return mark.line + 1 if mark is not None else None


def _index(node: yaml.Node, path: JsonPath, doc: YamlDocument) -> None:
    doc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                doc.duplicates.append((path + (key,), key_node.start_mark.line + 1))
            seen.add(key)
            doc.lines.setdefault(path + (key,), key_node.start_mark.line + 1)
            _index(value_node, path + (key,), doc)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, path + (i,), doc)
