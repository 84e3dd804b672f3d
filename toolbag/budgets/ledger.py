"""Reserve and settle spend in Redis, fleet-wide: the budgets a job counts in, and what they say."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import redis

from toolbag.budgets.periods import Period, day_period, month_period, periods
from toolbag.config import BudgetLimit, BudgetsConfig, Config
from toolbag.errors import ToolbagError
from toolbag.lua import script as lua_script
from toolbag.store import text as _text
from toolbag.store.keys import Keys
from toolbag.telemetry import metrics

log = logging.getLogger("toolbag.budgets")

NANO = 1_000_000_000  # spend is kept in whole nano-USD, so every worker adds exactly
RESERVATION_SLACK_S = 3600.0  # a reservation is held this long past its job's deadline at most


class BudgetExceeded(ToolbagError):
    """A budget the job would count in has reached its hard limit: new jobs are refused until it resets."""

    def __init__(self, scope: str, period: Period, limit_usd: float, spent_usd: float, reserved_usd: float) -> None:
        super().__init__(
            f"{scope} {period.kind} budget of ${limit_usd:.2f} reached (${spent_usd:.4f} spent, "
            f"${reserved_usd:.4f} held by jobs in flight); it resets at {period.resets_at.isoformat()}"
        )
        self.scope = scope
        self.period = period


@dataclass(frozen=True)
class Scope:
    """One budget a caller's jobs count in: ``fleet``, ``team:<name>`` or ``caller:<name>``."""

    key: str
    kind: str  # fleet | team | caller
    name: str
    limit: BudgetLimit | None
    labelled: bool  # configured by name: it may be a metric label

    def limit_usd(self, period: Period) -> float | None:
        if self.limit is None:
            return None
        return self.limit.daily_usd if period.kind == "day" else self.limit.monthly_usd


@dataclass(frozen=True)
class ScopeSpend:
    """Spend of one scope in one period (USD)."""

    scope: str
    period: str
    spent_usd: float
    reserved_usd: float
    limit_usd: float | None
    resets_at: str

    @property
    def remaining_usd(self) -> float | None:
        if self.limit_usd is None:
            return None
        return max(0.0, self.limit_usd - self.spent_usd - self.reserved_usd)

    def to_json(self) -> dict[str, object]:
        return {"scope": self.scope, "period": self.period, "spent_usd": round(self.spent_usd, 6),
                "reserved_usd": round(self.reserved_usd, 6), "limit_usd": self.limit_usd,
                "remaining_usd": None if self.remaining_usd is None else round(self.remaining_usd, 6),
                "resets_at": self.resets_at}


def nano(usd: float) -> int:
    return max(0, round(usd * NANO))


