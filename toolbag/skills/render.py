"""Turning a skill and a job's input into one vendor-neutral :class:`ModelRequest`, byte-identically.

* system text: the body above ``## Input`` with its placeholders filled, then the skill's examples
  (``examples:`` in ``evals.yaml``) under ``## Examples``, then one fixed line asking for JSON only;
* one user message: the ``## Input`` section filled from the input (or, without that section, the input
  as indented canonical JSON); on a retry after ``invalid_output`` the validation error is appended;
* ``json_schema``: the output schema, for each vendor's native structured output.

Nothing in it depends on the clock, the machine or where the skill folder lives; dictionary keys of the
input are sorted wherever the input is shown as JSON.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from toolbag.providers.base import Message, ModelRequest
from toolbag.skills.canonical import canonical_bytes, canonical_json
from toolbag.skills.contract import validate_input, with_defaults
from toolbag.skills.model import Skill
from toolbag.skills.template import render_template

JSON_ONLY_LINE = "Reply with one JSON object that matches the output schema, and nothing else."
FEEDBACK_TEMPLATE = (
    "Your previous reply was rejected because it did not match the output schema:\n{feedback}\n"
    "Reply again with one JSON object that fixes this."
)


def user_text(skill: Skill, values: Mapping[str, Any]) -> str:
    """The user message for already-defaulted input ``values``."""
    if skill.user_template is None:
        return canonical_json(dict(values), pretty=True)
    return render_template(skill.user_template, values)


def system_text(skill: Skill, values: Mapping[str, Any]) -> str:
    """The system text for already-defaulted input ``values``: instructions, examples, the JSON line."""
    parts = [render_template(skill.system_template, values).strip()]
    if skill.examples:
        shown = ["## Examples"]
        for number, example in enumerate(skill.examples, start=1):
            example_values = with_defaults(skill.input_schema, dict(example.input))
            shown.append(f"### Example {number}\n\nInput:\n\n{user_text(skill, example_values).strip()}")
            answer = json.dumps(in_schema_order(skill.output_schema, example.output), ensure_ascii=False, indent=2)
            shown.append(f"Output:\n\n```json\n{answer}\n```")
        parts.append("\n\n".join(shown))
    parts.append(JSON_ONLY_LINE)
    return "\n\n".join(parts)


def in_schema_order(schema: Any, value: Any) -> Any:
    """``value`` with object keys in the order the schema lists its properties (others after, sorted)."""
    if isinstance(value, list):
        items = schema.get("items") if isinstance(schema, Mapping) else None
        return [in_schema_order(items, item) for item in value]
    if not isinstance(value, Mapping):
        return value
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    properties = properties if isinstance(properties, Mapping) else {}
    order = [k for k in properties if k in value] + sorted(k for k in value if k not in properties)
    return {k: in_schema_order(properties.get(k), value[k]) for k in order}


def schema_name(skill: Skill) -> str:
    """The structured-output schema name vendors see (``^[a-zA-Z0-9_-]{1,64}$``)."""
    return skill.name.replace("-", "_")[:64]


def render(skill: Skill, input: Mapping[str, Any], feedback: str | None = None) -> ModelRequest:
    """The request for one attempt of ``skill`` on ``input``; raises ``SkillInputError`` on bad input.

    ``feedback`` (the validation error of the previous attempt's output) is appended to the user
    message when the supervisor retries after ``invalid_output``. Timeouts, streaming and headers keep
    their defaults: the worker sets them per tier with :func:`dataclasses.replace`.
    """
    validate_input(skill, input)
    values = with_defaults(skill.input_schema, dict(input))
    text = user_text(skill, values).strip()
    if feedback:
        text = f"{text}\n\n{FEEDBACK_TEMPLATE.format(feedback=feedback.strip())}"
    system = system_text(skill, values)
    return ModelRequest(
        messages=(Message(role="user", text=text),),
        system=system,
        max_output_tokens=skill.max_output_tokens,
        json_schema=copy.deepcopy(dict(skill.output_schema)),
        json_schema_name=schema_name(skill),
        cache_key=cache_key(system),
    )


def cache_key(system: str) -> str:
    """The prompt-cache key of a skill's instructions: they repeat on every call with the same settings, so
    vendors are asked to cache them; the key is the text's digest (other settings make another key)."""
    return f"toolbag-skill-{hashlib.sha256(system.encode()).hexdigest()[:32]}"


def request_dict(request: ModelRequest) -> dict[str, Any]:
    """A JSON-ready dict of every field of ``request`` (tuples become lists)."""
    return dataclasses.asdict(request)


def request_bytes(request: ModelRequest) -> bytes:
    """Canonical bytes of a request: equal requests give equal bytes, on any machine."""
    return canonical_bytes(request_dict(request))
