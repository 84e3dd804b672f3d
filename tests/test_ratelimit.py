"""Fleet-wide rate limits against a real Redis: pacing, lanes (interactive reserve), concurrency, tokens,
vendor signals, the hand-back transition and the admission seam. Windows are short; assertions are on
slot times and counts computed from Redis' own clock, never on how fast this machine is."""

from __future__ import annotations

import asyncio
import bisect
import copy
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
import yaml

from toolbag.attempt.context import AttemptContext
from toolbag.attempt.tokens import estimate_input_tokens
from toolbag.config import DEFAULT_CONFIG_PATH, Config, parse_config
from toolbag.jobs import AttemptRecord, DecisionRecord
from toolbag.providers.base import AttemptFailure, Message, ModelRequest, ModelResponse, OutcomeKind, Usage
from toolbag.ratelimit import HandBack, RateLimiter, reservation, vendor_signals
from toolbag.routing import Router
from toolbag.store import JobStore, NewJob
from toolbag.store.keys import Keys
from toolbag.supervisor.decisions import Situation, decide

DEFAULTS: dict[str, Any] = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())


def make_config(limits: dict[str, dict[str, Any]], *, caller_limits: dict[str, Any] | None = None,
                account: dict[str, Any] | None = None, wait_s: float = 1.0) -> Config:
    data = copy.deepcopy(DEFAULTS)
    for model, lim in limits.items():
        data["models"][model]["limits"] = lim
    if caller_limits:
        data["caller_limits"] = caller_limits
    if account:
        data["providers"]["openai"]["limits"] = account
    for tier in data["tiers"].values():
        tier["ratelimit_wait_s"] = wait_s
    return parse_config(data)


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def limiter(client: redis.Redis, config: Config) -> RateLimiter:
    return RateLimiter(config, client, Keys(f"r{uuid.uuid4().hex[:6]}:"))


def server_ms(client: redis.Redis) -> float:
    sec, usec = client.time()
    return sec * 1000 + usec / 1000


def take(rl: RateLimiter, model: str = "gpt-luna", tier: str = "batch", cost: int = 10, horizon_s: float = 60,
         caller: str = "c") -> tuple[bool, float, str]:
    g = rl.acquire(model, tier, caller, cost, horizon_s=horizon_s, ticket_id=uuid.uuid4().hex)
    return g.admitted, g.wait_s, g.lanes


def slot(rl: RateLimiter, model: str = "gpt-luna", caller: str = "c") -> float:
    """The slot (unix seconds, Redis clock) a batch call gets."""
    g = rl.acquire(model, "batch", caller, 10, horizon_s=60, ticket_id=uuid.uuid4().hex)
    assert g.admitted
    return g.slot_s


def max_in_window(times_s: list[float], window_s: float) -> int:
    times_s = sorted(times_s)
    return max((bisect.bisect_left(times_s, t + window_s) - i for i, t in enumerate(times_s)), default=0)


REQUEST = ModelRequest(messages=(Message("user", "hello there"),), system="Task: test.", max_output_tokens=100)


def ctx(model: str = "gpt-luna", tier: str = "batch", job_id: str = "j1", caller: str = "c") -> AttemptContext:
    return AttemptContext(job_id=job_id, capability="summarize", tier=tier, caller=caller, model=model,
                          model_id=model, provider="openai", skill=None, deadline_ms=0)


# -- pacing ---------------------------------------------------------------------------------------------


def test_slots_are_spaced_so_no_window_holds_more_than_rpm(client: redis.Redis) -> None:
    rl = limiter(client, make_config({"gpt-luna": {"rpm": 10, "window_s": 2, "interactive_reserve": 0}}))
    slots = [slot(rl) for _ in range(35)]
    assert max_in_window(slots, 2.0) == 10
    gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
    assert min(gaps) == pytest.approx(2.04 / 10, abs=0.01)  # window + 2% margin, over rpm


def test_a_slot_beyond_the_horizon_is_refused_and_takes_nothing(client: redis.Redis) -> None:
    rl = limiter(client, make_config({"gpt-luna": {"rpm": 2, "window_s": 10, "interactive_reserve": 0}}))
    assert take(rl, horizon_s=0)[0]
    before = rl.snapshot("gpt-luna")
    ok, wait_s, _ = take(rl, horizon_s=1)
    assert not ok and wait_s > 1  # told when to come back
    after = rl.snapshot("gpt-luna")
    assert after["rb"] == before["rb"], "a refusal must not move the frontier"