class Budgets:
    """The fleet's budgets over one Redis. Thread-safe."""

    def __init__(self, config: Config, client: redis.Redis, keys: Keys) -> None:
        if config.budgets is None:
            raise ValueError("budgets are not configured")
        self.settings: BudgetsConfig = config.budgets
        self.redis = client
        self.keys = keys
        self._reserve = client.register_script(lua_script("budget_reserve"))
        self._settle = client.register_script(lua_script("budget_settle"))
        self._release = client.register_script(lua_script("budget_release"))

    @classmethod
    def of(cls, config: Config, client: redis.Redis, keys: Keys) -> Budgets | None:
        """The fleet's budgets, or None when ``toolbag.yaml`` has no ``budgets`` section."""
        return cls(config, client, keys) if config.budgets is not None else None

    # -- who counts where -----------------------------------------------------------------------------

    def scopes(self, caller: str) -> list[Scope]:
        """The budgets ``caller``'s jobs count in: the fleet's, its team's, its own."""
        s = self.settings
        out = [Scope("fleet", "fleet", "fleet", s.fleet, True)]
        team = s.team_of(caller)
        if team is not None:
            out.append(Scope(f"team:{team}", "team", team, s.teams[team], True))
        entry = s.callers.get(caller)
        out.append(Scope(f"caller:{caller}", "caller", caller, entry, entry is not None))
        return out

    def _pairs(self, caller: str, now_s: float) -> list[tuple[Scope, Period]]:
        return [(scope, period) for scope in self.scopes(caller) for period in periods(now_s, self.settings.time_zone)]

    # -- the scripts ------------------------------------------------------------------------------------

    def reserve(self, job_id: str, caller: str, amount_usd: float, hold_s: float) -> None:
        """Hold ``amount_usd`` for the job in every budget it counts in, or raise :class:`BudgetExceeded`
        (nothing held) naming the first budget at its hard limit."""
        pairs = self._pairs(caller, time.time())
        keys = [self.keys.budget_pending, self.keys.budget_job(job_id)]
        keys += [self.keys.budget(scope.key, period.id) for scope, period in pairs]
        argv: list[str | int] = [job_id, nano(amount_usd), self.keys.job(job_id), self.keys.budget_job(""),
                                 round((hold_s + RESERVATION_SLACK_S) * 1000)]
        for scope, period in pairs:
            limit = scope.limit_usd(period)
            argv += [nano(limit) if limit is not None else 0, period.keep_s]
        reply = self._reserve(keys=keys, args=argv)
        if int(reply[0]) == 1:
            return
        scope, period = pairs[int(reply[1]) - 1]
        limit = scope.limit_usd(period) or 0.0
        metrics.BUDGET_REFUSED.labels(scope.kind, scope.name if scope.labelled else "other", period.kind).inc()
        raise BudgetExceeded(scope.key, period, limit, int(_text(reply[2])) / NANO, int(_text(reply[3])) / NANO)

    def release(self, job_id: str) -> None:
        """Give back all of a job's reservation (its submit created no job)."""
        self._release(keys=[self.keys.budget_job(job_id), self.keys.budget_pending], args=[job_id])

    def settle(self, job_id: str, caller: str, cost_usd: float, *, final: bool) -> None:
        """Charge an attempt's actual cost to the budgets the job reserved in (those of today when it reserved
        none); ``final`` gives back what is left of the reservation. Logs once per budget and period when
        spend crosses its soft limit, and publishes the spend and remaining budget of configured names."""
        job_key = self.keys.budget_job(job_id)
        held = self.redis.hget(job_key, "keys")
        pairs = self._pairs(caller, time.time())
        by_key = {self.keys.budget(scope.key, period.id): (scope, period) for scope, period in pairs}
        names = _text(held).split() if held else list(by_key)
        per_scope: list[int | str] = []
        known: list[tuple[Scope, Period] | None] = []
        for name in names:
            pair = by_key.get(name) or self._pair_of(name, caller)
            known.append(pair)
            limit = pair[0].limit_usd(pair[1]) if pair is not None else None
            ratio = pair[0].limit.soft_ratio if pair is not None and pair[0].limit is not None else 1.0
            per_scope.append(nano(limit * ratio) if limit is not None else 0)
            per_scope.append(json.dumps(soft_limit_notice(pair, limit)))
        reply = self._settle(keys=[job_key, self.keys.budget_pending, self.keys.outbox, *names],
                             args=[job_id, nano(cost_usd), "1" if final else "0", self.settings.webhook_url or "",
                                   *per_scope])
        for pair, (spent, reserved, crossed) in zip(known, reply, strict=True):
            if pair is None:
                continue
            scope, period = pair
            self._publish(scope, period, int(_text(spent)) / NANO, int(_text(reserved)) / NANO)
            if int(crossed):
                label = scope.name if scope.labelled else "other"
                metrics.BUDGET_SOFT_LIMIT.labels(scope.kind, label, period.kind).inc()
                log.warning(json.dumps({"event": "budget_soft_limit", "budget": scope.key, "period": period.id,
                                        "spent_usd": round(int(_text(spent)) / NANO, 6),
                                        "limit_usd": scope.limit_usd(period)}))

    def settle_safely(self, job_id: str, caller: str, cost_usd: float, *, final: bool) -> None:
        """:meth:`settle`, logging instead of raising when Redis cannot be reached (the job's outcome stands;
        its reservation is given back once the job is seen finished)."""
        try:
            self.settle(job_id, caller, cost_usd, final=final)
        except redis.RedisError:
            log.warning("could not charge an attempt's cost to its budgets", exc_info=True)

    def _pair_of(self, key: str, caller: str) -> tuple[Scope, Period] | None:
        """The scope and period a held key names (a reservation made on an earlier day)."""
        for scope in self.scopes(caller):
            prefix = self.keys.budget(scope.key, "")
            if key.startswith(prefix):
                period_id = key[len(prefix):]
                zone = ZoneInfo(self.settings.time_zone)
                try:
                    if period_id.startswith("d:"):
                        return scope, day_period(date.fromisoformat(period_id[2:]), zone)
                    if period_id.startswith("m:"):
                        return scope, month_period(date.fromisoformat(period_id[2:] + "-01"), zone)
                except ValueError:
                    return None
        return None

    def _publish(self, scope: Scope, period: Period, spent_usd: float, reserved_usd: float) -> None:
        if not scope.labelled:
            return
        metrics.BUDGET_SPENT.labels(scope.kind, scope.name, period.kind).set(spent_usd)
        limit = scope.limit_usd(period)
        if limit is not None:
            metrics.BUDGET_REMAINING.labels(scope.kind, scope.name, period.kind).set(
                max(0.0, limit - spent_usd - reserved_usd))

    # -- reads --------------------------------------------------------------------------------------------

    def spend(self, scopes: Sequence[Scope], day_periods: Sequence[Period]) -> list[ScopeSpend]:
        """Spend of each scope in each period (one pipelined read)."""
        pipe = self.redis.pipeline(transaction=False)
        pairs = [(scope, period) for scope in scopes for period in day_periods]
        for scope, period in pairs:
            pipe.hmget(self.keys.budget(scope.key, period.id), ["spent", "reserved"])
        out = []
        for (scope, period), (spent, reserved) in zip(pairs, pipe.execute(), strict=True):
            s = int(_text(spent)) / NANO if spent is not None else 0.0
            r = max(0, int(_text(reserved))) / NANO if reserved is not None else 0.0
            out.append(ScopeSpend(scope.key, period.id, s, r, scope.limit_usd(period), period.resets_at.isoformat()))
            self._publish(scope, period, s, r)
        return out

    def configured_scopes(self) -> list[Scope]:
        """The fleet, every configured team and every configured caller."""
        s = self.settings
        out = [Scope("fleet", "fleet", "fleet", s.fleet, True)]
        out += [Scope(f"team:{t}", "team", t, limit, True) for t, limit in sorted(s.teams.items())]
        out += [Scope(f"caller:{c}", "caller", c, entry, True) for c, entry in sorted(s.callers.items())]
        return out


def soft_limit_notice(pair: tuple[Scope, Period] | None, limit_usd: float | None) -> dict[str, Any]:
    """The webhook body of a budget's first crossing of its soft limit (``spent_usd`` is filled in by the
    settle script, which knows it)."""
    if pair is None:
        return {"event": "budget_soft_limit"}
    scope, period = pair
    return {"event": "budget_soft_limit", "budget": scope.key, "period": period.id, "limit_usd": limit_usd,
            "resets_at": period.resets_at.isoformat()}
