"""Fleet-wide rate limits in Redis: requests and tokens per window, concurrent attempts, per model (and
optionally per provider account and per caller), shared by every worker on every host.

Celery's ``rate_limit`` is per worker process; vendors' limits are per account. Here every admission is one
Lua script (``lua/rl_acquire.lua``: GCRA frontiers, all limits at once, nothing taken on a refusal) and every
settlement another (``lua/rl_settle.lua``: release, reconcile tokens, learn from the vendor). Python never
reads state to write it back.

A worker asks :meth:`RateLimiter.admit` before calling the vendor. A slot within the tier's
``ratelimit_wait_s`` is waited for in-process; a longer wait raises :class:`HandBack`: the job goes back
through the delayed set (never a Celery countdown), or, for interactive work, spills to the next candidate
in its plan that has capacity now. How to set limits: ``docs/ratelimits.md``.

The waits of an admission are written once, as a generator that yields how long to wait (:meth:`RateLimiter.
_admitting`): on a thread they are slept there; a tool loop's later step on a worker's event loop
(:meth:`RateLimiter.aadmit_step`) sleeps them on the loop and makes only the Redis calls off it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import redis

from toolbag.attempt.tokens import estimate_input_tokens
from toolbag.config import Config, Limits, Tier
from toolbag.lua import script as lua_script
from toolbag.providers.base import AttemptFailure, ModelRequest, ModelResponse, OutcomeKind, Usage
from toolbag.store import text as _text
from toolbag.store.jobstore import ScriptPart
from toolbag.store.keys import Keys
from toolbag.telemetry import metrics

if TYPE_CHECKING:
    from toolbag.attempt.context import AttemptContext, Blocking
    from toolbag.attempt.context import Opening as AnOpening

log = logging.getLogger("toolbag.ratelimit")

DEFAULT_COOLDOWN_S = 1.0  # a 429 without retry-after cools the model down this long
CONCURRENCY_POLL_S = 0.05  # how often a worker looks for a free in-flight slot while it may wait
CONCURRENCY_DEFER_S = 1.0  # hand-back delay when the in-flight limit stayed full for the whole wait
HOLD_SLACK_S = 30.0  # an in-flight entry outlives the tier's total timeout by this much (then it is dropped)
MIN_DEFER_S = 0.01
COMMIT_TRIES = 50  # a booked call gives up on a full call log after this many polls (or a window, if longer)
COMMIT_POLL_S = 0.05

# Outcomes the vendor refused before generating anything: the reserved tokens are all given back.
_NOTHING_USED = frozenset({
    OutcomeKind.RATE_LIMITED, OutcomeKind.AUTH, OutcomeKind.QUOTA_EXHAUSTED, OutcomeKind.BAD_REQUEST,
    OutcomeKind.CONTEXT_TOO_LONG, OutcomeKind.OVERLOADED,
})


class HandBack(Exception):
    """Admission found no capacity on ``model`` within the short wait: the job goes back without a vendor
    attempt, to the delayed set for ``delay_s`` (or, interactive, to another candidate with capacity now:
    the attempt runner asks the router)."""

    def __init__(self, model: str, delay_s: float, reason: str) -> None:
        super().__init__(f"no capacity on {model} for {delay_s:.3f}s: {reason}")
        self.model = model
        self.delay_s = delay_s
        self.reason = reason


@dataclass(frozen=True)
class Scope:
    """One set of limits an attempt is counted against, and its keys (state, in-flight i/b, call log and the
    call log's tokens)."""

    name: str
    keys: tuple[str, str, str, str, str]
    limits: Limits
    learn: bool = False  # vendor signals (429, rate-limit headers) apply to this scope

    def argv(self, count_inflight: bool = True) -> list[str]:
        lim = self.limits
        concurrency = (lim.concurrency or 0) if count_inflight else 0
        return [
            f"{lim.window_s * 1000:.3f}", f"{lim.effective_margin_s * 1000:.3f}", str(lim.rpm or 0),
            str(lim.tpm or 0), str(concurrency), f"{lim.interactive_reserve:.6f}",
        ]


@dataclass(frozen=True)
class Grant:
    """The answer of one admission try.

    Admitted: call the vendor ``wait_s`` from now (the slot). Refused: ``why`` is ``rate`` (come back in
    ``wait_s``) or ``concurrency`` (``wait_s`` is -1: unknown, poll).
    """

    admitted: bool
    wait_s: float
    why: str = ""
    lanes: str = ""
    committed: bool = False  # recorded in the call logs already (a slot due now)
    slot_s: float = 0.0  # admitted: the slot, unix seconds on the Redis clock
    charged: str = ""  # admitted: tokens each scope's token frontier was charged (comma-separated)


@dataclass(frozen=True)
class Opening:
    """One call's admission, before its first try: the ticket, what it reserves and may wait, and the first
    try's script part (which a claim runs in its own step: ``RateLimiter.opening``)."""

    ticket_id: str
    cost: int  # tokens reserved
    expected: int  # of them, the input estimate
    hold_s: float  # lifetime of its in-flight entry if never settled
    wait_s: float  # how long it may wait in-process
    count_inflight: bool
    t0: float  # the limiter's clock when the admission began
    part: ScriptPart

    def held(self, ctx: AttemptContext) -> str:
        """The class whose in-flight entries an admission of this opening takes (``-``: none)."""
        if not self.count_inflight:
            return "-"
        return "i" if ctx.tier == "interactive" else "b"


@dataclass(frozen=True)
class Commit:
    """A call recorded in the call logs (``ok``, at ``at_s`` on the Redis clock) or not yet (``wait_s``)."""

    ok: bool
    wait_s: float = 0.0
    at_s: float = 0.0


@dataclass(frozen=True)
class VendorSignals:
    """What a vendor's rate-limit headers say; ``None`` where a header was absent or unreadable."""

    requests_remaining: int | None = None
    requests_limit: int | None = None
    requests_reset_s: float | None = None
    tokens_remaining: int | None = None
    tokens_limit: int | None = None
    tokens_reset_s: float | None = None


def granted(reply: Any) -> Grant:
    """An admission try's answer (``rl_admit``'s reply, from ``rl_acquire`` or a claim)."""
    if int(reply[0]) == 1:
        return Grant(True, max(0.0, float(_text(reply[1])) / 1000), lanes=_text(reply[2]),
                     committed=_text(reply[3]) == "1",
                     slot_s=(float(_text(reply[4])) + float(_text(reply[1]))) / 1000,
                     charged=_text(reply[5]))
    wait_ms = float(_text(reply[1]))
    return Grant(False, wait_ms / 1000 if wait_ms >= 0 else -1.0, why=_text(reply[2]))


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _reset_s(value: str | None, now_s: float) -> float | None:
    """OpenAI's Go durations (``1s``, ``6m0s``, ``20ms``), Anthropic's RFC 3339 instants, or plain seconds."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    if parts and "".join(n + u for n, u in parts) == value:
        return sum(float(n) * _UNIT_S[u] for n, u in parts)
    try:
        return max(0.0, datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() - now_s)
    except ValueError:
        return None


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


def vendor_signals(headers: Mapping[str, str], now_s: float | None = None) -> VendorSignals:
    """Read ``anthropic-ratelimit-*`` and ``x-ratelimit-*`` headers (names lower-cased)."""
    h = {k.lower(): v for k, v in headers.items()}
    now_s = time.time() if now_s is None else now_s
    if any(k.startswith("anthropic-ratelimit-") for k in h):
        tokens = "tokens" if "anthropic-ratelimit-tokens-remaining" in h else "input-tokens"
        return VendorSignals(
            _int(h.get("anthropic-ratelimit-requests-remaining")), _int(h.get("anthropic-ratelimit-requests-limit")),
            _reset_s(h.get("anthropic-ratelimit-requests-reset"), now_s),
            _int(h.get(f"anthropic-ratelimit-{tokens}-remaining")), _int(h.get(f"anthropic-ratelimit-{tokens}-limit")),
            _reset_s(h.get(f"anthropic-ratelimit-{tokens}-reset"), now_s),
        )
    return VendorSignals(
        _int(h.get("x-ratelimit-remaining-requests")), _int(h.get("x-ratelimit-limit-requests")),
        _reset_s(h.get("x-ratelimit-reset-requests"), now_s),
        _int(h.get("x-ratelimit-remaining-tokens")), _int(h.get("x-ratelimit-limit-tokens")),
        _reset_s(h.get("x-ratelimit-reset-tokens"), now_s),
    )


def counted_tokens(provider_kind: str, usage: Usage) -> int:
    """The tokens of a call that count against a tokens-per-window limit, as the vendor counts them: Anthropic
    leaves input read from its prompt cache out of its input-token limits; OpenAI and Gemini count every
    input token, cached or not."""
    if provider_kind == "anthropic":
        return usage.input_tokens - usage.cached_input_tokens + usage.output_tokens
    return usage.input_tokens + usage.output_tokens


def reservation(request: ModelRequest, max_output_tokens: int | None = None) -> int:
    """Tokens reserved before a call: the input estimate plus the most the model may write (as vendors
    themselves count ``max_tokens`` against TPM until the answer is done)."""
    out = request.max_output_tokens if max_output_tokens is None else max_output_tokens
    return estimate_input_tokens(request) + out


T = TypeVar("T")
_Waits = Generator[float, None, T]  # an admission: yields each wait (seconds), returns its result


def _advance(steps: _Waits[T]) -> tuple[bool, Any]:
    """One step of an admission: (False, seconds to wait) or (True, its result). Never raises StopIteration
    (an executor's future cannot carry it)."""
    try:
        return False, next(steps)
    except StopIteration as done:
        return True, done.value


class RateLimiter:
    """The :class:`toolbag.attempt.context.Admission` of every worker: limits shared fleet-wide."""

    def __init__(
        self,
        config: Config,
        client: redis.Redis,
        keys: Keys,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.redis = client
        self.keys = keys
        self.sleep = sleep
        self.clock = clock
        self._acquire = client.register_script(lua_script("rl_acquire"))
        self._settle = client.register_script(lua_script("rl_settle"))
        self._commit = client.register_script(lua_script("rl_commit"))

    # -- scopes -------------------------------------------------------------------------------------

    def scopes(self, model: str, caller: str = "") -> list[Scope]:
        """The limits an attempt on ``model`` by ``caller`` counts against, the model's own first."""
        k = self.keys

        def four(key: Callable[[str], str]) -> tuple[str, str, str, str, str]:
            return key("state"), key("cc-i"), key("cc-b"), key("log"), key("tok")

        cfg = self.config.models[model]
        out = [Scope(f"model:{model}", four(lambda kind: k.ratelimit(model, kind)), cfg.limits, learn=True)]
        account = self.config.providers[cfg.provider].limits
        if account is not None and account.limited:
            p = cfg.provider
            out.append(Scope(f"account:{p}", four(lambda kind: k.ratelimit_account(p, kind)), account))
        per_caller = self.config.caller_limits.get(caller) or self.config.caller_limits.get("*")
        if caller and per_caller is not None and per_caller.limited:
            out.append(Scope(f"caller:{caller}", four(lambda kind: k.ratelimit_caller(caller, kind)), per_caller))
        return out

    # -- the scripts --------------------------------------------------------------------------------

    def acquire(
        self,
        model: str,
        tier: Tier,
        caller: str,
        cost_tokens: int,
        *,
        horizon_s: float,
        ticket_id: str = "",
        hold_s: float = 600.0,
        check: bool = False,
        expected_tokens: int | None = None,
        count_inflight: bool = True,
        output_tokens: int = 0,
    ) -> Grant:
        """One admission try. ``check`` only asks (nothing is taken or recorded). ``expected_tokens`` (what
        the call will likely use; default the reservation) paces the hand-back line until calls were
        measured. ``output_tokens``: the part of ``cost_tokens`` that is the output cap (the call log lets a
        window exceed tpm by one call's output). ``count_inflight`` false: a further call of an attempt that
        already holds its in-flight entry (a tool loop's later steps), so the concurrency limit is neither
        checked nor taken again."""
        part = self.acquire_part(model, tier, caller, cost_tokens, horizon_s=horizon_s, ticket_id=ticket_id,
                                 hold_s=hold_s, check=check, expected_tokens=expected_tokens,
                                 count_inflight=count_inflight, output_tokens=output_tokens)
        return granted(self._acquire(keys=list(part.keys), args=list(part.args)))

    def acquire_part(
        self,
        model: str,
        tier: Tier,
        caller: str,
        cost_tokens: int,
        *,
        horizon_s: float,
        ticket_id: str = "",
        hold_s: float = 600.0,
        check: bool = False,
        expected_tokens: int | None = None,
        count_inflight: bool = True,
        output_tokens: int = 0,
    ) -> ScriptPart:
        """The keys and arguments of one admission try (``lua/rl_admit.lua``), for ``rl_acquire`` or a claim."""
        scopes = self.scopes(model, caller)
        keys = [key for scope in scopes for key in scope.keys]
        argv = ["check" if check else "take", "i" if tier == "interactive" else "b", f"{horizon_s * 1000:.3f}",
                ticket_id or uuid.uuid4().hex, f"{hold_s * 1000:.0f}", str(int(cost_tokens)), str(len(scopes)),
                str(int(cost_tokens if expected_tokens is None else expected_tokens)), str(int(output_tokens))]
        for scope in scopes:
            argv += scope.argv(count_inflight)
        return ScriptPart(tuple(keys), tuple(argv))

    def commit(self, model: str, caller: str, ticket_id: str, cost_tokens: int = 0, output_tokens: int = 0) -> Commit:
        """Record a booked call in the call logs as it starts, with the ``cost_tokens`` it reserves; if that
        would crowd a window (another worker's late call, calls in flight holding their reservation),
        nothing is recorded and ``wait_s`` says when to try again."""
        scopes = [s for s in self.scopes(model, caller) if s.limits.rpm or s.limits.tpm]
        if not scopes:
            return Commit(True)
        argv: list[str] = [ticket_id, str(int(cost_tokens)), str(int(output_tokens))]
        for scope in scopes:
            lim = scope.limits
            argv += [f"{(lim.window_s + lim.effective_margin_s) * 1000:.3f}", f"{lim.window_s * 1000:.3f}",
                     str(lim.rpm or 0), str(lim.tpm or 0)]
        reply = self._commit(keys=[key for s in scopes for key in (s.keys[3], s.keys[4])], args=argv)
        if int(reply[0]) == 1:
            return Commit(True, at_s=float(_text(reply[1])) / 1000)
        return Commit(False, wait_s=max(0.001, float(_text(reply[1])) / 1000))

    def has_capacity(self, model: str, tier: Tier, caller: str, cost_tokens: int) -> bool:
        """Whether ``model`` could admit this now (within the tier's short wait), without taking anything."""
        horizon_s = self.config.tiers[tier].ratelimit_wait_s
        return self.acquire(model, tier, caller, cost_tokens, horizon_s=horizon_s, check=True).admitted

    def settle(
        self,
        model: str,
        caller: str,
        ticket_id: str,
        lanes: str,
        refund_tokens: int,
        *,
        cooldown_s: float = 0.0,
        signals: VendorSignals | None = None,
        used_tokens: int | None = None,
        charged: str = "",
        held: str = "",
    ) -> tuple[bool, bool, bool]:
        """Release, reconcile (``refund_tokens`` = reserved - used; negative is a debt) and learn.
        ``charged`` is the grant's: what the token frontiers were charged (empty: the reservation).
        Returns which vendor signals changed the pace: (cooled down, requests slowed, tokens slowed)."""
        part = self.settle_part(model, caller, ticket_id, lanes, refund_tokens, cooldown_s=cooldown_s,
                                signals=signals, used_tokens=used_tokens, charged=charged, held=held)
        reply = self._settle(keys=list(part.keys), args=list(part.args))
        cooled, slow_r, slow_t = (bool(int(x)) for x in reply)
        return cooled, slow_r, slow_t

    def settle_part(
        self,
        model: str,
        caller: str,
        ticket_id: str,
        lanes: str,
        refund_tokens: int,
        *,
        cooldown_s: float = 0.0,
        signals: VendorSignals | None = None,
        used_tokens: int | None = None,
        charged: str = "",
        held: str = "",
    ) -> ScriptPart:
        """The keys and arguments of a settle (``lua/rl_reconcile.lua``), for ``rl_settle`` or a completion.
        ``held``: the class whose in-flight entries the admission took (``i``, ``b``; ``-`` none; empty:
        unknown, both are cleared)."""
        s = signals or VendorSignals()

        def ms(value: float | None) -> str:
            return "-1" if value is None else f"{value * 1000:.3f}"

        def count(value: int | None) -> str:
            return "-1" if value is None else str(max(0, value))

        scopes = self.scopes(model, caller)
        argv = [ticket_id, str(int(refund_tokens)), str(len(scopes)), f"{max(0.0, cooldown_s) * 1000:.3f}",
                count(s.requests_remaining), ms(s.requests_reset_s), count(s.requests_limit),
                count(s.tokens_remaining), ms(s.tokens_reset_s), count(s.tokens_limit),
                "-1" if used_tokens is None else str(max(0, used_tokens))]
        charges = charged.split(",") if charged else []
        for i, scope in enumerate(scopes):
            lane = lanes[i] if i < len(lanes) else ""
            lim = scope.limits
            argv += [lane, "1" if scope.learn else "0", f"{lim.window_s * 1000:.3f}",
                     f"{lim.effective_margin_s * 1000:.3f}", str(lim.rpm or 0), str(lim.tpm or 0),
                     f"{lim.interactive_reserve:.6f}", charges[i] if i < len(charges) else "-1",
                     held if held in ("", "-") or lim.concurrency else "-"]
        return ScriptPart(tuple(key for scope in scopes for key in scope.keys), tuple(argv))

    # -- the Admission seam -------------------------------------------------------------------------

    def admit(self, ctx: AttemptContext, request: ModelRequest) -> _Ticket:
        """Hold capacity for this attempt, waiting up to the tier's ``ratelimit_wait_s``; else raise
        :class:`HandBack`."""
        return self._ticket_or_hand_back(ctx, *self._admit_within(ctx, request, self._opening(ctx, request)))

    def opening(self, ctx: AttemptContext, request: ModelRequest) -> Opening:
        """The attempt's first admission try, for its claim to make in the same step (``lua/claim.lua``);
        :meth:`opened` goes on from its answer exactly as :meth:`admit` goes on from its own first try."""
        return self._opening(ctx, request)

    def opened(self, ctx: AttemptContext, request: ModelRequest, opening: AnOpening, reply: Any) -> _Ticket:
        """Go on from the first try's answer (``reply``: rl_admit's, from the claim): wait for a booked slot,
        poll a full in-flight limit, or raise :class:`HandBack`, as :meth:`admit` does."""
        if not isinstance(opening, Opening):
            raise TypeError(f"not an opening of this limiter: {type(opening).__name__}")
        return self._ticket_or_hand_back(ctx, *self._admit_within(ctx, request, opening, granted(reply)))

    def _ticket_or_hand_back(self, ctx: AttemptContext, ticket: _Ticket | None, grant: Grant) -> _Ticket:
        if ticket is not None:
            return ticket
        if grant.why == "concurrency":
            delay_s, what = CONCURRENCY_DEFER_S, "in-flight limit reached"
        else:
            delay_s, what = grant.wait_s, f"next slot in {grant.wait_s:.3f}s"
        raise HandBack(ctx.model, max(MIN_DEFER_S, delay_s), f"{ctx.model}: {what}")

    def admit_step(self, ctx: AttemptContext, request: ModelRequest, wait_s: float) -> _Ticket:
        """Capacity for one more vendor call inside a running attempt (a tool loop's later steps: the vendor
        counts every call). Waits up to ``wait_s`` in-process and never hands the job back, since the loop's
        work so far would be lost; without a slot by then the attempt ends ``rate_limited``."""
        return self._slept(self._stepping(ctx, request, wait_s))

    async def aadmit_step(
        self, ctx: AttemptContext, request: ModelRequest, wait_s: float, blocking: Blocking[tuple[bool, Any]]
    ) -> _Ticket:
        """:meth:`admit_step` on an event loop: its Redis calls through ``blocking`` (off the loop), its waits
        slept on the loop, so a loop waiting for a slot holds no thread."""
        steps = self._stepping(ctx, request, wait_s)
        while True:
            done, value = await blocking(lambda: _advance(steps))
            if done:
                ticket: _Ticket = value
                return ticket
            await asyncio.sleep(value)

    def _stepping(self, ctx: AttemptContext, request: ModelRequest, wait_s: float) -> _Waits[_Ticket]:
        try:
            ticket, grant = yield from self._admitting(
                ctx, request, self._opening(ctx, request, wait_s, count_inflight=False))
        except HandBack as back:
            raise AttemptFailure(OutcomeKind.RATE_LIMITED, f"tool loop: {back.reason}") from None
        if ticket is not None:
            return ticket
        raise AttemptFailure(
            OutcomeKind.RATE_LIMITED, f"{ctx.model}: no rate-limit slot for the tool loop's next call within "
            f"{wait_s:.1f}s", retry_after_s=grant.wait_s if grant.wait_s > 0 else None,
        )

    def _slept(self, steps: _Waits[T]) -> T:
        """Run an admission on this thread, sleeping its waits here."""
        while True:
            done, value = _advance(steps)
            if done:
                result: T = value
                return result
            self.sleep(value)

    def _opening(
        self, ctx: AttemptContext, request: ModelRequest, wait_s: float | None = None, *, count_inflight: bool = True
    ) -> Opening:
        tier = self.config.tiers[ctx.tier]
        wait_s = tier.ratelimit_wait_s if wait_s is None else wait_s
        cost = reservation(request)
        expected = estimate_input_tokens(request)  # optimistic: the output is unknown until measured
        ticket_id = uuid.uuid4().hex
        hold_s = tier.total_timeout_s + HOLD_SLACK_S
        part = self.acquire_part(ctx.model, ctx.tier, ctx.caller, cost, horizon_s=wait_s, ticket_id=ticket_id,
                                 hold_s=hold_s, expected_tokens=expected, count_inflight=count_inflight,
                                 output_tokens=cost - expected)
        return Opening(ticket_id, cost, expected, hold_s, wait_s, count_inflight, self.clock(), part)

    def _admit_within(
        self, ctx: AttemptContext, request: ModelRequest, opening: Opening, first: Grant | None = None
    ) -> tuple[_Ticket | None, Grant]:
        """Take capacity for one call, waiting up to the opening's ``wait_s`` (``first``: the answer of its
        first try, made already): (the ticket, its grant), or (None, the last refusal) when none came in time."""
        return self._slept(self._admitting(ctx, request, opening, first))

    def _admitting(
        self, ctx: AttemptContext, request: ModelRequest, opening: Opening, first: Grant | None = None
    ) -> _Waits[tuple[_Ticket | None, Grant]]:
        """:meth:`_admit_within`, yielding each wait (seconds) instead of sleeping it."""
        provider = self.config.provider_of(ctx.model)
        cost, expected, ticket_id = opening.cost, opening.expected, opening.ticket_id
        t0 = opening.t0
        grant = first
        while True:
            left_s = max(0.0, opening.wait_s - (self.clock() - t0))
            if grant is None:
                grant = self.acquire(ctx.model, ctx.tier, ctx.caller, cost, horizon_s=left_s, ticket_id=ticket_id,
                                     hold_s=opening.hold_s, expected_tokens=expected,
                                     count_inflight=opening.count_inflight, output_tokens=cost - expected)
            if grant.admitted:
                if not (yield from self._start(ctx, ticket_id, grant, cost, cost - expected)):
                    self.settle(ctx.model, ctx.caller, ticket_id, grant.lanes, cost, charged=grant.charged,
                                held=opening.held(ctx))
                    raise HandBack(ctx.model, CONCURRENCY_DEFER_S, f"{ctx.model}: call log stayed full")
                metrics.RATELIMIT_WAIT.labels(provider, ctx.model).observe(self.clock() - t0)
                return _Ticket(self, ctx, ticket_id, grant.lanes, cost, grant.charged, opening.held(ctx)), grant
            if grant.why == "concurrency" and left_s > 0:
                yield min(CONCURRENCY_POLL_S, left_s)
                grant = None
                continue
            break
        metrics.RATELIMIT_WAIT.labels(provider, ctx.model).observe(self.clock() - t0)
        return None, grant

    def _start(self, ctx: AttemptContext, ticket_id: str, grant: Grant, cost: int, output: int) -> _Waits[bool]:
        """Sleep until the booked slot, then commit the call to the call logs. A full log is tried again as
        calls leave its window, and at least every ``COMMIT_POLL_S`` (a call in flight may settle and give
        tokens back sooner), for at most one window. False if it never could."""
        if grant.committed:
            return True
        if grant.wait_s > 0:
            yield grant.wait_s
        give_up = self.clock() + max(self._span_s(ctx.model, ctx.caller), COMMIT_POLL_S * COMMIT_TRIES)
        while True:
            done = self.commit(ctx.model, ctx.caller, ticket_id, cost, output)
            if done.ok:
                return True
            if self.clock() >= give_up:
                return False
            yield min(done.wait_s, COMMIT_POLL_S)

    def _span_s(self, model: str, caller: str) -> float:
        """The longest window (with its margin) of the limits a call on ``model`` by ``caller`` counts in."""
        return max(s.limits.window_s + s.limits.effective_margin_s for s in self.scopes(model, caller))

    def admits_now(self, model: str, ctx: AttemptContext, request: ModelRequest) -> bool:
        """Whether ``model`` has capacity for this attempt's request right now (for a spill-over)."""
        cap = self.config.models[model].max_output_tokens
        return self.has_capacity(model, ctx.tier, ctx.caller, reservation(request, min(request.max_output_tokens, cap)))

    # -- reads --------------------------------------------------------------------------------------

    def headroom(self) -> dict[tuple[str, str], float]:
        """(model, kind) -> unused share of each model's own rpm and tpm over the last window, fleet-wide:
        the usage of the current window plus the previous one weighted by how much of it still overlaps, as
        ``rl_acquire`` counts it. One pipelined read for every limited model."""
        limited = [(name, m.limits) for name, m in self.config.models.items() if m.limits.rpm or m.limits.tpm]
        pipe = self.redis.pipeline(transaction=False)
        for name, _limits in limited:
            pipe.hmget(self.keys.ratelimit(name, "state"), ["ws", "cr", "ct", "pr", "pt"])
        now_ms = time.time() * 1000
        out: dict[tuple[str, str], float] = {}
        for (name, limits), raw in zip(limited, pipe.execute(), strict=True):
            ws, cr, ct, pr, pt = (float(_text(v)) if v is not None else 0.0 for v in raw)
            window_ms = limits.window_s * 1000
            current = (now_ms // window_ms) * window_ms
            weight = 1 - (now_ms - current) / window_ms
            if ws == current:
                used_r, used_t = pr * weight + cr, pt * weight + ct
            elif ws == current - window_ms:  # nothing yet this window: the last one is the previous
                used_r, used_t = cr * weight, ct * weight
            else:
                used_r = used_t = 0.0
            if limits.rpm:
                out[(name, "rpm")] = max(0.0, 1.0 - used_r / limits.rpm)
            if limits.tpm:
                out[(name, "tpm")] = max(0.0, 1.0 - used_t / limits.tpm)
        return out

    def snapshot(self, model: str) -> dict[str, float]:
        """The model scope's raw state (timestamps in ms on the Redis clock) and its in-flight counts."""
        state_key, cci, ccb, _log, _tok = self.scopes(model)[0].keys
        now_ms = time.time() * 1000
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(state_key)
        pipe.zcount(cci, now_ms, "+inf")
        pipe.zcount(ccb, now_ms, "+inf")
        raw, in_i, in_b = pipe.execute()
        out = {_text(k): float(_text(v)) for k, v in raw.items()}
        out["inflight_interactive"] = float(in_i)
        out["inflight_other"] = float(in_b)
        return out


class _Ticket:
    """Capacity held for one attempt; settled once, when the ``with`` block ends."""

    def __init__(self, limiter: RateLimiter, ctx: AttemptContext, ticket_id: str, lanes: str, reserved: int,
                 charged: str = "", held: str = "") -> None:
        self.limiter = limiter
        self.ctx = ctx
        self.ticket_id = ticket_id
        self.lanes = lanes
        self.reserved = reserved
        self.charged = charged
        self.held = held
        self.response: ModelResponse | None = None
        self.headers: dict[str, str] = {}
        self.done = False  # settled (by the ``with`` block's end or by a completion that ran the settle)

    def __enter__(self) -> _Ticket:
        return self

    def settle(self, response: ModelResponse | None, ratelimit_headers: dict[str, str]) -> None:
        self.response = response
        self.headers = dict(ratelimit_headers or {})

    def settlement(self, failure: AttemptFailure | None = None) -> ScriptPart:
        """The settle of this ticket as a script part (``lua/rl_reconcile.lua``), for the completion to run in
        its own step; :meth:`settled` with the reply marks it done (the ``with`` block then settles nothing)."""
        used: int | None = None
        if self.response is not None:
            kind = self.limiter.config.providers[self.ctx.provider].kind
            used = counted_tokens(kind, self.response.usage)
            refund = self.reserved - used
        elif failure is not None and failure.kind in _NOTHING_USED:
            refund = self.reserved
        else:
            refund = 0  # unknown (timeout, cut stream, crash): keep the reservation
        cooldown_s = 0.0
        if failure is not None and failure.kind is OutcomeKind.RATE_LIMITED:
            cooldown_s = failure.retry_after_s if failure.retry_after_s is not None else DEFAULT_COOLDOWN_S
        signals = vendor_signals(self.headers) if self.headers else None
        return self.limiter.settle_part(
            self.ctx.model, self.ctx.caller, self.ticket_id, self.lanes, refund, cooldown_s=cooldown_s,
            signals=signals, used_tokens=used, charged=self.charged, held=self.held,
        )

    def settled(self, reply: Sequence[Any]) -> None:
        """The settle ran (``reply``: rl_reconcile's: cooled down, requests slowed, tokens slowed)."""
        self.done = True
        model, provider = self.ctx.model, self.ctx.provider
        for signal, on in zip(("cooldown", "slow_requests", "slow_tokens"), reply, strict=False):
            if int(on):
                metrics.RATELIMIT_VENDOR_SIGNALS.labels(provider, model, signal).inc()

    def __exit__(self, *exc: object) -> None:
        if self.done:
            return
        failure = exc[1] if len(exc) > 1 and isinstance(exc[1], AttemptFailure) else None
        part = self.settlement(failure)
        try:
            reply = self.limiter._settle(keys=list(part.keys), args=list(part.args))
        except redis.RedisError:
            log.warning("could not settle a rate-limit ticket (its in-flight entry will expire)", exc_info=True)
            return
        self.settled(reply)