@pytest.mark.parametrize("tier", ["batch", "interactive"])
def test_many_threads_share_one_limit_and_use_it(client: redis.Redis, tier: str) -> None:
    """Eight threads of one tier against 20 per 2 s: never 21 started in any 2 s, and the whole limit is
    used (each tier borrows the other's idle lane)."""
    config = make_config({"gpt-luna": {"rpm": 20, "window_s": 2, "interactive_reserve": 0.2}})
    rl = limiter(client, config)
    starts: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 5

    def work() -> None:
        while time.monotonic() < deadline:
            ticket = uuid.uuid4().hex
            g = rl.acquire("gpt-luna", tier, "c", 10, horizon_s=1.0, ticket_id=ticket)
            if not g.admitted:
                time.sleep(min(max(g.wait_s, 0.01), 1.0))
                continue
            started, wait_s = g.slot_s, g.wait_s
            while not g.committed:
                time.sleep(wait_s)
                done = rl.commit("gpt-luna", "c", ticket)
                if done.ok:
                    started = done.at_s
                    break
                wait_s = done.wait_s
            with lock:
                starts.append(started)  # the call's start as the call log recorded it
            rl.settle("gpt-luna", "c", ticket, g.lanes, 0)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max_in_window(starts, 2.0) <= 20
    starts.sort()
    achieved = (len(starts) - 1) / (starts[-1] - starts[0]) * 2.0 / 20
    assert achieved >= 0.95, achieved


def test_call_log_stops_a_late_waker_from_crowding_a_window(client: redis.Redis) -> None:
    rl = limiter(client, make_config({"gpt-luna": {"rpm": 3, "window_s": 5, "interactive_reserve": 0}}))
    committed = 0
    for _ in range(3):
        ticket = uuid.uuid4().hex
        g = rl.acquire("gpt-luna", "batch", "c", 1, horizon_s=60, ticket_id=ticket)
        assert g.admitted
        if g.committed or rl.commit("gpt-luna", "c", ticket).ok:  # committed early, as if it woke at once
            committed += 1
    assert committed == 3
    late = uuid.uuid4().hex
    refused = rl.commit("gpt-luna", "c", late)
    assert not refused.ok and refused.wait_s > 4.5  # a 4th call waits for the first to leave the window


# -- lanes: the interactive reserve ------------------------------------------------------------------


def test_batch_borrows_the_idle_interactive_share(client: redis.Redis) -> None:
    rl = limiter(client, make_config({"gpt-luna": {"rpm": 10, "window_s": 2, "interactive_reserve": 0.2}}))
    lanes = "".join(take(rl, horizon_s=3)[2] for _ in range(12))
    assert "i" in lanes and "b" in lanes  # both lanes used by batch alone
    # (test_many_threads_share_one_limit_and_use_it shows batch alone reaching the whole limit over time)


def test_interactive_keeps_its_share_while_batch_is_saturated(client: redis.Redis) -> None:
    rl = limiter(client, make_config({"gpt-luna": {"rpm": 10, "window_s": 2, "interactive_reserve": 0.2}}))
    assert take(rl, tier="interactive", horizon_s=5)[0]  # interactive is active from now on
    for _ in range(20):  # batch books its lane far ahead
        take(rl, horizon_s=60)
    assert rl.snapshot("gpt-luna")["rb"] - server_ms(client) > 4_000  # 20 x 2.04 s / 8
    ok, wait_s, lanes = take(rl, tier="interactive", horizon_s=5)
    assert ok and lanes == "i"
    assert wait_s <= 2.04 / 2 + 0.05  # at most one interval of its own lane, not behind the batch backlog
    # and batch no longer borrows the interactive lane while interactive is active
    assert all(take(rl, horizon_s=60)[2] == "b" for _ in range(5))


def test_interactive_borrows_idle_batch_capacity(client: redis.Redis) -> None:
    rl = limiter(client, make_config({"gpt-luna": {"rpm": 10, "window_s": 2, "interactive_reserve": 0.2}}))
    lanes = "".join(take(rl, tier="interactive", horizon_s=3)[2] for _ in range(10))
    assert "b" in lanes  # interactive borrows batch's lane when batch is idle (over time: the whole limit)


# -- concurrency -----------------------------------------------------------------------------------------


