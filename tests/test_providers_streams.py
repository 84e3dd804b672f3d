"""Loopback servers of our own for what the simulator does not do: streams that end cleanly (EOF, valid
HTTP framing) but without the vendor's terminal event, and a port nobody listens on.

The simulator's ``cut`` resets the connection; here a loopback server closes it politely, which the SDKs
do not treat as an error (the OpenAI SDK simply stops iterating). Only the adapters' own terminal-event
checks stand between such a stream and a false success.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from toolbag.providers.anthropic_provider import AnthropicAdapter
from toolbag.providers.base import Adapter, AttemptFailure, Message, ModelRequest, OutcomeKind, Timeouts
from toolbag.providers.gemini_provider import GeminiAdapter
from toolbag.providers.openai_provider import OpenAIAdapter


def _sse(event: str | None, data: dict[str, object]) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


ANTHROPIC_BODY = b"".join(
    [
        _sse("message_start", {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-eof", "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 0}}}),
        _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
        _sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": "Hello"}}),
    ]
)
OPENAI_BODY = _sse(None, {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-eof",
                          "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello"},
                                       "finish_reason": None}]})
GEMINI_BODY = _sse(None, {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hello"}]}, "index": 0}],
                          "modelVersion": "gemini-eof"})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # the body ends when the connection closes

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path.endswith("/messages"):
            body = ANTHROPIC_BODY
        elif self.path.endswith("/chat/completions"):
            body = OPENAI_BODY
        else:
            body = GEMINI_BODY
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def eof_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("kind", ["anthropic", "openai", "gemini"])
def test_clean_eof_without_terminal_event_is_not_ok(eof_server: str, kind: str) -> None:
    adapter: Adapter
    if kind == "anthropic":
        adapter = AnthropicAdapter(api_key="k", base_url=eof_server)
    elif kind == "openai":
        adapter = OpenAIAdapter(api_key="k", base_url=eof_server + "/v1")
    else:
        adapter = GeminiAdapter(api_key="k", base_url=eof_server)
    request = ModelRequest(messages=(Message("user", "hi"),), stream=True, timeouts=Timeouts(2, 5, 10))
    try:
        with pytest.raises(AttemptFailure) as info:
            adapter.call(f"{kind}-eof", request)
    finally:
        adapter.close()
    assert info.value.kind is OutcomeKind.NETWORK
    assert "cut stream" in info.value.reason
    assert info.value.partial_text == "Hello"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("kind", ["anthropic", "openai", "gemini"])
def test_connection_refused_is_network(kind: str, stream: bool) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    adapter: Adapter
    if kind == "anthropic":
        adapter = AnthropicAdapter(api_key="k", base_url=url)
    elif kind == "openai":
        adapter = OpenAIAdapter(api_key="k", base_url=url + "/v1")
    else:
        adapter = GeminiAdapter(api_key="k", base_url=url)
    request = ModelRequest(messages=(Message("user", "hi"),), stream=stream, timeouts=Timeouts(2, 5, 10))
    try:
        with pytest.raises(AttemptFailure) as info:
            adapter.call("m", request)
    finally:
        adapter.close()
    assert info.value.kind is OutcomeKind.NETWORK
    assert "refused" in info.value.reason.lower() or "connect" in info.value.reason.lower()
