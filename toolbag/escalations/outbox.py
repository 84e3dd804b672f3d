"""Webhook notifications through an outbox: written to a Redis stream first, then delivered by one sender.

:meth:`Outbox.add` appends a notification to the stream ``<p>outbox``; an escalation's notification is
added by the store in the same step that marks the job escalated (:func:`entry_fields` passed to
``JobStore.finish``), so a crash between the two cannot lose it. Every supervisor runs an
:class:`OutboxSender`; the one holding the lock ``<p>outbox:sender`` (renewed while it lives, taken over when
it lapses) POSTs what is due. A delivered notification leaves the stream; a failed one is written back with
its next attempt time (backoff doubling from ``backoff_s`` up to ``max_backoff_s``) until it is ``give_up_s``
old, when it moves to ``<p>outbox:failed``. Delivery is at least once: each POST carries the header
``X-Toolbag-Delivery`` (the notification's id, the same on every retry), so a receiver can drop a repeat.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import redis

from toolbag.store.keys import Keys
from toolbag.telemetry import metrics

log = logging.getLogger("toolbag.escalations")
DELIVERY_HEADER = "X-Toolbag-Delivery"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def entry_fields(url: str, payload: dict[str, Any]) -> dict[str, str | int]:
    """The stream fields of a new notification: a POST of ``payload`` (JSON) to ``url``, due at once (``due_ms``
    0, whatever the clocks say; retries are due on Redis's clock). Its delivery id is left empty: the id of the
    first entry holding it is the delivery id. ``created_ms`` (this host's clock) only dates it: seconds of skew
    do not matter to the day after which a notification is given up on."""
    return {"url": url, "body": json.dumps(payload), "attempts": 0, "created_ms": int(time.time() * 1000),
            "due_ms": 0, "delivery_id": ""}


@dataclass(frozen=True)
class Notification:
    """One webhook call waiting in the outbox."""

    entry: str  # the stream entry holding it now
    delivery_id: str  # stable across retries
    url: str
    body: str
    attempts: int
    created_ms: int
    due_ms: int


class Outbox:
    """The stream of notifications not yet delivered, and the list of those given up on."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.stream = keys.outbox
        self.failed_list = keys.outbox_failed
        self.lock = keys.outbox_sender

    def add(self, url: str, payload: dict[str, Any]) -> str:
        """Queue a POST of ``payload`` (JSON) to ``url``; returns its delivery id."""
        fields: dict[Any, Any] = dict(entry_fields(url, payload))
        return _text(self.redis.xadd(self.stream, fields))

    def pending(self) -> int:
        return int(self.redis.xlen(self.stream))

    def now_ms(self) -> int:
        """Redis's clock (``TIME``) in milliseconds: when a retry is due, whichever sender's host reads it."""
        seconds, micros = self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def failed(self) -> list[dict[str, Any]]:
        return [json.loads(_text(raw)) for raw in self.redis.lrange(self.failed_list, 0, -1)]

    def due(self, now_ms: int, limit: int = 100) -> list[Notification]:
        out = []
        entries: list[tuple[Any, dict[Any, Any]]] = self.redis.xrange(self.stream, count=limit) or []  # type: ignore[assignment]
        for entry, fields in entries:
            f = {_text(k): _text(v) for k, v in (fields or {}).items()}
            if int(f["due_ms"]) > now_ms:
                continue
            entry_id = _text(entry)
            out.append(Notification(entry_id, f["delivery_id"] or entry_id, f["url"], f["body"], int(f["attempts"]),
                                    int(f["created_ms"]), int(f["due_ms"])))
        return out

    def delivered(self, note: Notification) -> None:
        self.redis.xdel(self.stream, note.entry)

    def retry_later(self, note: Notification, due_ms: int) -> None:
        """Write the notification back with one more attempt counted, then drop the old entry (in one step)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.xadd(self.stream, {"url": note.url, "body": note.body, "attempts": note.attempts + 1,
                                "created_ms": note.created_ms, "due_ms": due_ms, "delivery_id": note.delivery_id})
        pipe.xdel(self.stream, note.entry)
        pipe.execute()

    def give_up(self, note: Notification, reason: str) -> None:
        record = {"delivery_id": note.delivery_id, "url": note.url, "body": note.body,
                  "attempts": note.attempts + 1, "created_ms": note.created_ms, "reason": reason[:500]}
        pipe = self.redis.pipeline(transaction=True)
        pipe.lpush(self.failed_list, json.dumps(record))
        pipe.ltrim(self.failed_list, 0, 9999)
        pipe.xdel(self.stream, note.entry)
        pipe.execute()


class OutboxSender:
    """The thread that delivers the outbox; of all supervisors, only the lock holder sends."""

    def __init__(self, outbox: Outbox, *, poll_s: float = 0.5, timeout_s: float = 5.0, backoff_s: float = 1.0,
                 max_backoff_s: float = 30.0, give_up_s: float = 86_400.0, lock_ttl_s: float = 10.0) -> None:
        self.outbox = outbox
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.give_up_s = give_up_s
        self.lock_ttl_ms = int(lock_ttl_s * 1000)
        self.name = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="toolbag-outbox", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.timeout_s + 5)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                metrics.WEBHOOKS_PENDING.set(self.outbox.pending())
                if self.holds_lock():
                    self.send_due()
            except redis.RedisError as err:
                log.warning("webhook outbox: redis error, retrying: %s", err)

    def holds_lock(self) -> bool:
        """Take the sender lock, or renew it when this sender holds it."""
        r, key = self.outbox.redis, self.outbox.lock
        if r.set(key, self.name, nx=True, px=self.lock_ttl_ms):
            return True
        if _text(r.get(key) or b"") == self.name:
            r.pexpire(key, self.lock_ttl_ms)
            return True
        return False

    def send_due(self) -> int:
        """POST every notification that is due; returns how many were delivered."""
        delivered = 0
        now_ms = self.outbox.now_ms()
        for note in self.outbox.due(now_ms):
            if self._stop.is_set():
                break
            problem = self._post(note)
            if problem is None:
                self.outbox.delivered(note)
                metrics.WEBHOOK_DELIVERIES.labels("delivered").inc()
                delivered += 1
                continue
            metrics.WEBHOOK_DELIVERIES.labels("retried").inc()
            if now_ms - note.created_ms >= self.give_up_s * 1000:
                self.outbox.give_up(note, problem)
                metrics.WEBHOOK_DELIVERIES.labels("failed").inc()
                log.warning("webhook given up after %d attempts: %s", note.attempts + 1, problem)
                continue
            delay_s = min(self.max_backoff_s, self.backoff_s * 2 ** min(note.attempts, 30))
            self.outbox.retry_later(note, now_ms + int(delay_s * 1000))
        return delivered

    def _post(self, note: Notification) -> str | None:
        """None when the receiver took it (2xx), else why not."""
        request = urllib.request.Request(note.url, data=note.body.encode(), method="POST", headers={
            "content-type": "application/json", DELIVERY_HEADER: note.delivery_id})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                status = int(response.status)
        except urllib.error.HTTPError as err:
            return f"HTTP {err.code}"
        except (OSError, ValueError) as err:
            return f"{type(err).__name__}: {err}"
        return None if 200 <= status < 300 else f"HTTP {status}"
