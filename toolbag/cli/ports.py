"""Whether a server command can listen where it was told, checked before it starts: one error line naming the
option to change (a name that does not resolve, an address this machine does not have, a port in use)."""

from __future__ import annotations

import errno
import socket

from toolbag.cli.fail import fail


def check_listenable(host: str, port: int, *, host_option: str = "--host", port_option: str = "--port") -> None:
    """Return when ``host:port`` can be listened on now; else :func:`~toolbag.cli.fail.fail` naming the option."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (OSError, UnicodeError) as err:
        fail(f"{host_option}: cannot resolve {host!r} ({getattr(err, 'strerror', None) or err})")
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                fail(f"{port_option}: port {port} on {host} is in use; choose another with {port_option}")
            fail(f"{host_option}: cannot listen on {host}:{port} ({err.strerror or err})")
