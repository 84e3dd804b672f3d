"""Every simulator fault produces the vendor-native signal the real SDK surfaces (no SDK retries): exception
class and status, retry hints, refusal fields, transport errors, stream breakage; faults are chosen by header,
by ``[[sim:…]]`` directive, and never block other requests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from toolbag.simulator.server import SimulatorServer

PROMPT = "Tell me a long story about cats and dogs and the weather in Paris"
SURFACES = ["anthropic", "chat", "responses", "gemini"]
STREAMS = [False, True]


@dataclass
class Clients:
    sim: SimulatorServer
    claude: anthropic.Anthropic
    oai: openai.OpenAI
    gem: genai.Client


@pytest.fixture(scope="module")
def clients(sim: SimulatorServer) -> Clients:
    return Clients(
        sim=sim,
        claude=anthropic.Anthropic(api_key="k", base_url=sim.url, max_retries=0, timeout=20.0),
        oai=openai.OpenAI(api_key="k", base_url=sim.url + "/v1", max_retries=0, timeout=20.0),
        gem=genai.Client(api_key="k", http_options=types.HttpOptions(base_url=sim.url, api_version="v1beta",
                                                                      timeout=20_000)),
    )


@dataclass
class Result:
    """What one SDK call produced: streamed text pieces (or the whole text) and the final object."""

    pieces: list[str]
    final: Any


def call(c: Clients, surface: str, *, stream: bool, fault: str | None = None, text: str = PROMPT,
         model: str | None = None, timeout_s: float | None = None, sink: list[str] | None = None) -> Result:
    """One request through the real SDK; ``sink`` collects streamed pieces even when the call raises."""
    headers = {"x-sim-fault": fault} if fault else {}
    pieces = sink if sink is not None else []
    if surface == "anthropic":
        client = c.claude if timeout_s is None else c.claude.with_options(timeout=timeout_s)
        kwargs: Any = {"model": model or "claude-x", "max_tokens": 512,
                       "messages": [{"role": "user", "content": text}], "extra_headers": headers}
        if not stream:
            message = client.messages.create(**kwargs)
            return Result([b.text for b in message.content if b.type == "text"], message)
        with client.messages.stream(**kwargs) as s:
            for piece in s.text_stream:
                pieces.append(piece)
            return Result(pieces, s.get_final_message())
    if surface == "chat":
        oai = c.oai if timeout_s is None else c.oai.with_options(timeout=timeout_s)
        kwargs = {"model": model or "gpt-x", "messages": [{"role": "user", "content": text}], "extra_headers": headers}
        if not stream:
            completion = oai.chat.completions.create(**kwargs)
            return Result([completion.choices[0].message.content or ""], completion)
        chunks = []
        for chunk in oai.chat.completions.create(stream=True, **kwargs):
            chunks.append(chunk)
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
        return Result(pieces, chunks)
    if surface == "responses":
        oai = c.oai if timeout_s is None else c.oai.with_options(timeout=timeout_s)
        kwargs = {"model": model or "gpt-x", "input": text, "extra_headers": headers}
        if not stream:
            response = oai.responses.create(**kwargs)
            return Result([response.output_text], response)
        events = []
        for event in oai.responses.create(stream=True, **kwargs):
            events.append(event)
            if event.type == "response.output_text.delta":
                pieces.append(event.delta)
        return Result(pieces, events)
    options = types.HttpOptions(headers=headers, timeout=None if timeout_s is None else int(timeout_s * 1000))
    config = types.GenerateContentConfig(http_options=options)
    if not stream:
        response = c.gem.models.generate_content(model=model or "gemini-x", contents=text, config=config)
        return Result([response.text or ""], response)
    chunks_g = []
    for chunk in c.gem.models.generate_content_stream(model=model or "gemini-x", contents=text, config=config):
        chunks_g.append(chunk)
        if chunk.text:
            pieces.append(chunk.text)
    return Result(pieces, chunks_g)


def last_log(c: Clients) -> dict[str, Any]:
    return c.sim.log(last=1)[0]


def wait_for_log(c: Clients, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        for entry in reversed(c.sim.log()):
            if predicate(entry):
                return entry
        if time.monotonic() > deadline:
            raise AssertionError("no matching simulator log entry")
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------------- HTTP error faults

ERRORS: dict[str, dict[str, tuple[type[Exception], int]]] = {
    "rate_limit": {"anthropic": (anthropic.RateLimitError, 429), "openai": (openai.RateLimitError, 429),
                   "gemini": (genai_errors.ClientError, 429)},
    "rate_limit_bare": {"anthropic": (anthropic.RateLimitError, 429), "openai": (openai.RateLimitError, 429),
                        "gemini": (genai_errors.ClientError, 429)},
    "overloaded": {"anthropic": (anthropic.OverloadedError, 529), "openai": (openai.InternalServerError, 503),
                   "gemini": (genai_errors.ServerError, 503)},
    "server_error": {"anthropic": (anthropic.InternalServerError, 500),
                     "openai": (openai.InternalServerError, 500), "gemini": (genai_errors.ServerError, 500)},
    "unavailable": {"anthropic": (anthropic.ServiceUnavailableError, 503),
                    "openai": (openai.InternalServerError, 503), "gemini": (genai_errors.ServerError, 503)},
    "context_length": {"anthropic": (anthropic.BadRequestError, 400), "openai": (openai.BadRequestError, 400),
                       "gemini": (genai_errors.ClientError, 400)},
    "quota": {"anthropic": (anthropic.PaymentRequiredError, 402), "openai": (openai.RateLimitError, 429),
              "gemini": (genai_errors.ClientError, 429)},
    "auth": {"anthropic": (anthropic.AuthenticationError, 401), "openai": (openai.AuthenticationError, 401),
             "gemini": (genai_errors.ClientError, 401)},
    "permission": {"anthropic": (anthropic.PermissionDeniedError, 403),
                   "openai": (openai.PermissionDeniedError, 403), "gemini": (genai_errors.ClientError, 403)},
    "bad_request": {"anthropic": (anthropic.BadRequestError, 400), "openai": (openai.BadRequestError, 400),
                    "gemini": (genai_errors.ClientError, 400)},
}


def _status(exc: Exception) -> int:
    status: Any = getattr(exc, "status_code", None) or getattr(exc, "code", 0)
    return int(status)


@pytest.mark.parametrize("stream", STREAMS, ids=["plain", "stream"])
@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("fault", sorted(ERRORS))
def test_error_fault_raises_native_exception(clients: Clients, fault: str, surface: str, stream: bool) -> None:
    family = "openai" if surface in ("chat", "responses") else surface
    exc_type, status = ERRORS[fault][family]
    with pytest.raises(exc_type) as info:
        call(clients, surface, stream=stream, fault=fault)
    assert _status(info.value) == status
    entry = last_log(clients)
    assert entry["fault"] == fault and entry["status"] == status and entry["fault_source"] == "header"


def test_rate_limit_retry_hints(clients: Clients) -> None:
    with pytest.raises(anthropic.RateLimitError) as a_info:
        call(clients, "anthropic", stream=False, fault="rate_limit:3")
    assert a_info.value.response.headers["retry-after"] == "3"
    assert a_info.value.response.headers["retry-after-ms"] == "3000"
    assert a_info.value.type == "rate_limit_error"
    with pytest.raises(openai.RateLimitError) as o_info:
        call(clients, "chat", stream=False, fault="rate_limit:2.5")
    assert o_info.value.response.headers["retry-after"] == "2.5"
    assert o_info.value.response.headers["retry-after-ms"] == "2500"
    assert o_info.value.code == "rate_limit_exceeded"
    with pytest.raises(genai_errors.ClientError) as g_info:
        call(clients, "gemini", stream=False, fault="rate_limit:7")
    assert g_info.value.status == "RESOURCE_EXHAUSTED"
    details = g_info.value.details["error"]["details"]
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"} in details


def test_default_retry_after_is_one_second(clients: Clients) -> None:
    with pytest.raises(anthropic.RateLimitError) as info:
        call(clients, "anthropic", stream=False, fault="rate_limit")
    assert info.value.response.headers["retry-after"] == "1"


def test_bare_rate_limit_has_no_hint(clients: Clients) -> None:
    with pytest.raises(anthropic.RateLimitError) as a_info:
        call(clients, "anthropic", stream=False, fault="rate_limit_bare")
    assert "retry-after" not in a_info.value.response.headers
    with pytest.raises(openai.RateLimitError) as o_info:
        call(clients, "responses", stream=False, fault="rate_limit_bare")
    assert "retry-after" not in o_info.value.response.headers
    with pytest.raises(genai_errors.ClientError) as g_info:
        call(clients, "gemini", stream=False, fault="rate_limit_bare")
    assert "details" not in g_info.value.details["error"]


def test_quota_signals_are_distinguishable_from_rate_limits(clients: Clients) -> None:
    with pytest.raises(anthropic.PaymentRequiredError) as a_info:
        call(clients, "anthropic", stream=False, fault="quota")
    assert a_info.value.type == "billing_error" and "credit balance" in str(a_info.value)
    with pytest.raises(anthropic.RateLimitError) as spend:
        call(clients, "anthropic", stream=False, fault="quota:spend_limit")
    assert spend.value.body["error"]["details"]["error_code"] == "enforced_spend_limit_reached"  # type: ignore[index]
    assert "retry-after" not in spend.value.response.headers
    with pytest.raises(openai.RateLimitError) as o_info:
        call(clients, "chat", stream=False, fault="quota")
    assert o_info.value.code == "insufficient_quota" and o_info.value.type == "insufficient_quota"
    assert "retry-after" not in o_info.value.response.headers
    with pytest.raises(genai_errors.ClientError) as g_info:
        call(clients, "gemini", stream=False, fault="quota")
    kinds = [d["@type"].rsplit(".", 1)[-1] for d in g_info.value.details["error"]["details"]]
    assert "QuotaFailure" in kinds and "RetryInfo" not in kinds


def test_context_length_messages(clients: Clients) -> None:
    with pytest.raises(anthropic.BadRequestError) as a_info:
        call(clients, "anthropic", stream=False, fault="context_length")
    assert "prompt is too long" in str(a_info.value)
    with pytest.raises(openai.BadRequestError) as o_info:
        call(clients, "chat", stream=False, fault="context_length")
    assert o_info.value.code == "context_length_exceeded"
    with pytest.raises(genai_errors.ClientError) as g_info:
        call(clients, "gemini", stream=False, fault="context_length")
    assert "exceeds the maximum number of tokens" in (g_info.value.message or "")


# ---------------------------------------------------------------------------------------------- refusals


def test_anthropic_refusal(clients: Clients) -> None:
    for stream in STREAMS:
        result = call(clients, "anthropic", stream=stream, fault="refusal")
        assert result.final.stop_reason == "refusal" and result.pieces == []
        assert result.final.stop_details.type == "refusal"


def test_openai_chat_refusals(clients: Clients) -> None:
    plain = call(clients, "chat", stream=False, fault="refusal").final.choices[0]
    assert plain.message.refusal and plain.message.content is None and plain.finish_reason == "stop"
    chunks = call(clients, "chat", stream=True, fault="refusal").final
    assert "".join(c.choices[0].delta.refusal or "" for c in chunks if c.choices) == plain.message.refusal
    filtered = call(clients, "chat", stream=False, fault="refusal_filter").final.choices[0]
    assert filtered.finish_reason == "content_filter" and filtered.message.content is None
    streamed = call(clients, "chat", stream=True, fault="refusal_filter").final
    assert [c.choices[0].finish_reason for c in streamed if c.choices][-1] == "content_filter"


def test_openai_chat_parse_surfaces_refusal_and_filter(clients: Clients) -> None:
    import pydantic

    class Answer(pydantic.BaseModel):
        text: str

    completion = clients.oai.chat.completions.parse(
        model="gpt-x", messages=[{"role": "user", "content": "x"}], response_format=Answer,
        extra_headers={"x-sim-fault": "refusal"},
    )
    assert completion.choices[0].message.parsed is None and completion.choices[0].message.refusal
    with pytest.raises(openai.ContentFilterFinishReasonError):
        clients.oai.chat.completions.parse(
            model="gpt-x", messages=[{"role": "user", "content": "x"}], response_format=Answer,
            extra_headers={"x-sim-fault": "refusal_filter"},
        )


def test_openai_responses_refusals(clients: Clients) -> None:
    response = call(clients, "responses", stream=False, fault="refusal").final
    assert response.output_text == "" and response.output[0].content[0].type == "refusal"
    events = call(clients, "responses", stream=True, fault="refusal").final
    assert "response.refusal.done" in [e.type for e in events] and events[-1].type == "response.completed"
    filtered = call(clients, "responses", stream=False, fault="refusal_filter").final
    assert filtered.status == "incomplete" and filtered.incomplete_details.reason == "content_filter"


def test_gemini_refusals(clients: Clients) -> None:
    for stream in STREAMS:
        blocked = call(clients, "gemini", stream=stream, fault="refusal").final
        first = blocked[0] if stream else blocked
        assert first.prompt_feedback.block_reason == types.BlockedReason.SAFETY
        assert first.candidates is None and first.text is None
        finished = call(clients, "gemini", stream=stream, fault="refusal_finish").final
        last = finished[-1] if stream else finished
        assert last.candidates[0].finish_reason == types.FinishReason.SAFETY and last.text is None


# ---------------------------------------------------------------------------------------------- stream faults


def _transport_error(surface: str) -> tuple[type[BaseException], ...]:
    return (httpx2.TransportError, anthropic.APIConnectionError, openai.APIConnectionError)


@pytest.mark.parametrize("surface", SURFACES)
def test_cut_stream_loses_the_end(clients: Clients, surface: str) -> None:
    pieces: list[str] = []
    with pytest.raises(_transport_error(surface)):
        call(clients, surface, stream=True, fault="cut", sink=pieces)
    assert pieces, "some text arrives before the cut"
    assert len("".join(pieces)) < len(PROMPT)
    assert wait_for_log(clients, lambda e: e["fault"] == "cut")["end"] == "cut"


@pytest.mark.parametrize("surface", SURFACES)
def test_cut_plain_response_is_a_connection_error(clients: Clients, surface: str) -> None:
    with pytest.raises(_transport_error(surface)):
        call(clients, surface, stream=False, fault="cut")


@pytest.mark.parametrize("stream", STREAMS, ids=["plain", "stream"])
@pytest.mark.parametrize("surface", SURFACES)
def test_reset_is_a_connection_error(clients: Clients, surface: str, stream: bool) -> None:
    with pytest.raises(_transport_error(surface)):
        call(clients, surface, stream=stream, fault="reset")
    assert wait_for_log(clients, lambda e: e["fault"] == "reset")["end"] == "reset"
    assert call(clients, surface, stream=stream).pieces  # the server keeps serving


@pytest.mark.parametrize("surface", SURFACES)
def test_malformed_chunk_breaks_the_parse(clients: Clients, surface: str) -> None:
    pieces: list[str] = []
    with pytest.raises(ValueError):  # json.JSONDecodeError / genai UnknownApiResponseError
        call(clients, surface, stream=True, fault="malformed", sink=pieces)
    assert pieces


def test_malformed_plain_body(clients: Clients) -> None:
    with pytest.raises(ValueError):
        call(clients, "chat", stream=False, fault="malformed")


def test_midstream_error_anthropic(clients: Clients) -> None:
    pieces: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as info:
        call(clients, "anthropic", stream=True, fault="midstream_error", sink=pieces)
    assert pieces and info.value.status_code == 200 and info.value.type == "overloaded_error"


def test_midstream_error_openai_chat(clients: Clients) -> None:
    pieces: list[str] = []
    with pytest.raises(openai.APIError) as info:
        call(clients, "chat", stream=True, fault="midstream_error", sink=pieces)
    assert pieces and not isinstance(info.value, openai.APIStatusError)


def test_midstream_error_openai_responses(clients: Clients) -> None:
    result = call(clients, "responses", stream=True, fault="midstream_error")
    kinds = [e.type for e in result.final]
    assert result.pieces and kinds[-2:] == ["error", "response.failed"]
    assert result.final[-1].response.error.code == "server_error"


def test_midstream_error_gemini(clients: Clients) -> None:
    pieces: list[str] = []
    with pytest.raises(genai_errors.ServerError) as info:
        call(clients, "gemini", stream=True, fault="midstream_error", sink=pieces)
    assert pieces and info.value.code == 503


def test_midstream_refusal(clients: Clients) -> None:
    a = call(clients, "anthropic", stream=True, fault="midstream_refusal")
    assert a.pieces and a.final.stop_reason == "refusal"
    chat = call(clients, "chat", stream=True, fault="midstream_refusal")
    assert chat.pieces and [c.choices[0].finish_reason for c in chat.final if c.choices][-1] == "content_filter"
    resp = call(clients, "responses", stream=True, fault="midstream_refusal")
    assert resp.pieces and resp.final[-1].type == "response.incomplete"
    assert resp.final[-1].response.incomplete_details.reason == "content_filter"
    gem = call(clients, "gemini", stream=True, fault="midstream_refusal")
    assert gem.pieces and gem.final[-1].candidates[0].finish_reason == types.FinishReason.SAFETY


_TIMEOUTS = (anthropic.APITimeoutError, openai.APITimeoutError, httpx2.TimeoutException)


@pytest.mark.parametrize("surface", SURFACES)
def test_stall_sends_first_chunk_then_nothing(clients: Clients, surface: str) -> None:
    pieces: list[str] = []
    with pytest.raises(_TIMEOUTS):
        call(clients, surface, stream=True, fault="stall", timeout_s=0.4, sink=pieces)
    assert len(pieces) == 1
    # the client gave up and closed the connection: the stalled request ends instead of hanging on
    entry = wait_for_log(clients, lambda e: e["fault"] == "stall" and e["end"] is not None)
    assert entry["end"] == "disconnected"


@pytest.mark.parametrize("surface", SURFACES)
def test_hang_times_out_the_client(clients: Clients, surface: str) -> None:
    with pytest.raises(_TIMEOUTS):
        call(clients, surface, stream=False, fault="hang", timeout_s=0.3)


def test_hang_does_not_block_other_requests(clients: Clients) -> None:
    outcome: list[BaseException | str] = []

    def hung() -> None:
        try:
            outcome.append(call(clients, "anthropic", stream=False, fault="hang:2", timeout_s=10).pieces[0])
        except BaseException as exc:  # pragma: no cover - reported below
            outcome.append(exc)

    thread = threading.Thread(target=hung)
    thread.start()
    wait_for_log(clients, lambda e: e["fault"] == "hang:2")
    for surface in SURFACES:
        assert call(clients, surface, stream=False).pieces  # served while the other one hangs
    assert thread.is_alive() and outcome == []
    thread.join(20)
    assert outcome == [f"[claude-x] {PROMPT}"]  # after the hang the request is answered


def test_stop_is_prompt_with_hung_and_stalled_requests() -> None:
    server = SimulatorServer()
    server.start()
    claude = anthropic.Anthropic(api_key="k", base_url=server.url, max_retries=0, timeout=60.0)
    errors: list[BaseException] = []

    def run(fault: str, stream: bool) -> None:
        try:
            if stream:
                with claude.messages.stream(model="m", max_tokens=50, messages=[{"role": "user", "content": "x y z"}],
                                            extra_headers={"x-sim-fault": fault}) as s:
                    for _ in s.text_stream:
                        pass
            else:
                claude.messages.create(model="m", max_tokens=50, messages=[{"role": "user", "content": "x"}],
                                       extra_headers={"x-sim-fault": fault})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=args) for args in [("hang", False), ("stall", True)]]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while len([e for e in server.log() if e["fault"] in ("hang", "stall")]) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    stopper.join(30)
    assert not stopper.is_alive(), "stop() must not wait for hung requests"
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    assert len(errors) == 2
    assert all(isinstance(e, anthropic.APIConnectionError | httpx2.TransportError) for e in errors)


# ---------------------------------------------------------------------------------------------- timing


def test_slow_first_token_delays_the_answer(clients: Clients) -> None:
    result = call(clients, "chat", stream=False, fault="slow_first_token:150")
    assert result.pieces == [f"[gpt-x] {PROMPT}"]
    assert last_log(clients)["ttft_ms"] >= 150
    streamed = call(clients, "gemini", stream=True, fault="slow_first_token:150")
    assert "".join(streamed.pieces) == f"[gemini-x] {PROMPT}"
    entry = last_log(clients)
    assert entry["ttft_ms"] >= 150 and entry["stream"] is True


def test_latency_header_sets_a_fixed_delay(clients: Clients) -> None:
    clients.claude.messages.create(model="claude-x", max_tokens=50, messages=[{"role": "user", "content": "x"}],
                                   extra_headers={"x-sim-latency-ms": "120"})
    entry = last_log(clients)
    assert entry["duration_ms"] >= 120 and entry["fault"] is None


# ---------------------------------------------------------------------------------------------- directives


def test_directive_in_user_text(clients: Clients) -> None:
    result = call(clients, "anthropic", stream=False, text="please [[sim:refusal]]")
    assert result.final.stop_reason == "refusal"
    assert last_log(clients)["fault_source"] == "directive"


def test_directive_in_system_text(clients: Clients) -> None:
    with pytest.raises(genai_errors.ServerError):
        clients.gem.models.generate_content(
            model="gemini-x", contents="hello",
            config=types.GenerateContentConfig(system_instruction="[[sim:overloaded]]"),
        )


def test_model_scoped_directive(clients: Clients) -> None:
    text = "hello [[sim:rate_limit:4@gpt-*]]"
    with pytest.raises(openai.RateLimitError) as info:
        call(clients, "chat", stream=False, text=text)
    assert info.value.response.headers["retry-after"] == "4"
    assert call(clients, "anthropic", stream=False, text=text).final.stop_reason == "end_turn"
    assert call(clients, "anthropic", stream=False, text=text).pieces == ["[claude-x] hello"]


def test_first_directive_wins_and_header_beats_directive(clients: Clients) -> None:
    text = "a [[sim:overloaded@claude-*]] b [[sim:server_error]] c [[sim:refusal]]"
    with pytest.raises(anthropic.OverloadedError):
        call(clients, "anthropic", stream=False, text=text)
    with pytest.raises(openai.InternalServerError) as info:
        call(clients, "chat", stream=False, text=text)
    assert info.value.status_code == 500
    assert call(clients, "chat", stream=False, text=text, fault="ok").pieces == ["[gpt-x] a b c"]


def test_unknown_fault_is_a_clear_400(clients: Clients) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        call(clients, "anthropic", stream=False, fault="explode")
    assert "unknown fault 'explode'" in str(info.value) and "x-sim-fault" in str(info.value)
    with pytest.raises(openai.BadRequestError) as o_info:
        call(clients, "chat", stream=False, text="[[sim:slow_first_token]]")
    assert "milliseconds" in str(o_info.value)
