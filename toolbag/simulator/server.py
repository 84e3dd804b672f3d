"""Running the simulator: :class:`SimulatorServer` (a background thread, for tests and ``toolbag dev``) and
:func:`serve_forever` (the foreground ``toolbag simulator`` command)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
import urllib.request
from types import TracebackType
from typing import Any

import uvicorn

from .app import SimulatorApp
from .faults import FaultPlan
from .state import LogEntry, SimState

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


class _Uvicorn(uvicorn.Server):
    """uvicorn that wakes hung/stalled simulator requests before its graceful shutdown waits for them."""

    def __init__(self, config: uvicorn.Config, state: SimState) -> None:
        super().__init__(config)
        self.sim_state = state
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.sim_state.shutdown()
        await super().shutdown(sockets=sockets)


def _config(app: Any, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http="h11",  # reset/cut abort the h11 cycle's transport
        lifespan="off",
        access_log=False,
        log_level=log_level,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=3,
        backlog=4096,
    )


class SimulatorServer:
    """The simulator on ``127.0.0.1:port`` (0 = a free port) in a background thread.

    ``start()`` returns once it accepts connections; ``url`` is then e.g. ``http://127.0.0.1:PORT``.
    Stopping is prompt even with hung or stalled requests open (they are aborted).
    """

    def __init__(self, port: int = 0, plan: FaultPlan | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        simulator = SimulatorApp(plan)
        self.app = simulator.starlette_app()
        self.state = simulator.state
        self._server: _Uvicorn | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Bind, start serving in a daemon thread and wait until connections are accepted."""
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        # proto=IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections (it checks sock.proto);
        # with proto 0, Nagle + delayed ACK add ~40 ms to every response.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.set_inheritable(True)
        self.port = int(sock.getsockname()[1])
        self._socket = sock
        server = _Uvicorn(_config(self.app, self.host, self.port, "warning"), self.state)
        self._server = server
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                                        name=f"toolbag-simulator-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"simulator on {self.url} exited during startup")
            if time.monotonic() > deadline:
                raise TimeoutError(f"simulator on {self.url} did not start within {START_TIMEOUT_S} s")
            time.sleep(0.005)

    def stop(self) -> None:
        """Stop serving: abort hung requests, close connections, join the thread."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        if server.loop is not None and not server.loop.is_closed():
            try:
                server.loop.call_soon_threadsafe(self.state.shutdown)
            except RuntimeError:  # loop already closed
                pass
        server.should_exit = True
        thread.join(STOP_TIMEOUT_S)
        if thread.is_alive():
            server.force_exit = True
            thread.join(STOP_TIMEOUT_S)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> SimulatorServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------------ admin helpers (over HTTP)

    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")

    def log(self, last: int | None = None) -> list[LogEntry]:
        """Every request seen so far, oldest first (``GET /_sim/log``); ``last`` keeps only the newest N."""
        path = "/_sim/log" if last is None else f"/_sim/log?last={int(last)}"
        entries: list[LogEntry] = self._admin("GET", path)
        return entries

    def batches(self) -> list[dict[str, Any]]:
        """Every vendor batch the simulator holds, oldest first (``GET /_sim/batches``)."""
        found: list[dict[str, Any]] = self._admin("GET", "/_sim/batches")
        return found

    def clear_log(self) -> None:
        self._admin("DELETE", "/_sim/log")

    def set_faults(self, plan: dict[str, Any]) -> None:
        """Replace the runtime plan (``POST /_sim/faults``); same shape as the faults file."""
        self._admin("POST", "/_sim/faults", plan)

    def clear_faults(self) -> None:
        self._admin("DELETE", "/_sim/faults")


def serve_forever(host: str, port: int, plan: FaultPlan | None) -> None:
    """Serve the simulator in the foreground until interrupted.

    Ctrl-C (SIGINT) stops it promptly, aborting hung requests, and returns normally; SIGTERM stops it the same
    way and then ends the process with the signal's default action, as uvicorn does.
    """
    simulator = SimulatorApp(plan)
    server = _Uvicorn(_config(simulator.starlette_app(), host, port, "info"), simulator.state)
    logging.getLogger("toolbag.simulator").info("simulator on http://%s:%d", host, port)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises the captured Ctrl-C after its (prompt) shutdown
        pass
