"""`diff_locks` on hand-made locks: how moves, rows and models are put into words, and what comes first."""

from __future__ import annotations

import copy
from typing import Any

from toolbag.governance import diff_locks

MODELS = {
    "claude-haiku": {"provider": "anthropic", "model_id": "claude-haiku-5-5"},
    "claude-sonnet": {"provider": "anthropic", "model_id": "claude-sonnet-5-5"},
    "gpt-luna": {"provider": "openai", "model_id": "gpt-6-luna"},
}
CELLS = ("anthropic/claude-haiku", "anthropic/claude-sonnet", "openai/gpt-luna")


def lock(**sections: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "format": 1,
        "models": copy.deepcopy(MODELS),
        "routes": {"extract": {"interactive": ["claude-haiku", "gpt-luna", "claude-sonnet"]}},
        "skills": {"summarize": {"version": "1.0.0", "capability": "summarize", "content_hash": "a",
                                 "request_sha256": "r", "wire": {"anthropic": {"model": "m", "sha256": "w"}}}},
        "tools": {"clock.now": {"source": "local:x", "sha256": "t"}},
        "policy": {"version": 1, "digest": "d1"},
        "permissions": {"*": {cell: {"clock.now": "allow", "kv.set": "deny"} for cell in CELLS}},
    }
    base.update(sections)
    return base


def texts(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [c.text for c in diff_locks(old, new)]


def test_identical_locks_have_no_changes() -> None:
    assert diff_locks(lock(), lock()) == []


def test_route_moves_name_the_fewest_candidates() -> None:
    new = lock(routes={"extract": {"interactive": ["gpt-luna", "claude-haiku", "claude-sonnet"]}})
    assert texts(lock(), new) == [
        "route extract/interactive: claude-haiku moved behind gpt-luna (now gpt-luna, claude-haiku, claude-sonnet)"
    ]
    new = lock(routes={"extract": {"interactive": ["claude-sonnet", "claude-haiku", "gpt-luna"]}})
    assert texts(lock(), new) == [
        "route extract/interactive: claude-sonnet moved to the front, ahead of claude-haiku "
        "(now claude-sonnet, claude-haiku, gpt-luna)"
    ]


def test_a_new_agent_row_is_compared_with_what_any_agent_had() -> None:
    new = lock()
    new["permissions"]["support-bot"] = copy.deepcopy(new["permissions"]["*"])
    assert diff_locks(lock(), new) == []  # naming an agent gives it nothing new
    new["permissions"]["support-bot"]["openai/gpt-luna"]["kv.set"] = "allow"
    assert texts(lock(), new) == ["permission WIDENED: agent support-bot may now call tool kv.set on openai/*"]


def test_models_collapse_to_provider_globs_and_every_model() -> None:
    new = lock()
    for cell in CELLS[:2]:
        new["permissions"]["*"][cell]["kv.set"] = "allow-if-args"
    assert texts(lock(), new) == [
        "permission WIDENED: any agent may now call tool kv.set on anthropic/* (with arguments its rules allow)"
    ]
    for cell in CELLS:
        new["permissions"]["*"][cell]["clock.now"] = "deny"
    assert "permission narrowed: any agent may no longer call tool clock.now on every model" in texts(lock(), new)


def test_must_fix_changes_come_first_then_widenings() -> None:
    new = lock(routes={"extract": {"interactive": ["gpt-luna", "claude-haiku", "claude-sonnet"]}})
    new["skills"]["summarize"]["content_hash"] = "b"
    new["policy"] = {"version": 1, "digest": "d2"}
    new["permissions"]["*"]["openai/gpt-luna"]["kv.set"] = "allow"
    changes = diff_locks(lock(), new)
    assert [c.kind for c in changes] == ["unbumped", "unbumped", "widened", "moved"]
    assert [c.blocking for c in changes] == [True, True, False, False]


def test_new_tools_models_and_wire_changes() -> None:
    new = lock()
    new["tools"]["kv.set"] = {"source": "local:x", "sha256": "u"}
    new["models"]["gpt-sol"] = {"provider": "openai", "model_id": "gpt-6.1-sol"}
    new["skills"]["summarize"]["wire"]["anthropic"]["sha256"] = "w2"
    assert texts(lock(), new) == [
        "skill summarize loads differently although its files did not change: what anthropic receives changed "
        "(the renderer, an adapter, an SDK, the model or the tier's settings changed)",
        "model gpt-sol added (openai/gpt-6.1-sol)",
        "tool kv.set registered (local:x)",
    ]
