"""A batch run: every record of a JSONL or CSV file becomes one job; results and errors go to files.

Resumable by construction. The outputs are append-only and name each record's id, so a rerun skips the
ids already written. Every job carries an idempotency key made of the input file's path, the record's
id and content, and the skill's name and content hash (or the capability), the tier and an optional
salt: a record resubmitted after a crash maps to the job the first run created — no second vendor
call, its result is read instead — while a record edited in between gets a new job.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolbag.bulk.estimate import Estimate, request_for
from toolbag.bulk.files import (
    ROW_COLUMN,
    BulkFileError,
    InputLine,
    InputSpec,
    OutputFile,
    coerce_for_schema,
    csv_header,
    csv_id_column,
    read_input,
    scan_ids,
)
from toolbag.bulk.pipeline import Finished, Pipeline, Rejected, Submitted
from toolbag.client import Client, JobRequest
from toolbag.config import TIERS, Tier
from toolbag.errors import ToolbagError
from toolbag.jobs import JobResult, SubmitError
from toolbag.routing.vendorbatch import left_when_batched_s, vendor_batch_eligible

if TYPE_CHECKING:
    from toolbag.skills.model import Skill

_KEY_VERSION = "toolbag-bulk-v1"


CLAIMED_AFTER_S = 1.0  # the least time between a job's submission and its first claim, for the dry run's rule


class BatchError(ToolbagError):
    """The run cannot start (bad arguments, unreadable files); phrased for the person running it."""


@dataclass(frozen=True)
class BatchSpec:
    """What to run: the input, where results go, and the work each record becomes."""

    input: InputSpec
    output: Path
    errors: Path | None = None
    skill: str | None = None
    capability: str | None = None
    tier: str = "batch"
    caller: str = "bulk"
    deadline_s: float | None = None
    max_in_flight: int = 500
    chunk_size: int = 200
    salt: str = ""
    output_tokens: int | None = None  # a typical output size for the estimate (default: the job's cap)

    @property
    def errors_path(self) -> Path:
        """``--errors``, else ``<output stem>.errors<suffix>`` next to the output."""
        if self.errors is not None:
            return self.errors
        return self.output.with_name(f"{self.output.stem}.errors{self.output.suffix or '.jsonl'}")


@dataclass
class Counts:
    """Progress of a run. ``done_before``: records already in the outputs when it started."""

    total: int = 0
    done_before: int = 0
    errors_before: int = 0
    ok: int = 0
    errors: int = 0
    submitted: int = 0
    reused: int = 0
    cost_usd: float = 0.0
    started_s: float = field(default_factory=time.monotonic)

    @property
    def processed(self) -> int:
        return self.ok + self.errors

    @property
    def finished(self) -> int:
        return self.done_before + self.processed

    def to_dict(self) -> dict[str, Any]:
        elapsed_s = time.monotonic() - self.started_s
        return {"total": self.total, "done_before": self.done_before, "errors_before": self.errors_before,
                "ok": self.ok, "errors": self.errors,
                "submitted": self.submitted, "reused_jobs": self.reused, "cost_usd": round(self.cost_usd, 6),
                "elapsed_s": round(elapsed_s, 3),
                "lines_per_s": round(self.processed / elapsed_s, 1) if elapsed_s > 0 else 0.0}


@dataclass
class DryRun:
    """What ``--dry-run`` reports: how many jobs a run would submit, and what they would cost."""

    total: int
    done_before: int
    invalid: list[tuple[InputLine, str, str]]
    estimate: Estimate
    model_first: str | None = None
    realtime_reason: str = ""  # why no job would go through a vendor batch ("" when some would, or none to do)

    @property
    def to_submit(self) -> int:
        return self.estimate.jobs


def _unique(name: str, taken: set[str]) -> str:
    while name in taken:
        name = f"tb_{name}"
    taken.add(name)
    return name


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class BatchRun:
    """One ``toolbag batch run``. Use :meth:`dry_run` or :meth:`run`."""

    def __init__(self, client: Client, spec: BatchSpec) -> None:
        self.client = client
        self.spec = spec
        if not spec.skill and not spec.capability:
            raise BatchError("give --skill NAME or --capability NAME")
        tier = next((t for t in TIERS if t == spec.tier), None)
        if tier is None:
            raise BatchError(f"--tier: unknown tier {spec.tier!r}; use one of {', '.join(TIERS)}")
        self.tier: Tier = tier
        if spec.max_in_flight < 1:
            raise BatchError("--max-in-flight must be at least 1")
        self.skill: Skill | None = None
        if spec.skill:
            try:
                self.skill = client.skill(spec.skill)
            except SubmitError as err:
                raise BatchError(f"--skill: {err.reason}") from None
        self.capability = spec.capability or (self.skill.capability if self.skill else "")
        if self.capability not in client.config.routes:
            raise BatchError(f"--capability: unknown capability {self.capability!r}; "
                             f"known: {', '.join(client.config.capabilities)}")
        if not spec.input.path.is_file():
            raise BatchError(f"{spec.input.path}: no such file")
        if spec.output.resolve() == spec.input.path.resolve() or spec.errors_path.resolve() in (
            spec.input.path.resolve(), spec.output.resolve()
        ):
            raise BatchError("the input, output and errors files must be three different files")
        self._identity = [str(spec.input.path.resolve()), spec.skill or "", self.skill.content_hash if self.skill
                          else "", self.capability, spec.tier, spec.salt]
        self._coerce: Callable[[dict[str, str]], Any] | None = None
        self._setup_columns()

    # -- file shapes --------------------------------------------------------------------------------

    def _setup_columns(self) -> None:
        spec = self.spec
        self.out_columns: list[str] = []
        self.err_columns: list[str] = []
        self.id_column = "id"
        self.output_fields: list[str] = []
        if spec.input.format != "csv":
            return
        try:
            header = csv_header(spec.input.path)
        except BulkFileError as err:
            raise BatchError(str(err)) from None
        try:
            id_column = csv_id_column(spec.input.path, header, spec.input.id_field)
        except BulkFileError as err:
            raise BatchError(f"--id-column: {err}") from None
        if self.skill is not None:
            self._coerce = coerce_for_schema(self.skill.input_schema)
        taken = set(header)
        self.row_column = _unique(ROW_COLUMN, taken)
        self.id_column = id_column or self.row_column
        schema = self.skill.output_schema if self.skill is not None else None
        props = schema.get("properties") if isinstance(schema, dict) else None
        self.output_fields = list(props) if isinstance(props, dict) and props else []
        out_names = [f"output.{p}" for p in self.output_fields] or ["output"]
        out_added = [_unique(n, set(taken)) for n in [*out_names, "job_id", "model", "cost_usd"]]
        err_added = [_unique(n, set(taken)) for n in ["status", "reason", "field", "job_id"]]
        self._out_names = dict(zip([*out_names, "job_id", "model", "cost_usd"], out_added, strict=True))
        self._err_names = dict(zip(["status", "reason", "field", "job_id"], err_added, strict=True))
        self.out_columns = [*header, self.row_column, *out_added]
        self.err_columns = [*header, self.row_column, *err_added]

    def _open_outputs(self) -> tuple[OutputFile, OutputFile]:
        fmt = self.spec.input.format
        out = OutputFile(self.spec.output, fmt, self.out_columns, self.id_column)
        err = OutputFile(self.spec.errors_path, fmt, self.err_columns, self.id_column)
        try:
            out.open()
            try:
                err.open()
            except BulkFileError:
                out.close()
                raise
        except (BulkFileError, OSError) as e:
            raise BatchError(str(e)) from None
        return out, err

    def _lines(self) -> Iterator[InputLine]:
        return read_input(self.spec.input, self._coerce)

    def _scan(self) -> int:
        try:
            return scan_ids(self._lines())
        except BulkFileError as err:
            raise BatchError(str(err)) from None

    # -- keys ---------------------------------------------------------------------------------------

    def idempotency_key(self, line: InputLine) -> str:
        """The same record of the same file for the same skill version and tier: the same job."""
        material = json.dumps([_KEY_VERSION, *self._identity, line.key, line.digest])
        return "bulk:" + hashlib.sha256(material.encode()).hexdigest()

    def inbox_name(self) -> str:
        material = json.dumps([_KEY_VERSION, "inbox", *self._identity, str(self.spec.output.resolve())])
        return "bulk:" + hashlib.sha256(material.encode()).hexdigest()[:32]

    def _request(self, line: InputLine) -> JobRequest:
        spec = self.spec
        return JobRequest(spec.capability, line.input, spec.skill, spec.tier, spec.caller,
                          self.idempotency_key(line), spec.deadline_s)

    # -- records ------------------------------------------------------------------------------------

    def _ok_record(self, line: InputLine, result: JobResult) -> dict[str, Any]:
        if self.spec.input.format == "jsonl":
            return {"id": line.id, "line": line.number, "status": result.status.value, "output": result.output,
                    "job_id": result.job_id, "provider": result.provider, "model": result.model,
                    "usage": result.usage, "cost_usd": result.cost_usd, "skill": result.skill,
                    "skill_hash": result.skill_hash}
        row: dict[str, Any] = {**line.record, self.row_column: line.number}
        names = self._out_names
        if self.output_fields:
            out = result.output if isinstance(result.output, dict) else {}
            for p in self.output_fields:
                row[names[f"output.{p}"]] = _cell(out.get(p))
        else:
            row[names["output"]] = _cell(result.output)
        row[names["job_id"]] = result.job_id
        row[names["model"]] = result.model or ""
        row[names["cost_usd"]] = f"{result.cost_usd:.8f}"
        return row

    def _error_record(self, line: InputLine, status: str, reason: str, field_name: str = "",
                      job_id: str = "") -> dict[str, Any]:
        if self.spec.input.format == "jsonl":
            return {"id": line.id, "line": line.number, "status": status, "field": field_name or None,
                    "reason": reason, "job_id": job_id or None}
        names = self._err_names
        row = {**(line.record or {}), self.row_column: line.number}
        row.update({names["status"]: status, names["reason"]: reason, names["field"]: field_name,
                    names["job_id"]: job_id})
        return row

    # -- dry run ------------------------------------------------------------------------------------

    @property
    def deadline_s(self) -> float:
        """Each job's deadline: ``--deadline-s``, else the tier's default."""
        if self.spec.deadline_s is not None:
            return self.spec.deadline_s
        return self.client.config.tiers[self.tier].default_deadline_s

    def time_left_at_claim_s(self) -> float:
        """What the vendor-batch rule sees of a job's deadline: the job path measures it when a worker claims
        the attempt, some time after the submission, so always less than the whole deadline (here: a second
        less), and takes off the longest wait for its batch (:func:`left_when_batched_s`)."""
        return left_when_batched_s(self.client.config, self.deadline_s - CLAIMED_AFTER_S)

    def why_realtime(self) -> str:
        """Why no job of this run would go through a vendor batch (the rule: toolbag.routing.vendorbatch)."""
        config = self.client.config
        policy = config.route(self.capability, self.tier).policy
        if self.tier != "batch":
            return f"only the batch tier uses vendor batches (this run is {self.tier})"
        if not policy.vendor_batch:
            return f"route {self.capability}/{self.tier} has vendor_batch: false"
        if self.time_left_at_claim_s() < policy.vendor_batch_bound_s:
            return (f"the deadline ({self.deadline_s:g}s) leaves less than the route's vendor_batch_bound_s "
                    f"({policy.vendor_batch_bound_s:g}s) once a worker claims the job (give a longer --deadline-s, "
                    f"e.g. {2 * policy.vendor_batch_bound_s:g})")
        return "their models have no batch API (features.batch)"

    def dry_run(self) -> DryRun:
        """Count and price the jobs a run would submit now, without submitting anything."""
        total = self._scan()
        fmt = self.spec.input.format
        try:
            done = OutputFile(self.spec.output, fmt, self.out_columns, self.id_column).peek()
            done |= OutputFile(self.spec.errors_path, fmt, self.err_columns, self.id_column).peek()
        except (BulkFileError, OSError) as e:
            raise BatchError(str(e)) from None
        invalid: list[tuple[InputLine, str, str]] = []
        estimate = Estimate(output_is_cap=self.spec.output_tokens is None)
        done_before = 0
        todo: list[InputLine] = []

        config = self.client.config
        policy = config.route(self.capability, self.tier).policy
        time_left_s = self.time_left_at_claim_s()

        def price(batch: list[InputLine]) -> None:
            # Nothing is submitted, so a refused line is not counted in toolbag_jobs_rejected_total.
            prepared = self.client.prepare_each([self._request(x) for x in batch], count_rejected=False)
            for line, job in zip(batch, prepared, strict=True):
                if isinstance(job, SubmitError):
                    invalid.append((line, job.field, job.reason))
                    continue
                model = job.fields["model"]
                request = request_for(self.client.config, self.skill, self.capability, model, line.input)
                batched = vendor_batch_eligible(config.models[model], policy, self.tier, time_left_s)
                estimate.add(config, model, request, self.spec.output_tokens, batched)

        for line in self._lines():
            if line.key in done:
                done_before += 1
            elif line.problem is not None:
                invalid.append((line, *line.problem))
            else:
                todo.append(line)
                if len(todo) >= 500:
                    price(todo)
                    todo = []
        price(todo)
        first = self.client.config.route(self.capability, self.tier).candidates[0]
        reason = self.why_realtime() if estimate.jobs and not estimate.vendor_batch_jobs else ""
        return DryRun(total, done_before, invalid, estimate, first, reason)

    # -- run ----------------------------------------------------------------------------------------

    def run(self, on_step: Callable[[Counts], None] | None = None) -> Counts:
        """Process every record not yet in the outputs; returns the counts. Safe to interrupt and rerun."""
        counts = Counts(total=self._scan())
        out, err = self._open_outputs()
        done = out.done | err.done
        early: list[dict[str, Any]] = []

        def items() -> Iterator[tuple[InputLine, JobRequest]]:
            for line in self._lines():
                if line.key in done:
                    counts.done_before += 1
                    counts.errors_before += line.key in err.done
                elif line.problem is not None:
                    early.append(self._error_record(line, "invalid", line.problem[1], line.problem[0]))
                else:
                    yield line, self._request(line)

        pipeline: Pipeline[InputLine] = Pipeline(self.client, self.inbox_name(),
                                                 max_in_flight=self.spec.max_in_flight,
                                                 chunk_size=self.spec.chunk_size)
        try:
            for events in pipeline.run(items()):
                oks: list[dict[str, Any]] = []
                errors: list[dict[str, Any]] = early[:]
                early.clear()
                for event in events:
                    if isinstance(event, Submitted):
                        counts.submitted += 1
                        counts.reused += 0 if event.created else 1
                    elif isinstance(event, Rejected):
                        errors.append(self._error_record(event.tag, "invalid", event.error.reason, event.error.field))
                    elif isinstance(event, Finished):
                        result = event.result
                        counts.cost_usd += result.cost_usd
                        if result.ok:
                            oks.append(self._ok_record(event.tag, result))
                        else:
                            errors.append(self._error_record(event.tag, result.status.value,
                                                             result.error or result.status.value,
                                                             job_id=result.job_id))
                out.write(oks)
                err.write(errors)
                counts.ok += len(oks)
                counts.errors += len(errors)
                if on_step is not None:
                    on_step(counts)
            err.write(early)
            counts.errors += len(early)
            early.clear()
            if on_step is not None:
                on_step(counts)
            if not pipeline.pending:
                pipeline.forget_inbox()
        finally:
            out.close()
            err.close()
        return counts