def test_concurrency_limit_and_release(client: redis.Redis) -> None:
    rl = limiter(client, make_config({"gpt-luna": {"concurrency": 3, "interactive_reserve": 0}}))
    tickets = []
    for _ in range(3):
        ticket = uuid.uuid4().hex
        assert rl.acquire("gpt-luna", "batch", "c", 1, horizon_s=1, ticket_id=ticket).admitted
        tickets.append(ticket)
    refused = rl.acquire("gpt-luna", "batch", "c", 1, horizon_s=1)
    assert not refused.admitted and refused.why == "concurrency"
    rl.settle("gpt-luna", "c", tickets[0], "b", 0)
    assert rl.acquire("gpt-luna", "batch", "c", 1, horizon_s=1).admitted


def test_in_flight_entries_of_a_dead_worker_expire(client: redis.Redis) -> None:
    rl = limiter(client, make_config({"gpt-luna": {"concurrency": 1, "interactive_reserve": 0}}))
    assert rl.acquire("gpt-luna", "batch", "c", 1, horizon_s=1, hold_s=0.2).admitted  # never settled
    assert not rl.acquire("gpt-luna", "batch", "c", 1, horizon_s=1).admitted
    time.sleep(0.3)
    assert rl.acquire("gpt-luna", "batch", "c", 1, horizon_s=1).admitted


def test_batch_leaves_interactive_its_share_of_concurrency(client: redis.Redis) -> None:
    rl = limiter(client, make_config({"gpt-luna": {"concurrency": 4, "interactive_reserve": 0.25}}))
    assert rl.acquire("gpt-luna", "interactive", "c", 1, horizon_s=1).admitted  # interactive is active
    batch = [rl.acquire("gpt-luna", "batch", "c", 1, horizon_s=1).admitted for _ in range(4)]
    assert batch == [True, True, True, False]  # 3 of 4 for batch while interactive is active
    assert not rl.acquire("gpt-luna", "interactive", "c", 1, horizon_s=1).admitted  # 4 of 4 in flight


# -- tokens ---------------------------------------------------------------------------------------------


def test_tokens_reserved_then_refunded(client: redis.Redis) -> None:
    rl = limiter(client, make_config({"gpt-luna": {"tpm": 1000, "window_s": 10, "interactive_reserve": 0}}))
    # 1000 tokens per 10 s (tokens pace over the window; the call log holds them to it): one token of pace is
    # 10 ms; 600 reserved hold the next 6 s
    first = uuid.uuid4().hex
    g = rl.acquire("gpt-luna", "batch", "c", 600, horizon_s=0, ticket_id=first)
    assert g.admitted
    assert not rl.acquire("gpt-luna", "batch", "c", 600, horizon_s=2).admitted
    rl.settle("gpt-luna", "c", first, g.lanes, 600 - 100)  # it used only 100 tokens: 1 s of pace
    after = rl.acquire("gpt-luna", "batch", "c", 600, horizon_s=2)
    assert after.admitted and after.wait_s == pytest.approx(1.0, abs=0.1)


def test_using_more_tokens_than_reserved_is_a_debt(client: redis.Redis) -> None:
    rl = limiter(client, make_config({"gpt-luna": {"tpm": 1000, "window_s": 10, "interactive_reserve": 0}}))
    ticket = uuid.uuid4().hex
    g = rl.acquire("gpt-luna", "batch", "c", 100, horizon_s=0, ticket_id=ticket)
    rl.settle("gpt-luna", "c", ticket, g.lanes, 100 - 900)  # the estimate was 800 tokens short
    later = rl.acquire("gpt-luna", "batch", "c", 50, horizon_s=60)
    assert later.admitted and later.wait_s == pytest.approx(9.0, abs=0.1)  # 900 tokens x 10 ms


def test_reservation_covers_input_estimate_and_max_output() -> None:
    long_text = "word " * 400
    request = ModelRequest(messages=(Message("user", long_text),), system="s", max_output_tokens=256)
    assert estimate_input_tokens(request) >= len(long_text) // 4  # above a 4-characters-per-token count
    assert reservation(request) == estimate_input_tokens(request) + 256
    assert reservation(request, 64) == estimate_input_tokens(request) + 64


# -- vendor signals -------------------------------------------------------------------------------------


