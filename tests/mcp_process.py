"""The test MCP server (tests/gateway_mcp_server.py) as a child process: its path, for stdio configurations,
and a fixture serving it over streamable HTTP (registered for every test module by conftest.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

MCP_TEST_SERVER = Path(__file__).resolve().parent / "gateway_mcp_server.py"


@pytest.fixture(scope="module")
def mcp_http_server() -> Iterator[str]:
    """The URL of the test MCP server over streamable HTTP, one server per test module."""
    proc = subprocess.Popen([sys.executable, str(MCP_TEST_SERVER), "http"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().strip())
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
