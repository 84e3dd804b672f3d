"""Attempt leases kept alive by one heartbeat per worker process (a thread, or a task on the worker's event
loop), on Redis's clock."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable

from toolbag.store import JobStore
from toolbag.store.connection import UNAVAILABLE_ERRORS, OutageLog

log = logging.getLogger("toolbag.leases")


class LeaseKeeper:
    """Renews the lease of every attempt this process is running, every ``ttl/3`` seconds.

    A lease found gone (swept as lost, or the job cancelled) is reported through ``lost()``: the attempt
    may finish, but its completion will fail the token check and be discarded.
    """

    def __init__(self, store: JobStore, lease_ttl_s: float) -> None:
        self.store = store
        self.lease_ttl_s = lease_ttl_s
        self._members: set[str] = set()
        self._lost: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="toolbag-lease-keeper", daemon=True)
        self._presence: str | None = None
        self._outage = OutageLog(log, "lease keeper")  # Redis away: said once, not a traceback every beat

    def announce(self, presence: str) -> None:
        """Start advertising this process as consuming (``<provider>|<name>``) on every beat."""
        self._presence = presence
        self.store.worker_heartbeat(presence)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._presence:
            try:
                self.store.worker_gone(self._presence)
            except Exception:
                log.warning("could not withdraw worker presence", exc_info=True)

    def add(self, member: str) -> None:
        with self._lock:
            self._members.add(member)

    def remove(self, member: str) -> None:
        with self._lock:
            self._members.discard(member)
            self._lost.discard(member)

    def lost(self, member: str) -> bool:
        with self._lock:
            return member in self._lost

    def _loop(self) -> None:
        while not self._stop.wait(self.lease_ttl_s / 3):
            try:
                gone = self.store.renew_leases(self._snapshot(), self.lease_ttl_s, presence=self._presence)
            except Exception as err:
                self._missed(err)
                continue
            self._renewed(gone)

    async def serve(
        self, renew: Callable[[Iterable[str], float, str | None], Awaitable[list[str]]]
    ) -> None:
        """The heartbeat as a task on an event loop (instead of :meth:`start`'s thread), renewing through
        ``renew(members, ttl_s, presence)``; ends after :meth:`stop`."""
        while not self._stop.is_set():
            await asyncio.sleep(self.lease_ttl_s / 3)
            if self._stop.is_set():
                return
            try:
                gone = await renew(self._snapshot(), self.lease_ttl_s, self._presence)
            except Exception as err:
                self._missed(err)
                continue
            self._renewed(gone)

    def _missed(self, err: Exception) -> None:
        """A beat that failed: the next one retries (leases outlive one missed beat)."""
        if isinstance(err, UNAVAILABLE_ERRORS):
            self._outage.failed(err)  # said once, not every beat
        else:
            log.warning("lease renewal failed", exc_info=err)

    def _renewed(self, gone: list[str]) -> None:
        self._outage.ok()
        if gone:
            with self._lock:
                self._lost.update(gone)

    def _snapshot(self) -> list[str]:
        with self._lock:
            return list(self._members)
