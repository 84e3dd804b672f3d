"""Per-model health in Redis: circuit breaker (closed / open / half-open with one probe at a time),
cooldown from retry-after, and EWMAs of latency and refusal rate.

A circuit opens after ``failures_to_open`` transient failures in a row, for ``open_s``; each failed probe
doubles the next open time up to ``max_open_s``, and each ``open_s`` of healthy time after it closes undoes
one doubling. A successful probe closes it at once.

Workers ``record`` every outcome; routing asks ``choose`` / ``usable``. Both are single Lua scripts, so every
worker and supervisor on every host sees, and changes, the same state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis

from toolbag.config import Config
from toolbag.lua import script as lua_script
from toolbag.providers.base import OutcomeKind
from toolbag.store import text as _text
from toolbag.store.jobstore import ScriptPart
from toolbag.store.keys import Keys
from toolbag.telemetry import metrics

STATES = ("closed", "open", "half_open")


@dataclass(frozen=True)
class ModelHealth:
    model: str
    state: str
    open_for_s: float
    cooling_for_s: float
    ewma_latency_s: float | None
    ewma_refusal: float
    opens: int
    doublings: int  # of the next open time, before healthy time since the circuit closed undoes some


class HealthTracker:
    def __init__(self, client: redis.Redis, keys: Keys, config: Config) -> None:
        self.redis = client
        self.keys = keys
        self.config = config
        self._record = client.register_script(lua_script("health_record"))
        self._choose = client.register_script(lua_script("health_choose"))

    def record(self, model: str, outcome: OutcomeKind, latency_s: float, retry_after_s: float | None) -> None:
        part = self.learning(model, outcome, latency_s, retry_after_s)
        self.learned(model, _text(self._record(keys=list(part.keys), args=list(part.args))))

    def learning(self, model: str, outcome: OutcomeKind, latency_s: float, retry_after_s: float | None) -> ScriptPart:
        """The update of one outcome as a script part (``lua/health_learn.lua``: one key, eight arguments), for
        ``health_record`` or a completion to run; :meth:`learned` with the state it answers."""
        h = self.config.health
        return ScriptPart(
            (self.keys.health(model),),
            (outcome.value, f"{latency_s:.6f}", "" if retry_after_s is None else f"{retry_after_s:.3f}",
             str(h.failures_to_open), str(h.open_s), str(h.max_open_s), str(h.auth_open_s), str(h.ewma_alpha)),
        )

    def learned(self, model: str, state: str) -> None:
        """Publish the circuit state an update answered."""
        self._publish(model, state)

    def choose(self, candidates: Sequence[str]) -> str | None:
        """The first candidate that may take a job now (granting the half-open probe if that is it)."""
        if not candidates:
            return None
        index = int(self._choose(keys=[self.keys.health(m) for m in candidates],
                                 args=[int(self.config.health.probe_lease_s * 1000)]))
        return candidates[index - 1] if index else None

    def usable(self, candidates: Sequence[str]) -> list[str]:
        """Candidates that may take work now, best first: the chosen one, then the other closed ones.

        A route policy with ``prefer_faster`` is applied by the caller through :meth:`by_latency`.
        """
        chosen = self.choose(candidates)
        if chosen is None:
            return []
        rest = []
        for m in candidates:
            if m != chosen:
                snap = self.snapshot(m)
                if snap.state == "closed" and snap.cooling_for_s == 0:
                    rest.append(m)
        return [chosen, *rest]

    def by_latency(self, candidates: Sequence[str]) -> list[str]:
        """Candidates ordered by observed latency; unmeasured ones keep their place after measured ones."""
        latency = {m: self.snapshot(m).ewma_latency_s for m in candidates}
        measured = sorted((m for m in candidates if latency[m] is not None), key=lambda m: latency[m] or 0.0)
        return measured + [m for m in candidates if latency[m] is None]

    def snapshot(self, model: str) -> ModelHealth:
        """The model's health now; how long it stays open or cooling is read on Redis's clock (``TIME``, in the
        same round trip), the clock its deadlines were written on, never this host's."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.health(model))
        pipe.time()
        raw, (seconds, micros) = pipe.execute()
        f = {_text(k): _text(v) for k, v in raw.items()} if raw else {}
        now_ms = int(seconds) * 1000 + int(micros) / 1000
        latency = f.get("ewma_latency_s")
        return ModelHealth(
            model=model,
            state=f.get("state", "closed"),
            open_for_s=max(0.0, (float(f.get("open_until_ms", 0)) - now_ms) / 1000) if f.get("state") == "open"
            else 0.0,
            cooling_for_s=max(0.0, (float(f.get("cooldown_until_ms", 0)) - now_ms) / 1000),
            ewma_latency_s=float(latency) if latency else None,
            ewma_refusal=float(f.get("ewma_refusal", 0.0)),
            opens=int(f.get("opens", 0)),
            doublings=int(f.get("doublings", 0)),
        )

    def publish_all(self) -> None:
        for model in self.config.models:
            self._publish(model, self.snapshot(model).state)

    def _publish(self, model: str, state: str) -> None:
        provider = self.config.provider_of(model)
        metrics.CIRCUIT_OPEN.labels(provider, model).set(1 if state == "open" else 0)
        for s in STATES:
            metrics.CIRCUIT_STATE.labels(provider, model, s).set(1 if s == state else 0)
