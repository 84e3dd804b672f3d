"""A failure's reason as it is kept: no part of a secret in it wherever the vendor echoed it, one line, clipped;
and the context note a context-length reason leads with, read from each vendor's own numbers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from google.genai import errors as genai_errors

from toolbag.providers.adapter import Received, Reply, VendorAdapter
from toolbag.providers.base import AttemptFailure, Message, ModelRequest, OutcomeKind
from toolbag.providers.batch import BatchOutcome, OpenAIBatches
from toolbag.providers.clock import AttemptClock
from toolbag.providers.errors import classify, context_report
from toolbag.providers.reasons import MAX_REASON_CHARS, ContextReport
from toolbag.providers.stop_reasons import openai_finish_failure

KEY = "sk-live-Zq9XwT4vB7nM2pL8kR5sD1fG"  # 32 characters, as real keys are long
REQ = httpx2.Request("POST", "http://127.0.0.1:9/v1/messages")
REQUEST = ModelRequest(messages=(Message("user", "hi"),))
ANTHROPIC = anthropic.Anthropic(api_key="k", base_url="http://127.0.0.1:9")
OPENAI = openai.OpenAI(api_key="k", base_url="http://127.0.0.1:9")


def anthropic_error(status: int, error_type: str, message: str) -> BaseException:
    body = {"type": "error", "error": {"type": error_type, "message": message}, "request_id": "req_1"}
    response = httpx2.Response(status, json=body, request=REQ)
    return ANTHROPIC._make_status_error(json.dumps(body), body=body, response=response)


def openai_error(status: int, code: str | None, message: str) -> BaseException:
    body = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    response = httpx2.Response(status, json={"error": body}, request=REQ)
    return OPENAI._make_status_error(message, body=body, response=response)


def gemini_error(code: int, status: str, message: str) -> BaseException:
    response = httpx2.Response(code, json={"error": {"code": code, "message": message, "status": status}},
                               request=REQ)
    try:
        genai_errors.APIError.raise_for_response(response)
    except genai_errors.APIError as err:
        return err
    raise AssertionError("no error raised")


class EchoingVendor(VendorAdapter[Received]):
    """A vendor whose every call raises ``error``: the attempt skeleton's own failure path, without a network."""

    kind = "openai"

    def __init__(self, error: BaseException) -> None:
        super().__init__(api_key=KEY)
        self.error = error

    def wire_request(self, model: str, request: ModelRequest) -> dict[str, Any]:
        return {"model": model}

    def close(self) -> None:
        pass

    def _new_received(self) -> Received:
        return Received()

    def _call_arguments(self, wire: dict[str, Any], request: ModelRequest, clock: AttemptClock) -> dict[str, Any]:
        return wire

    def _send(self, arguments: dict[str, Any], clock: AttemptClock, received: Received) -> Reply:
        raise self.error

    def _stream(self, arguments: dict[str, Any], clock: AttemptClock, received: Received) -> Reply:
        raise self.error


def kept(error: BaseException) -> AttemptFailure:
    with pytest.raises(AttemptFailure) as info:
        EchoingVendor(error).call("m", REQUEST)
    return info.value


def leaked(text: str) -> list[str]:
    """Every piece of KEY of six or more characters found in ``text``."""
    return [KEY[i:i + 6] for i in range(len(KEY) - 5) if KEY[i:i + 6] in text]


ECHOES: dict[str, Callable[[str], BaseException]] = {
    "anthropic": lambda m: anthropic_error(401, "authentication_error", m),
    "openai": lambda m: openai_error(401, "invalid_api_key", m),
    "gemini": lambda m: gemini_error(400, "INVALID_ARGUMENT", m),
    "transport": lambda m: httpx2.ConnectError(m),
    "refusal": lambda m: openai_finish_failure("stop", m) or AssertionError("no failure"),
}
# Offsets of the key in the vendor's message: near the start, every offset from well before the clip point
# to after it (whatever each vendor's prefix, some echo straddles the point where the reason is cut), far after.
OFFSETS = [0, 7, *range(MAX_REASON_CHARS - 200, MAX_REASON_CHARS + 10), 2000]


@pytest.mark.parametrize("vendor", list(ECHOES))
def test_an_echoed_key_leaves_no_part_of_itself_at_any_offset(vendor: str) -> None:
    for offset in OFFSETS:
        message = "x" * offset + f" Incorrect API key provided: {KEY}. " + "y" * 600
        failure = kept(ECHOES[vendor](message))
        for text in (failure.reason, str(failure), repr(failure), *map(str, failure.args)):
            assert not leaked(text), (vendor, offset, text)
        assert len(failure.reason) <= MAX_REASON_CHARS and "\n" not in failure.reason


def test_an_echoed_key_in_a_refusal_and_in_the_partial_text_is_removed() -> None:
    failure = kept(openai_finish_failure("stop", f"I will not use {KEY}", partial_text=f"{KEY[:3]}{KEY}") or
                   AssertionError())
    assert not leaked(failure.reason) and not leaked(failure.partial_text)
    assert "***" in failure.reason


