"""Running a skill's eval cases from the browser: ``toolbag eval NAME --provider all`` in a thread of the
console process (:func:`toolbag.skills.fleet_evals.run_evals`, the same jobs and the same judging), with the
pass table kept in memory until the next run of that skill."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from toolbag.client import Client
from toolbag.skills.fleet_evals import CaseResult, run_evals

EVAL_TIMEOUT_S = 300.0


@dataclass
class EvalRun:
    skill: str
    providers: list[str]
    semantic: bool
    started_by: str
    started_ms: int
    state: str = "running"  # running | done | failed
    error: str = ""
    results: list[CaseResult] = field(default_factory=list)

    def cell(self, provider: str) -> tuple[int, int]:
        mine = [r for r in self.results if r.provider == provider]
        return sum(r.passed for r in mine), len(mine)

    @property
    def cases(self) -> list[str]:
        return list(dict.fromkeys(r.case for r in self.results))

    def result(self, case: str, provider: str) -> CaseResult | None:
        return next((r for r in self.results if r.case == case and r.provider == provider), None)

    @property
    def passed(self) -> bool:
        return self.state == "done" and all(r.passed for r in self.results)


class EvalRuns:
    """The latest eval run of each skill, started from the console."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._runs: dict[str, EvalRun] = {}

    def get(self, skill: str) -> EvalRun | None:
        return self._runs.get(skill)

    def start(self, skill: str, who: str) -> EvalRun:
        """Run every eval case of ``skill`` on every configured provider; content (semantic) checks only when
        no provider answers from the simulator, as ``toolbag eval`` decides."""
        from toolbag.providers.registry import resolve_provider

        config = self.client.config
        providers = list(config.providers)
        semantic = all(resolve_provider(p, config).source != "simulator" for p in providers)
        with self._lock:
            current = self._runs.get(skill)
            if current is not None and current.state == "running":
                return current
            run = EvalRun(skill, providers, semantic, who, int(time.time() * 1000))
            self._runs[skill] = run
        threading.Thread(target=self._run, args=(run,), name=f"toolbag-console-eval-{skill}", daemon=True).start()
        return run

    def _run(self, run: EvalRun) -> None:
        try:
            run.results = run_evals(self.client, [run.skill], run.providers, semantic=run.semantic,
                                    timeout_s=EVAL_TIMEOUT_S)
            run.state = "done"
        except Exception as err:  # the page says why; a new run starts over
            run.state, run.error = "failed", f"{type(err).__name__}: {err}"[:500]
