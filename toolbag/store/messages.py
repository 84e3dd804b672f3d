"""Celery task messages as kombu's Redis transport stores them: built without a broker connection, and read
back (from a queue list or kombu's ``unacked`` hash). The only module that knows the message layout.

Building the envelope ourselves lets one Lua script change a job's state *and* push its pointer message
atomically: there is no moment where a job is queued in the store but has no message, or the reverse.
The layout follows celery's task protocol 2 (``app/amqp.py: as_task_v2``) and kombu's virtual channel
(``prepare_message`` + ``_inplace_augment_message``, base64 body); every fleet test checks that
a real Celery worker consumes it.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid
from typing import Any

_ORIGIN = f"toolbag@{socket.gethostname()}:{os.getpid()}"

ATTEMPT_TASK = "toolbag.attempt"
DECIDE_TASK = "toolbag.decide"
SUPERVISOR_QUEUE = "toolbag.supervisor"
# kombu's Redis transport keeps delivered-but-unacked messages here (under its ``global_keyprefix``).
KOMBU_UNACKED = "unacked"
KOMBU_UNACKED_INDEX = "unacked_index"


def queue_name(provider: str, tier: str) -> str:
    """The Celery queue a provider's workers consume for a tier (kombu stores it as a list under the prefix)."""
    return f"{provider}.{tier}"


def tier_of(queue: str) -> str:
    """The tier part of a provider queue's name (``anthropic.standard`` → ``standard``)."""
    return queue.rpartition(".")[2]


def attempt_shadow(queue: str, capability: str = "", model: str = "") -> str:
    """The name Celery's logs, events and Flower show for an attempt: ``toolbag.attempt:<capability>:<tier>:<model>``
    (a part not known where the message is built is left out)."""
    return ":".join(part for part in (ATTEMPT_TASK, capability, tier_of(queue), model) if part)


def task_envelope(queue: str, task_name: str, args: list[Any], shadow: str | None = None) -> str:
    """The JSON string kombu's Redis transport LPUSHes for ``task_name(*args)`` on ``queue``. ``shadow`` is the
    name shown for it (Celery runs ``task_name`` whatever the shadow says). The message names the default
    (anonymous) exchange, so kombu's restore of an unacked message puts it back on ``queue`` by name, without
    reading any exchange binding."""
    task_id = uuid.uuid4().hex
    body = json.dumps([args, {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
    headers: dict[str, Any] = {
        "lang": "py",
        "task": task_name,
        "id": task_id,
        "shadow": shadow,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": repr(args),
        "kwargsrepr": "{}",
        "origin": _ORIGIN,
        "ignore_result": True,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    message = {
        "body": base64.b64encode(body.encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            "correlation_id": task_id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return json.dumps(message)


def attempt_message(queue: str, job_id: str, token: str, *, capability: str = "", model: str = "") -> str:
    """The pointer message that runs attempt ``token`` of ``job_id`` on ``queue``."""
    return task_envelope(queue, ATTEMPT_TASK, [job_id, token], attempt_shadow(queue, capability, model))


def decide_message(job_id: str, token: str, outcome: str = "") -> str:
    """The pointer message that asks the supervisor to decide after attempt ``token`` of ``job_id``."""
    shadow = f"{DECIDE_TASK}:{outcome}" if outcome else None
    return task_envelope(SUPERVISOR_QUEUE, DECIDE_TASK, [job_id, token], shadow)


def _pointer(payload: Any, task: str = ATTEMPT_TASK) -> tuple[str, str] | None:
    """(job id, token) of a decoded ``task`` message; None for any other message."""
    try:
        if payload.get("headers", {}).get("task") != task:
            return None
        args = json.loads(base64.b64decode(payload["body"]))[0]
        return str(args[0]), str(args[1])
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None


def envelope_pointer(raw: Any) -> tuple[str, str] | None:
    """(job id, token) of an attempt message as kombu stores it on a queue; None for anything else."""
    try:
        return _pointer(json.loads(raw))
    except (ValueError, TypeError):
        return None


def decide_pointer(raw: Any) -> tuple[str, str] | None:
    """(job id, token) of a decision message as kombu stores it on the supervisor queue; None for anything else."""
    try:
        return _pointer(json.loads(raw), DECIDE_TASK)
    except (ValueError, TypeError):
        return None


def unacked_pointer(raw: Any, task: str = ATTEMPT_TASK) -> tuple[str, str, str] | None:
    """(queue, job id, token) of a ``task`` message (an attempt, unless told) in kombu's ``unacked`` hash;
    None for anything else."""
    if raw is None:
        return None
    try:
        payload, _exchange, routing_key = json.loads(raw)
        pointer = _pointer(payload, task)
    except (ValueError, TypeError):
        return None
    return None if pointer is None else (str(routing_key), pointer[0], pointer[1])
