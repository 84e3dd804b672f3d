"""What each vendor receives for a skill, as digests: the fingerprint of "the skill loads the same way".

A skill's content hash says its files did not change. These digests say more: that the renderer, the
adapters and the vendor SDK glue still turn it into the same bytes. Each skill is rendered with a fixed
representative input (its first eval case, else its first example), then, per provider kind in the config,
shaped as the worker would shape it for the skill's default tier (streaming per tier, output tokens capped
by the model) and passed through that kind's adapter's ``wire_request``; the digest covers that body and
whether it is streamed. Adapters are built in dev mode
against the simulator URL with a dummy key: nothing is sent anywhere.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from toolbag.attempt.request import build_request
from toolbag.config import Config
from toolbag.providers.base import Adapter
from toolbag.skills.canonical import canonical_bytes
from toolbag.skills.model import Skill
from toolbag.skills.render import render, request_bytes

__all__ = ["SkillDigest", "WireDigest", "adapters_by_kind", "skill_digest"]


@dataclass(frozen=True)
class WireDigest:
    """The vendor model id the request was shaped for, and the sha256 of the canonical wire request."""

    model: str
    sha256: str


@dataclass(frozen=True)
class SkillDigest:
    """``input``: which representative input was rendered; ``request_sha256``: the vendor-neutral request."""

    input: str
    request_sha256: str
    wire: Mapping[str, WireDigest]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextmanager
def adapters_by_kind(config: Config) -> Iterator[dict[str, tuple[str, Adapter]]]:
    """One adapter per provider kind in ``config`` (kind -> (provider name, adapter)), closed afterwards.

    The first provider of each kind in name order stands for the kind. No API key from the environment
    is used and no connection is made: only ``wire_request`` is called.
    """
    from toolbag.providers.registry import build_adapter  # the vendor SDKs: imported only when locking

    offline = config.model_copy(update={"dev": True})
    chosen: dict[str, str] = {}
    for name in sorted(config.providers):
        chosen.setdefault(config.providers[name].kind, name)
    adapters = {kind: (name, build_adapter(name, offline, environ={})) for kind, name in sorted(chosen.items())}
    try:
        yield adapters
    finally:
        for _, adapter in adapters.values():
            adapter.close()


def _representative_input(skill: Skill) -> tuple[str, Mapping[str, Any]] | None:
    if skill.evals:
        return f"eval case {skill.evals[0].id}", skill.evals[0].input
    if skill.examples:
        return "example 1", skill.examples[0].input
    return None


def skill_digest(skill: Skill, config: Config, adapters: Mapping[str, tuple[str, Adapter]]) -> SkillDigest | None:
    """The digests of ``skill``; None when it has neither an eval case nor an example to render."""
    from toolbag.skills.fleet_evals import model_for  # the model `toolbag eval` would use on each provider

    chosen = _representative_input(skill)
    if chosen is None:
        return None
    label, value = chosen
    request = render(skill, dict(value))  # the vendor-neutral request, before a tier or model shapes it
    route: Sequence[str] = ()
    if skill.capability in config.routes:
        route = config.route(skill.capability, skill.default_tier).candidates
    wire: dict[str, WireDigest] = {}
    for kind, (provider, adapter) in adapters.items():
        model = model_for(config, provider, route)
        if model is None:
            continue
        shaped = build_request(config, capability=skill.capability, tier=skill.default_tier, model=model,
                               job_input=dict(value), skill=skill)
        model_id = config.models[model].model_id
        body = json.loads(json.dumps(adapter.wire_request(model_id, shaped), default=str))
        # Gemini streams through another method with the same body: the digest covers the choice too.
        sent = {"body": body, "stream": shaped.stream}
        wire[kind] = WireDigest(model_id, _sha256(canonical_bytes(sent)))
    return SkillDigest(label, _sha256(request_bytes(request)), wire)