def test_vendor_headers_are_read_for_both_families() -> None:
    now = 1_800_000_000.0
    anthropic = vendor_signals({
        "anthropic-ratelimit-requests-remaining": "3", "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-reset": "2027-01-15T08:00:02Z",
        "anthropic-ratelimit-tokens-remaining": "900", "anthropic-ratelimit-tokens-limit": "10000",
        "anthropic-ratelimit-tokens-reset": "2027-01-15T08:00:30Z",
    }, now_s=datetime(2027, 1, 15, 8, 0, 0, tzinfo=UTC).timestamp())
    assert anthropic.requests_remaining == 3 and anthropic.requests_limit == 50
    assert anthropic.requests_reset_s == pytest.approx(2.0) and anthropic.tokens_reset_s == pytest.approx(30.0)
    assert anthropic.tokens_remaining == 900 and anthropic.tokens_limit == 10000
    openai = vendor_signals({"x-ratelimit-remaining-requests": "7", "x-ratelimit-limit-requests": "60",
                             "x-ratelimit-reset-requests": "6m0s", "x-ratelimit-remaining-tokens": "150",
                             "x-ratelimit-reset-tokens": "20ms"}, now_s=now)
    assert (openai.requests_remaining, openai.requests_limit, openai.requests_reset_s) == (7, 60, 360.0)
    assert openai.tokens_remaining == 150 and openai.tokens_reset_s == pytest.approx(0.02)
    assert openai.tokens_limit is None


def test_429_cools_the_model_down_for_every_worker(client: redis.Redis) -> None:
    rl = limiter(client, make_config({"gpt-luna": {"rpm": 1000, "window_s": 60}}))
    ticket = rl.admit(ctx(), REQUEST)
    with pytest.raises(AttemptFailure), ticket:
        ticket.settle(None, {})
        raise AttemptFailure(OutcomeKind.RATE_LIMITED, "429", retry_after_s=3.0)
    ok, wait_s, _ = take(rl, horizon_s=60)
    assert ok and wait_s == pytest.approx(3.0, abs=0.2)
    # an unlimited model learns from a 429 too
    rl2 = limiter(client, make_config({}))
    ticket = rl2.admit(ctx(model="gpt-sol"), REQUEST)
    with pytest.raises(AttemptFailure), ticket:
        raise AttemptFailure(OutcomeKind.RATE_LIMITED, "429", retry_after_s=2.0)
    assert not rl2.acquire("gpt-sol", "batch", "c", 1, horizon_s=1).admitted


def test_low_remaining_headers_slow_the_fleet_before_a_429(client: redis.Redis) -> None:
    rl = limiter(client, make_config({"gpt-luna": {"rpm": 6000, "window_s": 60, "interactive_reserve": 0}}))
    ticket = rl.admit(ctx(), REQUEST)
    with ticket:
        ticket.settle(ModelResponse("hi", "m", Usage(5, 5)), {
            "x-ratelimit-remaining-requests": "4", "x-ratelimit-limit-requests": "6000",
            "x-ratelimit-reset-requests": "2s"})
    # 4 left for 2 s at our pace of 100/s would run out: the fleet now spaces calls 0.5 s apart
    slots = [slot(rl) for _ in range(4)]
    gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
    assert min(gaps) == pytest.approx(0.5, abs=0.02)


