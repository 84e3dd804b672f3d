"""Celery task messages as kombu's Redis transport stores them, built without a broker connection.

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


def task_envelope(queue: str, task_name: str, args: list[Any]) -> str:
    """The JSON string kombu's Redis transport LPUSHes for ``task_name(*args)`` on ``queue``."""
    task_id = uuid.uuid4().hex
    body = json.dumps([args, {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
    headers: dict[str, Any] = {
        "lang": "py",
        "task": task_name,
        "id": task_id,
        "shadow": None,
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
