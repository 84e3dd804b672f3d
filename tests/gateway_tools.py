"""Local tools for the gateway tests (registered with ``module: tests.gateway_tools``)."""

from __future__ import annotations

import os
import time

import redis

from toolbag.gateway.local import tool

SIGNAL_PREFIX = "gwtest:"


@tool("test.echo")
def echo(text: str) -> str:
    """Return the text unchanged (a tool result a test controls, e.g. one carrying an injection)."""
    return text


@tool("test.boom")
def boom() -> str:
    """Always fails."""
    raise RuntimeError("the tool broke")


@tool("test.sleep")
def sleep(seconds: float) -> str:
    """Sleep, then answer."""
    time.sleep(seconds)
    return "awake"


@tool("test.wait")
def wait(key: str, then: str = "") -> str:
    """Tell the test this call started (RPUSH gwtest:started:<key>), wait until it says go (BLPOP
    gwtest:go:<key>), then return ``then`` (a test puts a directive there to make the model call again)."""
    client = redis.Redis.from_url(os.environ["TOOLBAG_REDIS_URL"])
    try:
        client.rpush(f"{SIGNAL_PREFIX}started:{key}", "1")
        if client.blpop([f"{SIGNAL_PREFIX}go:{key}"], timeout=30) is None:
            return "nobody said go"
    finally:
        client.close()
    return f"released {key}. {then}"
