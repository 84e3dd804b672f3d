"""The async call path (``VendorAdapter.acall``, a worker's event loop) against the simulator: the same wire and
the same answers as the sync path, for every vendor, plain and streamed, many calls at once over the shards."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from toolbag.providers.adapter import VendorAdapter
from toolbag.providers.anthropic_provider import AnthropicAdapter
from toolbag.providers.base import AttemptFailure, Message, ModelRequest, OutcomeKind
from toolbag.providers.gemini_provider import GeminiAdapter
from toolbag.providers.openai_provider import OpenAIAdapter
from toolbag.providers.shards import SHARD_CONNECTIONS, ClientShards
from toolbag.simulator.server import SimulatorServer

MODELS = {"anthropic": "claude-t", "openai": "gpt-t", "gemini": "gemini-t"}
CONCURRENT = 2 * SHARD_CONNECTIONS + 8  # more calls at once than one shard holds: three shards in use


class Collected:
    def __init__(self) -> None:
        self.pieces: list[str] = []

    def write(self, text: str) -> None:
        self.pieces.append(text)


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    with SimulatorServer() as sim:
        yield sim.url


def adapter(kind: str, url: str, connections: int = 16) -> VendorAdapter:  # type: ignore[type-arg]
    if kind == "anthropic":
        return AnthropicAdapter(api_key="sk-a", base_url=url, max_connections=connections)
    if kind == "openai":
        return OpenAIAdapter(api_key="sk-o", base_url=url + "/v1", max_connections=connections)
    return GeminiAdapter(api_key="sk-g", base_url=url, max_connections=connections)


def request(text: str, *, stream: bool) -> ModelRequest:
    return ModelRequest(messages=(Message("user", text),), stream=stream, extra_headers={"x-sim-latency-ms": "50"})


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_the_async_path_sends_and_reads_what_the_sync_path_does(sim_url: str, kind: str) -> None:
    made = adapter(kind, sim_url)

    async def both() -> tuple[str, str, list[str]]:
        sink = Collected()
        plain = await made.acall(MODELS[kind], request("Summarize the quarterly report please", stream=False))
        streamed = await made.acall(MODELS[kind], request("Summarize the quarterly report please", stream=True),
                                    sink)
        await made.aclose()
        return plain.text, streamed.text, sink.pieces

    try:
        plain, streamed, pieces = asyncio.run(both())
        sync = made.call(MODELS[kind], request("Summarize the quarterly report please", stream=False))
    finally:
        made.close()
    assert plain == streamed == sync.text and plain
    assert len(pieces) > 1 and "".join(pieces) == streamed


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_an_async_failure_is_the_same_outcome_with_its_partial_text(sim_url: str, kind: str) -> None:
    made = adapter(kind, sim_url)

    async def refused() -> AttemptFailure:
        sink = Collected()
        try:
            await made.acall(MODELS[kind], request("Summarize this [[sim:midstream_refusal]]", stream=True), sink)
        except AttemptFailure as failure:
            assert sink.pieces and "".join(sink.pieces) == failure.partial_text
            return failure
        finally:
            await made.aclose()
        raise AssertionError("the refusal did not fail the attempt")

    try:
        assert asyncio.run(refused()).kind is OutcomeKind.REFUSED
    finally:
        made.close()


def test_many_calls_at_once_spread_over_shards_none_fuller_than_its_size(sim_url: str) -> None:
    made = OpenAIAdapter(api_key="sk-o", base_url=sim_url + "/v1", max_connections=CONCURRENT)
    shards: ClientShards[object] = made._async  # type: ignore[assignment]
    peak = [0] * shards.count

    async def many() -> list[str]:
        async def one(i: int) -> str:
            response = await made.acall("gpt-t", request(f"job {i}", stream=False))
            busy = shards._busy
            for n, value in enumerate(busy):
                peak[n] = max(peak[n], value)
            return response.text

        texts = await asyncio.gather(*(one(i) for i in range(CONCURRENT)))
        await made.aclose()
        return texts

    try:
        texts = asyncio.run(many())
    finally:
        made.close()
    assert len(texts) == CONCURRENT and all(texts)
    assert shards.count == 3 and max(peak) <= shards.per_shard
