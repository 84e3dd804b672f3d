"""``toolbag.lock``: the observable surface of the agent configuration, pinned and reviewed like code.

Sections (all keys sorted, one value per line, no timestamps or paths, so the same tree always gives the
same bytes and a change shows as a small diff):

- ``skills``: per skill its version, capability, tier, content hash, and the digests of what each vendor
  kind receives (:mod:`toolbag.governance.wire`);
- ``models``: provider, vendor model id, context window and features of every configured model;
- ``routes``: capability → tier → candidates in order;
- ``tools``: every registered tool's source and the sha256 of its description and argument schema;
- ``policy``: the policy's version and digest;
- ``permissions``: the effective matrix agent → ``provider/model`` → tool → level
  (:mod:`toolbag.governance.matrix`).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from toolbag.errors import ToolbagError
from toolbag.governance.check import Loaded
from toolbag.governance.matrix import permission_matrix
from toolbag.governance.wire import adapters_by_kind, skill_digest
from toolbag.skills.canonical import canonical_bytes, canonical_json

__all__ = [
    "LOCK_FILE", "LOCK_FORMAT", "LockError", "build_lock", "dump_lock", "load_lock", "lock_at_revision", "read_lock",
]

LOCK_FILE = "toolbag.lock"
LOCK_FORMAT = 1
_NOTE = ("Written by `toolbag lock`; do not edit. `toolbag check --locked` fails when the tree differs from it, "
         "`toolbag diff [REV]` explains how.")


class LockError(ToolbagError):
    """A lock that cannot be read (missing, not JSON, another format)."""


def _skills(loaded: Loaded) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with adapters_by_kind(loaded.config) as adapters:
        for skill in loaded.skills:
            entry: dict[str, Any] = {
                "version": skill.version,
                "capability": skill.capability,
                "tier": skill.default_tier,
                "content_hash": skill.content_hash,
                "allowed_tools": list(skill.allowed_tools),
            }
            digest = skill_digest(skill, loaded.config, adapters)
            if digest is not None:
                entry["input"] = digest.input
                entry["request_sha256"] = digest.request_sha256
                entry["wire"] = {k: {"model": w.model, "sha256": w.sha256} for k, w in digest.wire.items()}
            out[skill.name] = entry
    return out


def _models(loaded: Loaded) -> dict[str, Any]:
    config = loaded.config
    return {
        name: {
            "provider": m.provider,
            "kind": config.providers[m.provider].kind,
            "model_id": m.model_id,
            "context_window": m.context_window,
            "features": m.features.model_dump(),
        }
        for name, m in config.models.items()
    }


def _routes(loaded: Loaded) -> dict[str, Any]:
    return {
        capability: {tier: list(route.candidates) for tier, route in per_tier.items()}
        for capability, per_tier in loaded.config.routes.items()
    }


def _tools(loaded: Loaded) -> dict[str, Any]:
    out = {}
    for name, info in loaded.tools.items():
        surface = canonical_bytes({"description": info.description, "parameters": info.parameters})
        out[name] = {"source": info.source, "sha256": hashlib.sha256(surface).hexdigest()}
    return out


def build_lock(loaded: Loaded, *, now: datetime | None = None) -> dict[str, Any]:
    """The lock document for a checked tree (``now``: the moment permissions are evaluated at)."""
    policy = loaded.policy
    return {
        "_note": _NOTE,
        "format": LOCK_FORMAT,
        "skills": _skills(loaded),
        "models": _models(loaded),
        "routes": _routes(loaded),
        "tools": _tools(loaded),
        "policy": {"version": policy.version, "digest": policy.digest},
        "permissions": permission_matrix(policy, loaded.config, loaded.tools, now=now),
    }


def dump_lock(lock: dict[str, Any]) -> str:
    """The lock's text: canonical JSON (sorted keys, two-space indent) and a final newline."""
    return canonical_json(lock, pretty=True) + "\n"


def load_lock(text: str, source: str = LOCK_FILE) -> dict[str, Any]:
    """Parse a lock's text; :class:`LockError` names the source and what to do."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise LockError(f"{source}: not valid JSON (line {err.lineno}): {err.msg}; "
                        "regenerate it with `toolbag lock` (resolve merge conflicts by re-running it)") from None
    if not isinstance(data, dict) or "format" not in data:
        raise LockError(f"{source}: not a toolbag lock; regenerate it with `toolbag lock`")
    return data


def read_lock(path: Path) -> dict[str, Any]:
    """The lock at ``path``; :class:`LockError` when it is missing or unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LockError(f"{path}: there is no lock yet; create it with `toolbag lock` and commit it") from None
    except OSError as err:
        raise LockError(f"{path}: cannot read it ({err.strerror})") from None
    return load_lock(text, str(path))


def lock_at_revision(revision: str, path: Path) -> dict[str, Any]:
    """The lock as committed at git ``revision`` (``git show REV:./path``), ``path`` relative to the cwd."""
    spec = f"{revision}:./{Path(os.path.relpath(path)).as_posix()}"
    try:
        proc = subprocess.run(["git", "show", spec], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise LockError(f"cannot run git to read {spec}: {err}") from None
    if proc.returncode != 0:
        reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"git exited {proc.returncode}"
        raise LockError(f"cannot read {path} at {revision!r}: {reason}")
    return load_lock(proc.stdout, f"{path} at {revision}")