def test_a_short_vendor_reason_is_kept_whole_and_on_one_line() -> None:
    failure = kept(anthropic_error(529, "overloaded_error", "Overloaded\nplease retry"))
    assert failure.reason == "anthropic HTTP 529 overloaded_error: Overloaded please retry"


# -------------------------------------------------------------------------------------- context numbers


@pytest.mark.parametrize(("message", "requested", "limit"), [
    ("prompt is too long: 250000 tokens > 200000 maximum", 250000, 200000),
    ("input length and `max_tokens` exceed context limit: 197000 + 8192 > 200000, decrease input length or "
     "`max_tokens` and try again", 205192, 200000),
    ("This model's maximum context length is 128000 tokens. However, your messages resulted in 150000 tokens. "
     "Please reduce the length of the messages.", 150000, 128000),
    ("This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (4000 in the "
     "messages, 1000 in the completion). Please reduce the length of the messages or completion.", 5000, 4096),
    ("The input token count (2000000) exceeds the maximum number of tokens allowed (1048576).", 2000000, 1048576),
    ("The input token count exceeds the maximum number of tokens allowed 1048576.", None, 1048576),
    ("Your input exceeds the context window of this model. Please adjust your input and try again.", None, None),
    ("maximum context length is 0 tokens; you requested 99999999999999999 tokens", None, None),
])
def test_each_vendors_context_numbers_are_read(message: str, requested: int | None, limit: int | None) -> None:
    assert context_report(message) == ContextReport(requested, limit)


@pytest.mark.parametrize("error", [
    anthropic_error(400, "invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum"),
    openai_error(400, "context_length_exceeded", "This model's maximum context length is 200000 tokens. However, "
                 "your messages resulted in 250000 tokens. Please reduce the length of the messages."),
    gemini_error(400, "INVALID_ARGUMENT", "The input token count (250000) exceeds the maximum number of tokens "
                 "allowed (200000)."),
], ids=["anthropic", "openai", "gemini"])
def test_a_context_reason_starts_with_the_note_and_keeps_the_vendors_words(error: BaseException) -> None:
    failure = kept(error)
    assert failure.kind is OutcomeKind.CONTEXT_TOO_LONG
    assert failure.reason.startswith("[context: request 250000 tokens, limit 200000 tokens] ")
    assert ContextReport.read(failure.reason) == ContextReport(250000, 200000)
    assert "250000" in failure.reason.split("] ", 1)[1], "the vendor's own words follow the note"


def test_a_context_error_without_numbers_has_no_note_and_a_note_cannot_be_planted() -> None:
    failure = classify(openai_error(400, "context_length_exceeded", "Your input exceeds the context window of "
                                    "this model."), vendor="openai")
    assert failure.kind is OutcomeKind.CONTEXT_TOO_LONG and not failure.reason.startswith("[context:")
    assert ContextReport.read(failure.reason) == ContextReport()
    planted = "x [context: request 1 tokens, limit 999999999 tokens] y"
    assert ContextReport.read(planted) == ContextReport(), "only a note the reason starts with counts"


def test_the_scan_for_numbers_is_bounded_on_long_hostile_text() -> None:
    hostile = "1" * 200_000 + " tokens > " + "2," * 100_000
    assert context_report(hostile) == ContextReport()
    assert context_report("9" * 5000 + " + " * 5000) == ContextReport()


class EchoingBatches(OpenAIBatches):
    """An OpenAI batch whose one item failed with a vendor message echoing the key (no network)."""

    def __init__(self, message: str) -> None:
        super().__init__(api_key=KEY, base_url="http://127.0.0.1:9/v1")
        self.message = message

    def _outcomes(self, batch_id: str) -> Iterator[BatchOutcome]:
        yield self._outcome({"custom_id": "a", "response": {"status_code": 401, "body": {"error": {
            "message": self.message, "type": "invalid_request_error", "code": "invalid_api_key"}}}})


@pytest.mark.parametrize("offset", [0, MAX_REASON_CHARS - 40, MAX_REASON_CHARS - 10, 2000])
def test_a_batch_items_echoed_key_is_removed_before_the_reason_is_clipped(offset: int) -> None:
    batches = EchoingBatches("x" * offset + f" Incorrect API key provided: {KEY}. " + "y" * 600)
    (outcome,) = list(batches.results("batch_1"))
    assert outcome.failure is not None and outcome.failure.kind is OutcomeKind.AUTH
    for text in (outcome.failure.reason, str(outcome.failure)):
        assert not leaked(text), (offset, text)
    assert len(outcome.failure.reason) <= MAX_REASON_CHARS


@pytest.mark.parametrize("offset", [0, MAX_REASON_CHARS - 40, MAX_REASON_CHARS - 10])
def test_a_batch_calls_echoed_key_is_removed_before_the_reason_is_clipped(offset: int) -> None:
    batches = EchoingBatches("")
    error = anthropic_error(401, "authentication_error", "x" * offset + f" Incorrect API key provided: {KEY}.")

    def call() -> None:
        raise error

    with pytest.raises(AttemptFailure) as info:
        batches._call(call)
    assert info.value.kind is OutcomeKind.AUTH and not leaked(str(info.value)) and not leaked(info.value.reason)
    assert len(info.value.reason) <= MAX_REASON_CHARS
