"""The in-memory shape of a skill: what the loader builds and the renderer, validators and evals read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolbag.config import Tier

#: Check kinds an eval case may use, and whether each depends on what the model wrote ("semantic").
#: Semantic checks are only meaningful against a real vendor; the simulator returns schema-valid output
#: whose text is the first words of the prompt, so evals against it run the structural checks only.
CHECK_KINDS: dict[str, bool] = {
    "schema_valid": False,
    "max_items": False,
    "max_words": False,
    "max_chars": False,
    "equals": True,
    "one_of": True,
    "contains": True,
    "matches": True,
    "min_items": True,
    "not_null": True,
    "not_contains": True,
}


@dataclass(frozen=True)
class RouteHints:
    """Advice to the router, from ``metadata: toolbag.route-hints``; config routes still decide.

    ``prefer`` / ``avoid`` name providers or models; ``needs`` names model features (``json_schema``,
    ``tools``, ``batch``); ``min_context_tokens`` skips models with a smaller window.
    """

    prefer: tuple[str, ...] = ()
    avoid: tuple[str, ...] = ()
    min_context_tokens: int | None = None
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Check:
    """One assertion of an eval case on the output. ``field`` is a dotted path (``None``: whole output)."""

    kind: str
    value: Any
    field: str | None = None
    semantic: bool = False


@dataclass(frozen=True)
class EvalCase:
    """An eval case: an input, the checks its output must pass, and optionally a model answer."""

    id: str
    input: Mapping[str, Any]
    checks: tuple[Check, ...]
    expected: Mapping[str, Any] | None = None
    description: str = ""


@dataclass(frozen=True)
class Example:
    """A worked example shown to the model in the system text (``examples:`` in ``evals.yaml``)."""

    input: Mapping[str, Any]
    output: Mapping[str, Any]


@dataclass(frozen=True)
class Skill:
    """A loaded, validated skill. Equal skills have equal ``content_hash``; ``path`` is not identity."""

    name: str
    description: str
    version: str
    capability: str
    default_tier: Tier
    input_schema: Mapping[str, Any]
    output_schema: Mapping[str, Any]
    body: str
    system_template: str
    user_template: str | None
    allowed_tools: tuple[str, ...]
    route_hints: RouteHints
    max_output_tokens: int
    examples: tuple[Example, ...]
    evals: tuple[EvalCase, ...]
    content_hash: str
    license: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    path: Path = field(default=Path("."), compare=False)
    #: The skill folder's files the schemas refer to, by relative path (``common.json``), read when loaded.
    schema_documents: Mapping[str, Any] = field(default_factory=dict)

    @property
    def required_features(self) -> tuple[str, ...]:
        """Model features a candidate must have to run this skill (``json_schema``, ``tools``, ...)."""
        needed = {"json_schema", *self.route_hints.needs}
        if self.allowed_tools:
            needed.add("tools")
        return tuple(sorted(needed))

    def case(self, case_id: str) -> EvalCase:
        """The eval case with this id (``KeyError`` when there is none)."""
        for case in self.evals:
            if case.id == case_id:
                return case
        raise KeyError(f"skill {self.name!r} has no eval case {case_id!r}")
