"""Fault plans (file, dict, runtime admin API), seeded probabilities and sequences, the request log, the
latency / rate-limit / context-window models, schema instances and directive parsing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import jsonschema
import openai
import pydantic
import pytest

from toolbag.simulator.faults import Fault, FaultPlan, FaultPlanError, directive_fault, parse_fault
from toolbag.simulator.generate import strip_directives, summary, tool_directives
from toolbag.simulator.schema_instance import schema_instance
from toolbag.simulator.server import SimulatorServer

EXAMPLE = Path(__file__).resolve().parents[1] / "toolbag" / "simulator" / "faults.example.yaml"


_HTTP = httpx2.Client(timeout=30)  # one client: building one costs ~0.1 s (TLS context)


def chat(sim: SimulatorServer, model: str = "gpt-x", text: str = "hello") -> httpx2.Response:
    """One raw Chat Completions request (the SDKs are covered elsewhere; this keeps loops cheap)."""
    return _HTTP.post(f"{sim.url}/v1/chat/completions", headers={"authorization": "Bearer k"},
                      json={"model": model, "messages": [{"role": "user", "content": text}]})


def outcomes(sim: SimulatorServer, count: int, model: str = "gpt-x", text: str = "hello") -> list[int]:
    return [chat(sim, model, text).status_code for _ in range(count)]


# ---------------------------------------------------------------------------------------------- files


def test_example_file_loads() -> None:
    plan = FaultPlan.from_file(EXAMPLE)
    assert plan.seed == 42 and len(plan.rules) == 3
    assert plan.rules[1].sequence == (Fault("rate_limit", "2"), Fault("rate_limit", "2"), Fault("ok"))
    assert plan.latency_for("claude-haiku") is not None and plan.latency_for("gpt-x") is None
    assert plan.context_window_for("tiny-1") == 1000


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("rules: [{model: 'x', fault: explode}]", "rules[0].fault: unknown fault 'explode'"),
        ("rules: [", "not valid YAML"),
        ("latency: &l {'a-*': {ttft_ms: 1}}\nrules: [{model: 'x', fault: refusal, match: *l}]",
         "aliases are not allowed"),
        ("rules: " + "[" * 2000 + "]" * 2000, "not valid YAML"),
        ("rulez: []", "unknown key(s) rulez"),
        ("rules: [{fault: refusal, probability: 1.5}]", "rules[0].probability: must be a number between 0 and 1"),
        ("rules: [{fault: refusal, sequence: [ok]}]", "rules[0]: give exactly one of 'fault' or 'sequence'"),
        ("rules: [{sequence: [ok, 'hang:soon']}]", "rules[0].sequence[1]: fault 'hang': parameter 'soon'"),
        ("rules: [{fault: refusal, vendor: mistral}]", "rules[0].vendor: must be one of"),
        ("latency: {'claude-*': {ttft_ms: -1}}", "latency['claude-*'].ttft_ms: must be a non-negative number"),
        ("seed: abc", "seed: must be an integer"),
        ("- just a list", "the plan must be a mapping"),
    ],
)
def test_malformed_faults_file_names_file_and_problem(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "faults.yaml"
    path.write_text(content)
    with pytest.raises(FaultPlanError) as info:
        FaultPlan.from_file(path)
    assert str(path) in str(info.value) and problem in str(info.value)


def test_missing_faults_file(tmp_path: Path) -> None:
    with pytest.raises(FaultPlanError, match="cannot read"):
        FaultPlan.from_file(tmp_path / "nope.yaml")


def test_empty_file_is_an_empty_plan(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing\n")
    assert FaultPlan.from_file(path).empty


def test_plan_round_trips_through_to_dict() -> None:
    plan = FaultPlan.from_file(EXAMPLE)
    again = FaultPlan.from_dict(plan.to_dict())
    assert again.to_dict() == plan.to_dict()


# ---------------------------------------------------------------------------------------------- selection


def test_seeded_probability_is_reproducible() -> None:
    def draws(seed: int) -> list[bool]:
        plan = FaultPlan.from_dict({"seed": seed, "rules": [{"model": "m*", "fault": "refusal", "probability": 0.1}]})
        return [plan.select("openai", "m1", "t") is not None for _ in range(2000)]

    first, again, other = draws(7), draws(7), draws(8)
    assert first == again and first != other
    assert 140 <= sum(first) <= 260  # about 10 %


def test_rules_filter_by_model_vendor_and_text() -> None:
    plan = FaultPlan.from_dict({"rules": [
        {"model": "claude-*", "vendor": "anthropic", "fault": "overloaded"},
        {"model": "*", "match": "invoice", "fault": "cut"},
    ]})
    assert plan.select("anthropic", "claude-1", "hi") == Fault("overloaded")
    assert plan.select("openai", "claude-1", "hi") is None
    assert plan.select("openai", "gpt", "the invoice") == Fault("cut")
    assert plan.select("gemini", "gemini-x", "no match") is None


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    """conftest's ``sim`` with a plan, fresh per test: the plan's sequences advance with every request."""
    plan = FaultPlan.from_dict({
        "rules": [{"model": "gpt-*", "sequence": ["rate_limit", "rate_limit", "ok", "server_error"]},
                  {"model": "seq-*", "match": "only-me", "sequence": ["unavailable"]}],
        "ratelimit": {"claude-*": {"requests_remaining": 3, "requests_limit": 50}},
        "context_windows": {"tiny-*": 20},
    })
    with SimulatorServer(plan=plan) as server:
        yield server


def test_sequence_advances_per_matching_request_then_stops_applying(sim: SimulatorServer) -> None:
    assert outcomes(sim, 6) == [429, 429, 200, 500, 200, 200]
    assert outcomes(sim, 2, model="other") == [200, 200]
    assert [chat(sim, "seq-1", t).status_code for t in ["x", "only-me", "only-me"]] == [200, 503, 200]
    faults = [e["fault"] for e in sim.log() if e["model"] == "gpt-x"]
    assert faults == ["rate_limit", "rate_limit", None, "server_error", None, None]
    assert {e["fault_source"] for e in sim.log() if e["fault"]} == {"plan"}


def test_seeded_probability_through_the_server() -> None:
    plan = {"seed": 3, "rules": [{"model": "*", "fault": "overloaded", "probability": 0.3}]}
    runs = []
    for _ in range(2):
        with SimulatorServer(plan=FaultPlan.from_dict(plan)) as server:
            runs.append(outcomes(server, 40))
    assert runs[0] == runs[1]
    assert 4 <= runs[0].count(503) <= 20


def test_ratelimit_headers_from_the_plan(sim: SimulatorServer) -> None:
    claude = anthropic.Anthropic(api_key="k", base_url=sim.url, max_retries=0)
    raw = claude.messages.with_raw_response.create(model="claude-x", max_tokens=10,
                                                   messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["anthropic-ratelimit-requests-remaining"] == "3"
    assert raw.headers["anthropic-ratelimit-requests-limit"] == "50"
    other = claude.messages.with_raw_response.create(model="other", max_tokens=10,
                                                     messages=[{"role": "user", "content": "hi"}])
    assert int(other.headers["anthropic-ratelimit-requests-remaining"]) > 3


def test_context_window_gives_native_context_error(sim: SimulatorServer) -> None:
    client = openai.OpenAI(api_key="k", base_url=sim.url + "/v1", max_retries=0)
    assert client.chat.completions.create(model="tiny-1", messages=[{"role": "user", "content": "short"}]).choices
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny-1", messages=[{"role": "user", "content": "word " * 40}])
    assert info.value.code == "context_length_exceeded"
    assert sim.log()[-1]["fault_source"] == "context_window"


def test_latency_model_paces_streams() -> None:
    plan = FaultPlan.from_dict({"latency": {"claude-*": {"ttft_ms": 80, "tokens_per_s": 200}}})
    with SimulatorServer(plan=plan) as server:
        claude = anthropic.Anthropic(api_key="k", base_url=server.url, max_retries=0)
        text = "one two three four five six seven eight"
        with claude.messages.stream(model="claude-x", max_tokens=100,
                                    messages=[{"role": "user", "content": text}]) as stream:
            streamed = "".join(stream.text_stream)
        plain = claude.messages.create(model="claude-x", max_tokens=100, messages=[{"role": "user", "content": text}])
        log = server.log()
    output_tokens = plain.usage.output_tokens
    assert streamed == plain.content[0].text  # type: ignore[union-attr]
    stream_entry, plain_entry = log
    assert stream_entry["ttft_ms"] >= 80
    assert stream_entry["duration_ms"] >= 80 + 1000 * (output_tokens - 3) / 200  # first piece is not paced
    assert plain_entry["duration_ms"] >= 80 + 1000 * output_tokens / 200


# ---------------------------------------------------------------------------------------------- admin API


def test_runtime_faults_admin_endpoints(sim: SimulatorServer) -> None:
    response = _HTTP.post(f"{sim.url}/_sim/faults", json={"rules": [{"model": "rt-*", "fault": "permission"}]})
    assert response.status_code == 200
    assert chat(sim, "rt-1").status_code == 403
    shown = _HTTP.get(f"{sim.url}/_sim/faults").json()
    assert shown["runtime"]["rules"][0]["fault"] == "permission" and shown["base"]["rules"]
    assert _HTTP.delete(f"{sim.url}/_sim/faults").status_code == 200
    assert chat(sim, "rt-1").status_code == 200
    assert _HTTP.get(f"{sim.url}/_sim/faults").json()["runtime"] is None


def test_runtime_rules_come_before_file_rules(sim: SimulatorServer) -> None:
    sim.set_faults({"rules": [{"model": "gpt-*", "sequence": ["bad_request"]}]})
    assert outcomes(sim, 2) == [400, 429]  # runtime rule first, then the file's sequence
    sim.clear_faults()


def test_invalid_runtime_plan_is_rejected_with_reason(sim: SimulatorServer) -> None:
    response = _HTTP.post(f"{sim.url}/_sim/faults", json={"rules": [{"fault": "nope"}]})
    assert response.status_code == 400
    assert "rules[0].fault: unknown fault 'nope'" in response.json()["error"]
    bad_json = _HTTP.post(f"{sim.url}/_sim/faults", content=b"{not json")
    assert bad_json.status_code == 400


def test_log_records_every_request_and_can_be_cleared(sim: SimulatorServer) -> None:
    sim.clear_log()
    oai = openai.OpenAI(api_key="k", base_url=sim.url + "/v1", max_retries=0)
    oai.chat.completions.create(model="free", messages=[{"role": "user", "content": "a"}])
    list(oai.chat.completions.create(model="free", messages=[{"role": "user", "content": "a b"}], stream=True))
    with pytest.raises(openai.RateLimitError):
        oai.responses.create(model="gpt-x", input="a")
    log = _HTTP.get(f"{sim.url}/_sim/log").json()
    assert [(e["vendor"], e["path"], e["model"], e["stream"], e["status"], e["fault"]) for e in log] == [
        ("openai", "/v1/chat/completions", "free", False, 200, None),
        ("openai", "/v1/chat/completions", "free", True, 200, None),
        ("openai", "/v1/responses", "gpt-x", False, 429, "rate_limit"),
    ]
    for entry in log:
        assert entry["duration_ms"] >= 0 and entry["ttft_ms"] is not None and entry["time"] > 0
        assert entry["end"] == "complete" and entry["retry_count"] == 0
    assert _HTTP.delete(f"{sim.url}/_sim/log").status_code == 200
    assert sim.log() == []


def test_health(sim: SimulatorServer) -> None:
    assert _HTTP.get(f"{sim.url}/_sim/health").json()["status"] == "ok"


def test_unknown_gemini_method_is_native_404(sim: SimulatorServer) -> None:
    response = _HTTP.post(f"{sim.url}/v1beta/models/gemini-x:embedContent", json={},
                           headers={"x-goog-api-key": "k"})
    assert response.status_code == 404 and response.json()["error"]["status"] == "NOT_FOUND"


def test_serve_forever_stops_promptly_on_sigint(tmp_path: Path) -> None:
    faults = tmp_path / "faults.yaml"
    faults.write_text("rules: [{model: 'hang-*', fault: hang}]\n")
    with SimulatorServer() as probe:  # borrow a free port number
        port = probe.port
    script = ("import sys; from toolbag.simulator.server import serve_forever; "
              "from toolbag.simulator.faults import FaultPlan; "
              "serve_forever('127.0.0.1', int(sys.argv[1]), FaultPlan.from_file(sys.argv[2]))")
    proc = subprocess.Popen([sys.executable, "-c", script, str(port), str(faults)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                _HTTP.get(url + "/_sim/health")
                break
            except httpx2.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, "simulator did not come up"
                time.sleep(0.05)
        client = httpx2.Client(timeout=60)
        errors: list[BaseException] = []

        def hung() -> None:
            try:
                client.post(url + "/v1/chat/completions", headers={"authorization": "Bearer k"},
                            json={"model": "hang-1", "messages": [{"role": "user", "content": "x"}]})
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=hung)
        thread.start()
        deadline = time.monotonic() + 30
        while not [e for e in _HTTP.get(url + "/_sim/log").json() if e["model"] == "hang-1"]:
            assert time.monotonic() < deadline, "the hung request never reached the simulator"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        thread.join(30)
        assert errors and isinstance(errors[0], httpx2.TransportError)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------------------------------- generation


class Leaf(pydantic.BaseModel):
    label: str = pydantic.Field(min_length=3, max_length=5)
    weight: float = pydantic.Field(gt=0, le=0.5)


class Tree(pydantic.BaseModel):
    name: str
    children: list[Tree] = pydantic.Field(min_length=0)
    leaf: Leaf | None
    kind: str = pydantic.Field(json_schema_extra={"enum": ["a", "b"]})


SCHEMAS: list[dict[str, Any]] = [
    Tree.model_json_schema(),
    {"type": "object", "properties": {"n": {"type": "integer", "minimum": 10, "maximum": 20, "multipleOf": 3}},
     "required": ["n"]},
    {"type": "object", "properties": {"x": {"type": "number", "exclusiveMinimum": 5, "exclusiveMaximum": 6}}},
    {"type": "array", "items": {"type": "string"}, "minItems": 3, "uniqueItems": True},
    {"type": "object", "properties": {"v": {"const": 42}, "w": {"type": ["null", "boolean"]},
                                      "when": {"type": "string", "format": "date-time"},
                                      "mail": {"type": "string", "format": "email"}}},
    {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
               {"properties": {"b": {"type": "integer", "maximum": -3}}, "required": ["b"]}]},
    {"oneOf": [{"type": "string", "maxLength": 2}, {"type": "integer"}]},
    {"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/definitions/item"}}},
     "definitions": {"item": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}}},
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=range(len(SCHEMAS)))
def test_schema_instances_are_valid(schema: dict[str, Any]) -> None:
    value = schema_instance(schema, "some words from the prompt")
    jsonschema.validate(value, schema)
    assert value == schema_instance(schema, "some words from the prompt")  # deterministic


def test_schema_instance_includes_every_property_and_first_enum() -> None:
    value = schema_instance(Tree.model_json_schema(), "hint")
    assert set(value) == {"name", "children", "leaf", "kind"}
    assert value["kind"] == "a" and value["name"] == "hint" and len(value["children"]) == 1


def test_gemini_uppercase_schema() -> None:
    schema = {"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}, "s": {"type": "STRING"},
                                               "l": {"type": "ARRAY", "items": {"type": "NUMBER"}, "minItems": "2"}},
              "property_ordering": ["s", "n", "l"]}
    value = schema_instance(schema, "hi")
    assert list(value) == ["s", "n", "l"] and value["n"] == 1 and value["l"] == [1.0, 2.0]


def test_directive_parsing() -> None:
    assert directive_fault("plain text", "m") is None
    assert directive_fault("x [[sim:rate_limit:3]] y", "m") == Fault("rate_limit", "3")
    assert directive_fault("[[sim:tool=read]] [[sim:cut@gpt-*]] [[sim:stall]]", "claude-1") == Fault("stall")
    assert directive_fault("[[sim:cut@gpt-*]]", "gpt-4") == Fault("cut")
    with pytest.raises(FaultPlanError, match="directive"):
        directive_fault("[[sim:nonsense]]", "m")
    assert parse_fault("quota:spend_limit") == Fault("quota", "spend_limit")
    with pytest.raises(FaultPlanError, match="takes no parameter"):
        parse_fault("server_error:5")


def test_tool_directives_and_stripping() -> None:
    text = 'a [[sim:tool=read]] b [[sim:tool=write {"path": "x]]y", "n": [1]}]] c [[sim:refusal]] d'
    assert tool_directives(text) == [("read", None), ("write", {"path": "x]]y", "n": [1]})]
    assert strip_directives(text).split() == ["a", "b", "c", "d"]
    assert summary("one two three", 2) == "one two ..."
    assert json.loads(json.dumps(summary(""))) == "(empty)"
