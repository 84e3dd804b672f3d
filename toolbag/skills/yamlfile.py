"""Reading ``evals.yaml``: JSON-like YAML (only ``true``/``false`` are booleans, dates stay text), with the
line of every value and a list of duplicate keys, so problems can say where they are."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from toolbag.errors import ToolbagError
from toolbag.skills.jsonpath import JsonPath


class _JsonLikeLoader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1 surprises: ``no``/``on`` stay strings and ``2024-03-01`` stays text."""


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


def load_yaml(text: str) -> YamlDocument:
    """Parse ``text`` or raise :class:`YamlSyntaxError` with a one-line reason and the line."""
    try:
        node = yaml.compose(text, Loader=_JsonLikeLoader)
        data = yaml.load(text, Loader=_JsonLikeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = err.problem or err.context or "cannot be read"
        raise YamlSyntaxError(reason, line) from None
    except yaml.YAMLError as err:
        raise YamlSyntaxError(str(err), None) from None
    doc = YamlDocument(data=data)
    if node is not None:
        _index(node, (), doc)
    return doc


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