def test_zero_remaining_waits_for_the_reset(client: redis.Redis) -> None:
    rl = limiter(client, make_config({"gpt-luna": {"rpm": 6000}}))
    ticket = rl.admit(ctx(), REQUEST)
    with ticket:
        ticket.settle(ModelResponse("hi", "m", Usage(5, 5)), {
            "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "4s"})
    ok, wait_s, _ = take(rl, horizon_s=60)
    assert ok and wait_s == pytest.approx(4.0, abs=0.2)


def test_real_sdk_headers_from_the_simulator_reach_the_limiter() -> None:
    from toolbag.providers.registry import build_adapter
    from toolbag.simulator.server import SimulatorServer

    with SimulatorServer() as sim:
        data = copy.deepcopy(DEFAULTS)
        data["simulator_url"] = sim.url
        config = parse_config(data)
        body = json.dumps({"ratelimit": {"gpt-*": {"requests_remaining": 2, "requests_limit": 100,
                                                   "reset_s": 1.5}}}).encode()
        import urllib.request

        req = urllib.request.Request(f"{sim.url}/_sim/faults", data=body, method="POST",
                                     headers={"content-type": "application/json"})
        urllib.request.urlopen(req).close()
        adapter = build_adapter("openai", config)
        try:
            response = adapter.call("gpt-6-luna", REQUEST)
        finally:
            adapter.close()
    signals = vendor_signals(response.ratelimit_headers)
    assert signals.requests_remaining == 2 and signals.requests_limit == 100
    assert signals.requests_reset_s == pytest.approx(1.5)


# -- scopes ---------------------------------------------------------------------------------------------


def test_account_and_caller_limits_apply_across_models(client: redis.Redis) -> None:
    config = make_config({}, account={"rpm": 2, "window_s": 10, "interactive_reserve": 0},
                         caller_limits={"*": {"rpm": 3, "window_s": 10, "interactive_reserve": 0}})
    rl = limiter(client, config)
    assert [s.name for s in rl.scopes("gpt-luna", "shop")] == ["model:gpt-luna", "account:openai", "caller:shop"]
    # the openai account paces one call per 5.1 s, the caller one per 3.4 s, whatever the model
    slots = [slot(rl, m, caller="shop") for m in ("gpt-luna", "gpt-sol", "claude-haiku")]
    assert [b - slots[0] for b in slots] == [0, pytest.approx(5.1, abs=0.01), pytest.approx(8.5, abs=0.01)]
    assert take(rl, "gemini-flash", horizon_s=0, caller="other")[0], "another caller, another account"


# -- the admission seam ----------------------------------------------------------------------------------


def test_admit_waits_a_short_slot_in_process(client: redis.Redis) -> None:
    rl = limiter(client, make_config({"gpt-luna": {"rpm": 10, "window_s": 2, "interactive_reserve": 0}}))
    with rl.admit(ctx(), REQUEST):
        pass
    t0 = server_ms(client)
    with rl.admit(ctx(), REQUEST):
        waited_ms = server_ms(client) - t0
    assert waited_ms >= 2040 / 10 - 5  # the second slot is one interval later


def test_admit_hands_a_batch_job_back_when_the_wait_is_long(client: redis.Redis) -> None:
    rl = limiter(client, make_config({"gpt-luna": {"rpm": 2, "window_s": 10, "interactive_reserve": 0}}))
    with rl.admit(ctx(), REQUEST):
        pass
    with pytest.raises(HandBack) as caught:
        rl.admit(ctx(), REQUEST)  # the next slot is 5.1 s away, the tier waits at most 1 s
    assert caught.value.model == "gpt-luna"
    assert caught.value.delay_s == pytest.approx(5.1 - 0.5, abs=0.1)  # back a little before its slot


def test_handed_back_jobs_are_spread_over_the_line(client: redis.Redis) -> None:
    rl = limiter(client, make_config({"gpt-luna": {"rpm": 5, "window_s": 5, "interactive_reserve": 0}}))
    for _ in range(5):
        take(rl, horizon_s=60)
    delays = []
    for _ in range(4):
        with pytest.raises(HandBack) as caught:
            rl.admit(ctx(), REQUEST)
        delays.append(caught.value.delay_s)
    gaps = [b - a for a, b in zip(delays, delays[1:], strict=False)]
    assert min(gaps) == pytest.approx(5.1 / 5, abs=0.05)  # one service interval apart


def _submit(client: redis.Redis, keys: Keys, job_id: str, plan: list[str], tier: str) -> None:
    store = JobStore(client, keys)
    fields = {"capability": "summarize", "tier": tier, "input": "{}", "model": plan[0], "provider": "openai",
              "queue": f"openai.{tier}", "plan": json.dumps(plan)}
    store.submit(NewJob(job_id, f"openai.{tier}", 60, fields, caller="c"))


def _spill_target(client: redis.Redis, rl: RateLimiter, model: str) -> str | None:
    """Where the attempt runner would spill job j1, rate-limited on ``model``: the router's choice among the
    candidates the limiter admits now."""
    store = JobStore(client, rl.keys)
    job = store.get("j1")
    return Router(rl.config).spill_target(
        job.plan, model, store.history("j1"),
        lambda target: rl.admits_now(target, ctx(model=model, tier="interactive"), REQUEST),
    )


def test_interactive_spills_to_the_next_candidate_with_capacity(client: redis.Redis) -> None:
    config = make_config({"gpt-luna": {"rpm": 2, "window_s": 10, "interactive_reserve": 0.5},
                          "gpt-sol": {"rpm": 2, "window_s": 10, "interactive_reserve": 0.5}})
    rl = limiter(client, config)
    _submit(client, rl.keys, "j1", ["gpt-luna", "gpt-sol", "claude-haiku"], "interactive")
    for _ in range(2):
        with rl.admit(ctx(tier="interactive"), REQUEST):
            pass
    with pytest.raises(HandBack):
        rl.admit(ctx(tier="interactive"), REQUEST)
    assert _spill_target(client, rl, "gpt-luna") == "gpt-sol"
    # gpt-sol full too: the next one with capacity is claude-haiku (unlimited)
    for _ in range(2):
        with rl.admit(ctx(model="gpt-sol", tier="interactive"), REQUEST):
            pass
    with pytest.raises(HandBack):
        rl.admit(ctx(model="gpt-sol", tier="interactive"), REQUEST)
    assert _spill_target(client, rl, "gpt-sol") == "claude-haiku"


def test_spill_never_goes_back_to_a_model_that_refused_the_job(client: redis.Redis) -> None:
    """The chaos run found it: gpt-luna full, the next candidate with capacity had already refused this job."""
    config = make_config({"gpt-luna": {"rpm": 2, "window_s": 10}})
    rl = limiter(client, config)
    _submit(client, rl.keys, "j1", ["claude-haiku", "gpt-luna", "gemini-lite", "gpt-sol"], "interactive")
    client.rpush(rl.keys.attempts("j1"), AttemptRecord(n=1, model="gemini-lite", provider="gemini",
                                                       outcome="refused").to_json())
    for _ in range(2):
        with rl.admit(ctx(tier="interactive"), REQUEST):
            pass
    with pytest.raises(HandBack):
        rl.admit(ctx(tier="interactive"), REQUEST)
    assert _spill_target(client, rl, "gpt-luna") == "gpt-sol"


def test_a_tool_loops_later_calls_take_slots_of_their_own_but_no_second_inflight_entry(
        client: redis.Redis) -> None:
    config = make_config({"gpt-luna": {"rpm": 2, "window_s": 10, "concurrency": 1}})
    rl = limiter(client, config)
    with rl.admit(ctx(), REQUEST) as first:  # the attempt: its in-flight entry and the first call's slot
        with rl.admit_step(ctx(), REQUEST, wait_s=0.5):  # step 2: a slot, though concurrency 1 is taken
            pass
        with pytest.raises(AttemptFailure) as caught:  # step 3: rpm 2 is spent; no hand-back mid-loop
            rl.admit_step(ctx(), REQUEST, wait_s=0.2)
        assert caught.value.kind is OutcomeKind.RATE_LIMITED and caught.value.retry_after_s
        first.settle(None, {})
    assert client.zcard(rl.keys.ratelimit("gpt-luna", "log")) == 2, "the vendor saw two calls; so did the log"


def test_a_later_steps_wait_on_an_event_loop_is_slept_there_not_on_a_thread(client: redis.Redis) -> None:
    """``aadmit_step`` (a tool loop on a worker's attempt loop) makes its Redis calls through the executor it is
    given and waits for its booked slot on the loop: a loop waiting for a slot holds no thread."""
    config = make_config({"gpt-luna": {"rpm": 1, "window_s": 1}})

    def no_sleep_on_a_thread(seconds: float) -> None:
        raise AssertionError(f"slept {seconds:g}s on a thread")

    rl = RateLimiter(config, client, Keys(f"r{uuid.uuid4().hex[:6]}:"), sleep=no_sleep_on_a_thread)
    with rl.admit(ctx(), REQUEST) as first:  # the attempt's own call: the window's one slot
        first.settle(None, {})
    pool = ThreadPoolExecutor(1)

    async def later_step() -> None:
        loop = asyncio.get_running_loop()

        async def blocking(work: Any) -> Any:
            return await loop.run_in_executor(pool, work)

        ticket = await rl.aadmit_step(ctx(), REQUEST, 3.0, blocking)  # the next slot is about a second away
        with ticket:
            ticket.settle(None, {})

    t0 = time.monotonic()
    try:
        asyncio.run(later_step())
    finally:
        pool.shutdown()
    assert time.monotonic() - t0 >= 0.5, "the step had to wait for the next slot"
    with pytest.raises(AssertionError, match="slept"):  # the same wait, on a thread, is slept there
        rl.admit_step(ctx(), REQUEST, 3.0)


def test_interactive_without_a_candidate_with_capacity_is_throttled(client: redis.Redis) -> None:
    config = make_config({"gpt-luna": {"rpm": 2, "window_s": 10}})
    rl = limiter(client, config)
    _submit(client, rl.keys, "j1", ["gpt-luna"], "interactive")
    for _ in range(2):
        with rl.admit(ctx(tier="interactive"), REQUEST):
            pass
    with pytest.raises(HandBack):
        rl.admit(ctx(tier="interactive"), REQUEST)
    assert _spill_target(client, rl, "gpt-luna") is None


# -- the hand-back transition ---------------------------------------------------------------------------


def test_hand_back_is_fenced_and_not_an_attempt(client: redis.Redis) -> None:
    store = JobStore(client, Keys("h:"))
    _submit(client, store.keys, "j1", ["gpt-luna", "gpt-sol"], "batch")
    assert store.claim("j1", "1", "openai.batch", 5, "w") is not None
    entry = DecisionRecord("throttle", "no slot", "gpt-luna", 0.2).to_json()
    assert not store.hand_back("j1", "7", model="gpt-luna", provider="openai", queue="openai.batch",
                               record_json=entry, delay_s=0.2).ok
    done = store.hand_back("j1", "1", model="gpt-luna", provider="openai", queue="openai.batch",
                           record_json=entry, delay_s=0.2)
    assert done.ok
    job = store.get("j1")
    assert (job.status, job.token, job.attempt) == ("waiting", "2", 1)
    assert client.zscore(store.keys.leases, "j1:1") is None
    assert [h["type"] for h in store.history("j1")] == ["decision"]
    assert not store.promote("j1").ok  # not due yet
    time.sleep(0.25)
    assert store.promote("j1").ok
    assert store.get("j1").status == "queued"
    assert store.claim("j1", "2", "openai.batch", 5, "w") is not None  # the new token is current
    # spill: queued at once on another queue with a fresh message
    spilled = store.hand_back("j1", "2", model="claude-haiku", provider="anthropic", queue="anthropic.batch",
                              record_json=DecisionRecord("spill", "full", "claude-haiku").to_json(), audit=True)
    assert spilled.ok
    job = store.get("j1")
    assert (job.status, job.model, job.queue, job.token) == ("queued", "claude-haiku",
                                                                          "anthropic.batch", "3")
    assert client.llen(store.keys.queue("anthropic.batch")) == 1


def test_throttles_do_not_use_up_max_attempts() -> None:
    config = make_config({})
    policy = config.route("summarize", "batch").policy
    history = [json.loads(DecisionRecord("throttle", "no slot", "gpt-luna", 1.0).to_json())] * 50
    history.append({"type": "attempt", "model": "gpt-luna", "outcome": "overloaded"})
    s = Situation(OutcomeKind.OVERLOADED, "529", "gpt-luna", "batch", ["gpt-luna", "gpt-sol"], history)
    assert decide(s, config, policy).action == "retry"


def test_every_rate_limit_key_expires_on_its_own(client: redis.Redis) -> None:
    config = make_config({"gpt-luna": {"rpm": 2, "tpm": 1000, "concurrency": 2, "window_s": 5}},
                         caller_limits={"*": {"rpm": 1, "window_s": 5}})
    rl = limiter(client, config)
    ticket = rl.admit(ctx(tier="interactive", caller="shop"), REQUEST)
    with ticket:
        ticket.settle(ModelResponse("hi", "m", Usage(5, 5)), {"x-ratelimit-remaining-requests": "0",
                                                              "x-ratelimit-reset-requests": "1s"})
    take(rl, tier="interactive", horizon_s=0, caller="shop")  # refused by the caller's limit
    take(rl, tier="batch", horizon_s=0, caller="other")
    keys = client.keys(f"{rl.keys.prefix}rl:*")
    names = {(k.decode() if isinstance(k, bytes) else str(k)).removeprefix(rl.keys.prefix) for k in keys}
    assert names >= {
        "rl:gpt-luna:state", "rl:gpt-luna:log", "rl:caller:shop:state", "rl:caller:shop:log"}
    assert all(0 < client.pttl(k) <= 60_000 for k in keys), {k: client.pttl(k) for k in keys}


def test_headroom_is_read_fleet_wide_and_exported_by_the_supervisor(client: redis.Redis) -> None:
    """Headroom comes from Redis, not from the last admission some worker happened to make: an idle model
    shows its room again, whichever process last used it."""
    from prometheus_client import REGISTRY

    from toolbag.store import JobStore
    from toolbag.supervisor import Sweeper

    config = make_config({"gpt-luna": {"rpm": 10, "tpm": 1000, "window_s": 600}})
    rl = limiter(client, config)
    assert rl.headroom()[("gpt-luna", "rpm")] == 1.0
    for _ in range(4):
        assert take(rl, cost=50, horizon_s=10_000)[0]
    room = rl.headroom()
    assert room[("gpt-luna", "rpm")] == pytest.approx(0.6, abs=0.01)
    assert room[("gpt-luna", "tpm")] == pytest.approx(0.8, abs=0.01)
    Sweeper(config, JobStore(client, rl.keys), limiter=rl).update_gauges()
    labels = {"provider": "openai", "model": "gpt-luna", "kind": "rpm"}
    assert REGISTRY.get_sample_value("toolbag_ratelimit_headroom_ratio", labels) == pytest.approx(0.6, abs=0.01)


def _expiries(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("pexpire", "pexpireat", "expire"))


def test_a_busy_scope_sets_its_keys_times_to_live_about_once_a_span_not_per_call(client: redis.Redis) -> None:
    config = make_config({"gpt-luna": {"rpm": 100_000, "tpm": 10_000_000, "concurrency": 1000, "window_s": 5}})
    rl = limiter(client, config)
    tickets = [rl.admit(ctx(job_id=f"j{i}"), REQUEST) for i in range(3)]  # the keys exist, with their expiries
    client.config_resetstat()
    tickets += [rl.admit(ctx(job_id=f"k{i}"), REQUEST) for i in range(40)]
    assert _expiries(client) == 0, "a key whose recorded expiry covers what it holds is not set again"
    keys = [rl.keys.ratelimit("gpt-luna", kind) for kind in ("state", "cc-b", "log", "tok")]
    # every key outlives what it holds: the in-flight holds (tier timeout + slack), the calls (2 spans)
    hold_ms = (config.tiers["batch"].total_timeout_s + 30) * 1000
    assert client.pttl(keys[1]) >= hold_ms and all(client.pttl(k) >= 10_000 for k in (keys[0], keys[2], keys[3]))
    for ticket in tickets:
        with ticket:
            ticket.settle(ModelResponse("hi", "m", Usage(5, 5)), {})
    assert not client.exists(keys[1]), "every call settled: the in-flight set is empty, so Redis deleted it"
    rl.admit(ctx(job_id="again"), REQUEST)
    assert 0 < client.pttl(keys[1]) <= hold_ms + 20_000, "the set made again gets its time to live at once"


def test_a_call_log_emptied_by_its_prune_gets_its_time_to_live_again(client: redis.Redis) -> None:
    config = make_config({"gpt-luna": {"rpm": 1000, "window_s": 0.2}})
    rl = limiter(client, config)
    log = rl.keys.ratelimit("gpt-luna", "log")
    assert take(rl)[0]
    time.sleep(0.6)  # the call leaves the span; the next admission prunes it, the log is deleted, then made again
    assert take(rl)[0]
    assert client.zcard(log) == 1 and client.pttl(log) > 0


def test_one_read_of_a_long_call_log_prunes_it_all_and_counts_its_whole_edge(client: redis.Redis) -> None:
    """More than a page (500) of calls out of the span, then more than a page on the edge (in the span for the
    request count, out of the token window): every old call is dropped, and no edge call's tokens count."""
    config = make_config({"gpt-luna": {"tpm": 1_000_000, "window_s": 10}})  # margin 0.2 s: span 10.2 s
    rl = limiter(client, config)
    log, tok = rl.keys.ratelimit("gpt-luna", "log"), rl.keys.ratelimit("gpt-luna", "tok")
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros / 1000
    old = {f"old{i}": now_ms - 20_000 for i in range(600)}
    edge = {f"edge{i}": now_ms - 10_100 for i in range(700)}
    recent = {f"recent{i}": now_ms - 1_000 for i in range(100)}
    client.zadd(log, {**old, **edge, **recent})
    client.hset(tok, mapping={**dict.fromkeys(old, 1), **dict.fromkeys(edge, 1000), **dict.fromkeys(recent, 1000)})
    client.hset(tok, "~sum", 600 + 700_000 + 100_000)
    assert rl.commit("gpt-luna", "c", "mine", cost_tokens=850_000).ok  # 100,000 in the window + 850,000 fit
    assert client.zcard(log) == 700 + 100 + 1
    assert float(client.hget(tok, "~sum") or 0) == 700_000 + 100_000 + 850_000
    assert not rl.commit("gpt-luna", "c", "more", cost_tokens=60_000).ok  # the window is full now
