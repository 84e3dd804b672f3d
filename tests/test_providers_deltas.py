"""The adapter template's delta sink: every vendor hands a streamed attempt's text over as it arrives."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from toolbag.providers.adapter import VendorAdapter
from toolbag.providers.anthropic_provider import AnthropicAdapter
from toolbag.providers.base import AttemptFailure, Message, ModelRequest, OutcomeKind
from toolbag.providers.gemini_provider import GeminiAdapter
from toolbag.providers.openai_provider import OpenAIAdapter
from toolbag.simulator.server import SimulatorServer

MODELS = {"anthropic": "claude-t", "openai": "gpt-t", "gemini": "gemini-t"}


class Collected:
    def __init__(self) -> None:
        self.pieces: list[str] = []

    def write(self, text: str) -> None:
        self.pieces.append(text)


@pytest.fixture(scope="module")
def adapters() -> Iterator[dict[str, VendorAdapter]]:
    with SimulatorServer() as sim:
        made: dict[str, VendorAdapter] = {
            "anthropic": AnthropicAdapter(api_key="sk-a", base_url=sim.url),
            "openai": OpenAIAdapter(api_key="sk-o", base_url=sim.url + "/v1"),
            "gemini": GeminiAdapter(api_key="sk-g", base_url=sim.url),
        }
        yield made
        for adapter in made.values():
            adapter.close()


def request(text: str, *, stream: bool) -> ModelRequest:
    return ModelRequest(messages=(Message("user", text),), stream=stream)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_a_streamed_answer_reaches_the_sink_piece_by_piece(adapters: dict[str, VendorAdapter], kind: str) -> None:
    sink = Collected()
    response = adapters[kind].call(MODELS[kind], request("Summarize the quarterly report please", stream=True), sink)
    assert len(sink.pieces) > 1 and "".join(sink.pieces) == response.text


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_a_plain_call_never_touches_the_sink(adapters: dict[str, VendorAdapter], kind: str) -> None:
    sink = Collected()
    response = adapters[kind].call(MODELS[kind], request("Summarize the quarterly report please", stream=False), sink)
    assert response.text and sink.pieces == []


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_a_refusal_mid_stream_leaves_the_text_sent_so_far_in_the_sink(
    adapters: dict[str, VendorAdapter], kind: str
) -> None:
    sink = Collected()
    with pytest.raises(AttemptFailure) as info:
        adapters[kind].call(MODELS[kind], request("Summarize this [[sim:midstream_refusal]]", stream=True), sink)
    assert info.value.kind is OutcomeKind.REFUSED
    assert sink.pieces and "".join(sink.pieces) == info.value.partial_text
