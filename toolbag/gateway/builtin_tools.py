"""Harmless built-in tools, so a fresh fleet has something to grant: ``clock.now``, ``math.eval``,
``text.stats``, and a per-process scratch pad ``kv.get`` / ``kv.set`` (demo only: each worker process has
its own, and it is lost on restart)."""

from __future__ import annotations

import ast
import math
import operator
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from toolbag.gateway.local import tool

_MAX_EXPRESSION_CHARS = 500
_MAX_EXPONENT = 1000
_MAX_MAGNITUDE = 1e300

Number = int | float | complex  # a negative base to a fractional power is complex

_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Number]] = {"sqrt": math.sqrt, "abs": abs, "round": round, "min": min, "max": max}
_CONSTANTS = {"pi": math.pi, "e": math.e}


def _eval(node: ast.AST) -> Number:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > _MAX_EXPONENT:
            raise ValueError(f"exponent larger than {_MAX_EXPONENT}")
        value = _BINARY[type(node.op)](left, right)
        if isinstance(value, int | float) and abs(value) > _MAX_MAGNITUDE:
            raise ValueError("result too large")
        return value
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        return _FUNCTIONS[node.func.id](*(_eval(a) for a in node.args))
    raise ValueError(f"not allowed in an arithmetic expression: {ast.dump(node)[:60]}")


@tool("math.eval")
def math_eval(expression: str) -> str:
    """Evaluate an arithmetic expression: numbers, + - * / // % **, parentheses, pi, e, sqrt, abs, round,
    min, max."""
    if len(expression) > _MAX_EXPRESSION_CHARS:
        raise ValueError(f"expression longer than {_MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as err:
        raise ValueError(f"not an arithmetic expression: {err.msg}") from None
    try:
        value = _eval(tree)
    except ZeroDivisionError:
        raise ValueError("division by zero") from None
    return repr(value)


@tool("clock.now")
def clock_now(timezone: str = "UTC") -> str:
    """The current date and time (ISO 8601) in an IANA time zone such as UTC or Europe/Paris."""
    try:
        zone = UTC if timezone.upper() == "UTC" else ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {timezone!r}") from None
    return datetime.now(zone).isoformat(timespec="seconds")


@tool("text.stats")
def text_stats(text: str) -> dict[str, int]:
    """Count characters, words and lines of a text."""
    return {"characters": len(text), "words": len(text.split()), "lines": text.count("\n") + 1 if text else 0}


_KV: dict[str, str] = {}
_KV_LOCK = threading.Lock()
_KV_MAX_KEYS = 1000


@tool("kv.get")
def kv_get(key: str) -> str:
    """Read a value from this worker's scratch pad (empty string when unset)."""
    with _KV_LOCK:
        return _KV.get(key, "")


@tool("kv.set")
def kv_set(key: str, value: str) -> str:
    """Write a value to this worker's scratch pad."""
    with _KV_LOCK:
        if key not in _KV and len(_KV) >= _KV_MAX_KEYS:
            raise ValueError("scratch pad full")
        _KV[key] = value[:10_000]
    return "ok"
