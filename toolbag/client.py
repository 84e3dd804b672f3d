"""The producer API: ``Client.submit`` a capability (never a vendor), then ``job.result()``.

Everything a caller can get wrong is checked here, at the edge, and reported as :class:`SubmitError`
naming the field and the rule; a bad job never reaches a worker. While Redis is away, loading, read-only
(a failover) or full, a submission raises :class:`RedisUnavailable` (retry it with the same idempotency key)
and a caller waiting on a result keeps waiting, reconnecting, until its timeout.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from toolbag.config import MIN_DEADLINE_S, TIERS, Config, Tier, load_config, redis_url, valid_unicode
from toolbag.jobs import JobNotFound, JobRecord, JobResult, JobStatus, ResultTimeout, SubmitError
from toolbag.routing import Bounds, Needs, NoCandidate, Router
from toolbag.store import WAIT_CHUNK_S, JobStore, NewJob
from toolbag.store.connection import UNAVAILABLE_ERRORS, RedisUnavailable
from toolbag.store.jobstore import HISTORY_FIELD
from toolbag.store.keys import Keys
from toolbag.store.messages import queue_name
from toolbag.store.replication import NotReplicated, Replication, barrier

if TYPE_CHECKING:
    from toolbag.attempt.deltas import DeltaEvent
    from toolbag.bulk.pipeline import MapResult
    from toolbag.skills import SkillLibrary
    from toolbag.skills.model import Skill

_CALLER_RE = re.compile(r"^[A-Za-z0-9._@/+-]{1,128}$")
_MAX_IDEMPOTENCY_KEY_CHARS = 256
_INBOX_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_INPUT_DEPTH = 100  # containers inside containers in a job's input; deeper is refused at submit
REDIS_RETRY_S = 0.5  # a waiting caller's pause between reconnection attempts while Redis is unavailable
_WAIT_OUT: tuple[type[Exception], ...] = (*UNAVAILABLE_ERRORS, NotReplicated)  # what result() waits out


def _unavailable(err: Exception) -> RedisUnavailable:
    return RedisUnavailable(f"redis is unavailable ({type(err).__name__}: {err}); the submission may not have "
                            "been recorded: retry it with the same idempotency key")


@dataclass(frozen=True)
class JobRequest:
    """One job to submit; the arguments of :meth:`Client.submit` as a value (for ``submit_many``)."""

    capability: str | None = None
    input: Any = None
    skill: str | None = None
    tier: str | None = None
    caller: str = "anonymous"
    idempotency_key: str | None = None
    deadline_s: float | None = None
    inbox: str | None = None
    """A completion inbox name: when the job ends (any terminal status) its id is pushed onto
    ``Keys.inbox(inbox)``, so one consumer follows many jobs (``JobStore.pop_inbox``)."""
    candidates: tuple[str, ...] | None = None
    """Pin the job to these configured models instead of the route (evals, canaries); not for call sites."""
    max_cost_usd: float | None = None
    """Only candidates whose expected cost for this input (estimated input plus the output cap) is at most this."""
    max_latency_s: float | None = None
    """Only candidates whose recent latency (the fleet's health data) is at most this; unmeasured ones pass."""


class Job:
    """A handle on a submitted job."""

    def __init__(self, client: Client, job_id: str, created: bool = True) -> None:
        self.client = client
        self.id = job_id
        self.created = created

    def __repr__(self) -> str:
        return f"Job({self.id!r})"

    def status(self) -> JobStatus:
        return self.client.store.get(self.id).status

    def result(self, timeout_s: float | None = 60.0, *, until_resolved: bool = False) -> JobResult:
        """Wait for a terminal status (woken by Redis, no polling) and return the result.

        An escalated job is returned as such, unless ``until_resolved``: then the wait goes on until a
        person resolves, rejects or retries it. Raises :class:`ResultTimeout` after ``timeout_s``.
        """
        return self.client.result(self.id, timeout_s, until_resolved=until_resolved)

    def cancel(self) -> bool:
        return self.client.cancel(self.id)

    def stream(self, timeout_s: float | None = 60.0) -> Iterator[DeltaEvent]:
        """The job's text as its attempts stream it (streaming tiers): ``TextDelta`` pieces and an
        ``AttemptEnd`` after each attempt. A failed attempt's text is not part of the answer: the next
        attempt starts from the beginning. Ends when an attempt succeeds or the job is terminal (then
        :meth:`result` has the output and usage)."""
        from toolbag.attempt.deltas import read_deltas

        store = self.client.store
        return read_deltas(store.redis, store.keys.deltas(self.id), self.status, timeout_s=timeout_s)


class Client:
    """Submit jobs to the fleet and collect their results. Thread-safe."""

    def __init__(
        self,
        config: Config | None = None,
        redis_url_: str | None = None,
        *,
        store: JobStore | None = None,
        skills_root: str | None = None,
    ) -> None:
        self.config = config or load_config()
        self.store = store or JobStore.from_url(
            redis_url_ or redis_url(), Keys(self.config.fleet.key_prefix), self.config.fleet.job_ttl_s
        )
        self.store.replication = Replication.of(self.config.fleet.redis_durability,
                                                self.config.fleet.replica_ack_timeout_ms)
        from toolbag.routing.health import HealthTracker

        self.health = HealthTracker(self.store.redis, self.store.keys, self.config)
        self.router = Router(self.config, self.health)
        from toolbag.budgets import Budgets

        self.budgets = Budgets.of(self.config, self.store.redis, self.store.keys)
        self._choice_cache: dict[tuple[str, Tier, Needs], tuple[list[str], str]] | None = None
        self._skills_root = skills_root
        self._skills: SkillLibrary | None = None

    # -- submit -------------------------------------------------------------------------------------

    def submit(
        self,
        capability: str | None = None,
        *,
        input: Any = None,  # noqa: A002 - the public name the docs use
        skill: str | None = None,
        tier: str | None = None,
        caller: str = "anonymous",
        idempotency_key: str | None = None,
        deadline_s: float | None = None,
        candidates: tuple[str, ...] | None = None,
        max_cost_usd: float | None = None,
        max_latency_s: float | None = None,
    ) -> Job:
        """Submit one job. ``capability`` or ``skill`` (or both) must be given.

        ``candidates`` pins the job to these configured models instead of the route (evals, canaries).
        ``max_cost_usd`` and ``max_latency_s`` leave out candidates expected to cost more, or recently slower.
        """
        request = JobRequest(capability, input, skill, tier, caller, idempotency_key, deadline_s,
                             candidates=candidates, max_cost_usd=max_cost_usd, max_latency_s=max_latency_s)
        try:
            new_job = self._prepare(request)  # routing reads the fleet's health from Redis
            self._reserve([new_job])
            try:
                created, job_id = self.store.submit(new_job)  # counted fleet-wide (toolbag_jobs_submitted_total)
            except BaseException:
                self._release([new_job])
                raise
        except UNAVAILABLE_ERRORS as err:
            raise _unavailable(err) from None
        if not created:
            self._release([new_job])
        return Job(self, job_id, created)

    def submit_many(
        self, requests: Iterable[JobRequest | Mapping[str, Any]], chunk_size: int = 500, *, inbox: str | None = None
    ) -> list[Job]:
        """Validate and enqueue many jobs, pipelined in chunks; all-or-nothing validation per chunk.

        ``inbox`` names a completion inbox for every request that does not name its own.
        """
        jobs: list[Job] = []
        chunk: list[NewJob] = []
        self._choice_cache = {}  # one routing choice per (capability, tier, needs) per chunk
        try:
            for item in requests:
                chunk.append(self._prepare(item, inbox))
                if len(chunk) >= chunk_size:
                    jobs += self._flush(chunk)
                    chunk = []
                    self._choice_cache = {}
            if chunk:
                jobs += self._flush(chunk)
        except UNAVAILABLE_ERRORS as err:
            raise _unavailable(err) from None
        finally:
            self._choice_cache = None
        return jobs

    def prepare_each(
        self, requests: Sequence[JobRequest], *, count_rejected: bool = True
    ) -> list[NewJob | SubmitError]:
        """Validate each request on its own, without submitting: a :class:`NewJob` for
        :meth:`submit_prepared`, or the :class:`SubmitError` that names the field. One routing choice
        per (capability, tier, needs) for the whole list, as in ``submit_many``.

        ``count_rejected=False`` (a dry run, which submits nothing) leaves refusals out of
        ``toolbag_jobs_rejected_total``."""
        out: list[NewJob | SubmitError] = []
        self._choice_cache = {}
        try:
            for request in requests:
                try:
                    out.append(self._prepare(request) if count_rejected else self._validate(request))
                except SubmitError as err:
                    out.append(err)
        finally:
            self._choice_cache = None
        return out

    def submit_prepared(self, jobs: Sequence[NewJob]) -> list[Job]:
        """Enqueue jobs from :meth:`prepare_each` in one pipelined round trip (each job still atomic)."""
        return self._flush(list(jobs)) if jobs else []

    def map(
        self,
        skill: str | None,
        inputs: Iterable[Any],
        *,
        capability: str | None = None,
        tier: str | None = None,
        caller: str = "anonymous",
        max_in_flight: int = 256,
        ordered: bool = False,
        idempotency_key: Callable[[int, Any], str] | None = None,
    ) -> Iterator[MapResult]:
        """Run ``skill`` (or ``capability``) on every input; yield a :class:`~toolbag.bulk.MapResult` per
        input as its job finishes (in input order with ``ordered=True``).

        At most ``max_in_flight`` jobs are queued or running at once and ``inputs`` is read lazily, so it
        may be a generator over a file of any size. An input that fails validation is yielded with
        ``error`` set and no job. ``idempotency_key(index, input)`` makes a rerun reuse the jobs (and
        results) of an earlier run instead of paying again.
        """
        from toolbag.bulk.pipeline import map_inputs

        return map_inputs(
            self, skill, inputs, capability=capability, tier=tier, caller=caller, max_in_flight=max_in_flight,
            ordered=ordered, idempotency_key=idempotency_key,
        )

    def _flush(self, chunk: list[NewJob]) -> list[Job]:
        try:
            self._reserve(chunk)
            try:
                done = self.store.submit_many(chunk)
            except BaseException:
                self._release(chunk)
                raise
        except UNAVAILABLE_ERRORS as err:
            raise _unavailable(err) from None
        self._release([job for job, (created, _id) in zip(chunk, done, strict=True) if not created])
        return [Job(self, job_id, created) for created, job_id in done]

    def _reserve(self, jobs: Sequence[NewJob]) -> None:
        """Hold each job's estimated cost against its budgets; a budget at its hard limit refuses the lot
        (what was held for the others is given back) with a :class:`SubmitError` naming it."""
        if self.budgets is None:
            return
        from toolbag.budgets import BudgetExceeded

        held: list[NewJob] = []
        try:
            for job in jobs:
                self.budgets.reserve(job.job_id, job.caller, self._estimate_usd(job),
                                     job.deadline_s + self.config.tiers[self._tier_of(job)].total_timeout_s)
                held.append(job)
        except BudgetExceeded as err:
            self._release(held)
            self.store.count_rejected("budget")
            raise SubmitError("budget", str(err)) from None
        except BaseException:
            self._release(held)
            raise

    def _release(self, jobs: Sequence[NewJob]) -> None:
        if self.budgets is None:
            return
        try:
            for job in jobs:
                self.budgets.release(job.job_id)
        except UNAVAILABLE_ERRORS:
            pass  # Redis is away: a hold whose job never started is given back lazily by a later reservation

    def _tier_of(self, job: NewJob) -> Tier:
        tier = job.fields["tier"]
        return tier if tier in TIERS else "standard"

    def _estimate_usd(self, job: NewJob) -> float:
        from toolbag.attempt.request import build_request
        from toolbag.budgets.estimate import reservation_usd

        f = job.fields
        skill = self.skill(f["skill"]) if "skill" in f else None
        plan = json.loads(f["plan"])
        request = build_request(self.config, capability=f["capability"], tier=self._tier_of(job), model=f["model"],
                                job_input=json.loads(f["input"]), skill=skill)
        return reservation_usd(self.config, plan, request)

    def _prepare(self, item: JobRequest | Mapping[str, Any], inbox: str | None = None) -> NewJob:
        """Validate one request (``inbox`` names a completion inbox when the request names none)."""
        try:
            req = _as_request(item)
            if inbox is not None and req.inbox is None:
                req = replace(req, inbox=inbox)
            return self._validate(req)
        except SubmitError as err:
            self.store.count_rejected(err.field.split(".")[0].split("[")[0])
            raise

    def _validate(self, req: JobRequest) -> NewJob:
        _check_text(req)
        skill = self.skill(req.skill) if req.skill is not None else None
        capability = self._capability(req, skill)
        tier = self._tier(req, skill)
        _check_names(req)
        deadline_s = self._deadline_s(req, tier)
        input_json = self._input_json(req, skill)
        needs = _needs_for(skill, input_json)
        candidates = _candidates(req.candidates)
        bounds = Bounds(_bound(req.max_cost_usd, "max_cost_usd"), _bound(req.max_latency_s, "max_latency_s"))
        route_reason = ""
        try:
            if candidates:
                plan, model = self._pinned(candidates, needs)
            elif self.config.route(capability, tier).routing == "order" and bounds == Bounds():
                plan, model = self._route(capability, tier, needs)
            else:
                choice = self.router.choose(capability, tier, needs, bounds,
                                            cost_of=self._cost_of(capability, tier, input_json, skill))
                plan, model, route_reason = choice.plan, choice.model, choice.reason
        except NoCandidate as err:
            raise SubmitError(err.field, str(err)) from None
        provider = self.config.provider_of(model)
        queue = queue_name(provider, tier)
        fields = {
            "capability": capability,
            "tier": tier,
            "caller": req.caller,
            "input": input_json,
            "plan": json.dumps(plan),
            "model": model,
            "provider": provider,
            "queue": queue,
        }
        if skill is not None:
            fields["skill"] = skill.name
            fields["skill_hash"] = skill.content_hash
            fields["skill_version"] = skill.version
        if req.inbox is not None:
            fields["inbox"] = self.store.keys.inbox(req.inbox)
        if route_reason:
            from toolbag.jobs import DecisionRecord

            fields[HISTORY_FIELD] = DecisionRecord("route", route_reason, model).to_json()
        return NewJob(
            job_id=uuid.uuid4().hex,
            queue=queue,
            deadline_s=deadline_s,
            fields=fields,
            idempotency_key=req.idempotency_key,
            caller=req.caller,
        )

    def _capability(self, req: JobRequest, skill: Skill | None) -> str:
        capability = req.capability or (skill.capability if skill else None)
        if not capability:
            raise SubmitError("capability", "give a capability or a skill")
        if capability not in self.config.routes:
            raise SubmitError(
                "capability", f"unknown capability {capability!r}; known: {', '.join(self.config.capabilities)}"
            )
        if skill is not None and skill.capability != capability:
            raise SubmitError(
                "skill", f"skill {skill.name!r} serves capability {skill.capability!r}, not {capability!r}"
            )
        return capability

    def _tier(self, req: JobRequest, skill: Skill | None) -> Tier:
        tier = req.tier or (skill.default_tier if skill else None) or "standard"
        if tier not in TIERS:
            raise SubmitError("tier", f"unknown tier {tier!r}; use one of {', '.join(TIERS)}")
        return tier

    def _deadline_s(self, req: JobRequest, tier: Tier) -> float:
        tier_cfg = self.config.tiers[tier]
        deadline_s = tier_cfg.default_deadline_s if req.deadline_s is None else req.deadline_s
        if isinstance(deadline_s, bool) or not isinstance(deadline_s, int | float) or not deadline_s > 0:
            raise SubmitError("deadline_s", "must be a positive number of seconds")
        if deadline_s < MIN_DEADLINE_S:
            raise SubmitError("deadline_s", f"must be at least {MIN_DEADLINE_S:g}s: a shorter deadline passes before "
                                            "any attempt can run")
        if deadline_s > tier_cfg.max_deadline_s:
            raise SubmitError("deadline_s", f"exceeds the {tier} tier's maximum of {tier_cfg.max_deadline_s:g}s")
        return float(deadline_s)

    def _input_json(self, req: JobRequest, skill: Skill | None) -> str:
        """The input as canonical JSON, within the size limit and, with a skill, its input schema."""
        if req.input is None:
            raise SubmitError("input", "is required")
        problem = _shape_problem(req.input, self.config.fleet.max_input_bytes)
        if problem:
            raise SubmitError("input", problem)
        try:
            input_json = json.dumps(req.input, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise SubmitError("input", f"must be JSON-serializable ({err})") from None
        size = len(input_json.encode())
        if size > self.config.fleet.max_input_bytes:
            raise SubmitError("input", f"{size} bytes exceeds the limit of {self.config.fleet.max_input_bytes} bytes")
        if skill is not None:
            from toolbag.skills import SkillInputError, validate_input

            try:
                validate_input(skill, req.input)
            except SkillInputError as err:
                raise SubmitError(getattr(err, "path", "input"), str(err)) from None
        return input_json

    def _cost_of(
        self, capability: str, tier: Tier, input_json: str, skill: Skill | None
    ) -> Callable[[str], float]:
        """Expected USD of one call of this job's input on a model (estimated input plus the output cap)."""
        from toolbag.attempt.request import build_request
        from toolbag.budgets.estimate import call_cost_usd

        route = self.config.route(capability, tier)
        widest = max(route.candidates, key=lambda m: self.config.models[m].max_output_tokens)
        request = build_request(self.config, capability=capability, tier=tier, model=widest,
                                job_input=json.loads(input_json), skill=skill)
        return lambda model: call_cost_usd(self.config, model, request)

    def _pinned(self, candidates: tuple[str, ...], needs: Needs) -> tuple[list[str], str]:
        unknown = [m for m in candidates if m not in self.config.models]
        if unknown:
            raise SubmitError("candidates", f"unknown model(s) {', '.join(unknown)}")
        plan = [m for m in candidates if self.router.meets(m, needs)]
        if not plan:
            raise SubmitError("candidates", "none of these models has the features this job needs")
        return plan, plan[0]

    def _route(self, capability: str, tier: Tier, needs: Needs) -> tuple[list[str], str]:
        if self._choice_cache is None:
            return self.router.first(capability, tier, needs)
        key = (capability, tier, needs)
        if key not in self._choice_cache:
            self._choice_cache[key] = self.router.first(capability, tier, needs)
        return self._choice_cache[key]

    def skill(self, name: str) -> Skill:
        """The skill ``name`` as a submitted job would run it, from this client's skills folder (``skills_root``,
        else :func:`~toolbag.skills.default_skills_dir`); :class:`SubmitError` naming ``skill`` when it is unknown,
        invalid or unreadable."""
        from toolbag.skills import SkillLibrary, SkillLoadError, default_skills_dir

        if self._skills is None:
            self._skills = SkillLibrary(self._skills_root or default_skills_dir())
        try:
            return self._skills.get(name)
        except KeyError:
            known = self._skills.names()
            where = (f"known: {', '.join(known)}" if known
                     else f"no skills in {self._skills.root.resolve()}; set TOOLBAG_SKILLS_DIR to the skills folder")
            raise SubmitError("skill", f"unknown skill {name!r}; {where}") from None
        except SkillLoadError as err:
            raise SubmitError("skill", err.summary(name)) from None
        except OSError as err:  # e.g. a name too long for a folder
            raise SubmitError("skill", f"cannot read skill {name!r} ({err.strerror})") from None

    # -- results ------------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        self.store.get(job_id)
        return Job(self, job_id, created=False)

    def result(self, job_id: str, timeout_s: float | None = 60.0, *, until_resolved: bool = False) -> JobResult:
        """The job's result once it is terminal (resolved, with ``until_resolved``); :class:`ResultTimeout`
        after ``timeout_s``. Redis being unavailable meanwhile is waited out, within the same timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        status: JobStatus | None = None
        while True:
            remaining = WAIT_CHUNK_S if deadline is None else deadline - time.monotonic()
            try:
                record, history = self.store.snapshot(job_id)
                status = record.status
                escalated = status is JobStatus.ESCALATED
                if status.terminal and not (escalated and until_resolved):
                    # replicated mode: never return a result a failover could still take back
                    barrier(self.store.redis, self.store.keys.replication_barrier, self.store.replication)
                    return self._to_result(record, history)
                remaining = WAIT_CHUNK_S if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    raise ResultTimeout(f"job {job_id} is still {status.value} after {timeout_s}s")
                if escalated:
                    self.store.wait_resolved(job_id, remaining)
                else:
                    self.store.wait(job_id, remaining)
            except _WAIT_OUT as err:
                if remaining <= 0 or (deadline is not None and time.monotonic() >= deadline):
                    was = f"still {status.value}" if status is not None else "not read"
                    raise ResultTimeout(f"job {job_id} is {was} after {timeout_s}s; redis is unavailable "
                                        f"({type(err).__name__})") from None
                time.sleep(min(REDIS_RETRY_S, max(remaining, 0.0)))

    def results(self, jobs: Iterable[Job], timeout_s: float | None = None) -> Iterator[JobResult]:
        """Results in submission order."""
        for job in jobs:
            yield self.result(job.id, timeout_s)

    def result_of(self, record: JobRecord, history: list[dict[str, Any]]) -> JobResult:
        """The :class:`JobResult` of a terminal job from its record and history (``JobStore.snapshot``)."""
        return self._to_result(record, history)

    def _to_result(self, record: JobRecord, history: list[dict[str, Any]]) -> JobResult:
        result = record.result_value()
        return JobResult(
            job_id=record.id,
            status=record.status,
            output=record.output_value(),
            provider=result.get("provider"),
            model=result.get("model"),
            error=record.error or None,
            usage=result.get("usage", {}),
            cost_usd=float(result.get("cost_usd", 0.0)),
            attempts=history,
            skill=record.skill,
            skill_hash=record.skill_hash,
            capability=record.capability,
            tier=record.tier,
            tool_calls=list(result.get("tool_calls") or []),
        )

    def cancel(self, job_id: str) -> bool:
        """Cancel a job that has not finished. Returns False if it was already terminal."""
        from toolbag.jobs import DecisionRecord

        record = DecisionRecord("cancel", "cancelled by caller").to_json()
        done = self.store.finish(job_id, JobStatus.CANCELLED, "cancelled by caller", record)
        if not done.ok and done.missing:
            raise JobNotFound(job_id)
        return done.ok  # counted fleet-wide in Redis by finish.lua (toolbag_jobs_finished_total)


def _as_request(item: JobRequest | Mapping[str, Any]) -> JobRequest:
    """A ``submit_many`` item as a :class:`JobRequest`; an unknown field is named, not a ``TypeError``."""
    if isinstance(item, JobRequest):
        return item
    if not isinstance(item, Mapping):
        raise SubmitError("request", f"must be a JobRequest or a mapping, got {type(item).__name__}")
    unknown = [key for key in item if key not in _REQUEST_FIELDS]
    if unknown:
        raise SubmitError("request", f"unknown field {', '.join(repr(k) for k in unknown)}; "
                                     f"known: {', '.join(sorted(_REQUEST_FIELDS))}")
    return JobRequest(**item)


_REQUEST_FIELDS = frozenset(f.name for f in fields(JobRequest))
_TEXT_FIELDS = ("capability", "skill", "tier", "caller", "idempotency_key", "inbox")


def _check_text(req: JobRequest) -> None:
    """Every name a caller gives is a string of valid Unicode (no lone surrogate: Redis and vendors need UTF-8)."""
    for name in _TEXT_FIELDS:
        value = getattr(req, name)
        if value is None and name != "caller":
            continue
        if not isinstance(value, str):
            raise SubmitError(name, f"must be a string, got {type(value).__name__}")
        if not valid_unicode(value):
            raise SubmitError(name, "is not valid Unicode text (it holds a lone surrogate)")


def _bound(value: Any, name: str) -> float | None:
    """A job's ``max_cost_usd`` or ``max_latency_s``: none, or a positive finite number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
        raise SubmitError(name, "must be a positive number")
    return float(value)


def _candidates(value: Any) -> tuple[str, ...]:
    """Pinned models: none, or a list of model names."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(m, str) for m in value):
        raise SubmitError("candidates", "must be a list of model names")
    return tuple(value)


def _shape_problem(value: Any, max_bytes: int) -> str | None:
    """Why ``value`` cannot be a job's input, found without recursion: nested deeper than
    :data:`MAX_INPUT_DEPTH`, more values than ``max_bytes`` could hold, or text that is not valid Unicode.
    ``None`` when none of these; ``json.dumps`` judges the rest."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    values = 0
    while stack:
        item, depth = stack.pop()
        values += 1
        if values > max_bytes:
            return f"exceeds the limit of {max_bytes} bytes"
        if isinstance(item, str):
            if not valid_unicode(item):
                return "text is not valid Unicode (it holds a lone surrogate)"
            continue
        if not isinstance(item, dict | list | tuple):
            continue
        if depth >= MAX_INPUT_DEPTH:
            return f"is nested deeper than {MAX_INPUT_DEPTH} levels"
        if isinstance(item, dict):
            stack.extend((key, depth) for key in item if isinstance(key, str))
            item = item.values()
        stack.extend((child, depth + 1) for child in item)
    return None


def _check_names(req: JobRequest) -> None:
    """Caller, idempotency key and inbox: names that end up in Redis keys."""
    if not isinstance(req.caller, str) or not _CALLER_RE.match(req.caller):
        raise SubmitError("caller", "1-128 characters from letters, digits and . _ @ / + -")
    if req.idempotency_key is not None and (
        not isinstance(req.idempotency_key, str) or not 0 < len(req.idempotency_key) <= _MAX_IDEMPOTENCY_KEY_CHARS
    ):
        raise SubmitError("idempotency_key", f"a non-empty string of at most {_MAX_IDEMPOTENCY_KEY_CHARS} chars")
    if req.inbox is not None and (not isinstance(req.inbox, str) or not _INBOX_RE.match(req.inbox)):
        raise SubmitError("inbox", "1-128 characters from letters, digits and . _ : -")


def _needs_for(skill: Skill | None, input_json: str) -> Needs:
    from toolbag.attempt.tokens import estimate_text_tokens

    approx_tokens = estimate_text_tokens(input_json)
    if skill is None:
        return Needs(min_context_tokens=approx_tokens)
    features = set(skill.required_features)
    return Needs(
        json_schema="json_schema" in features,
        tools="tools" in features,
        min_context_tokens=max(approx_tokens, skill.route_hints.min_context_tokens or 0),
    )
