"""Bulk runs from the browser: an uploaded CSV or JSONL file through the same engine as ``toolbag batch run``.

Each run is a folder under the console's runs folder: the uploaded input, ``run.json`` (skill, format, id
column, who), and the engine's own outputs (``results.<ext>`` and ``results.errors.<ext>``). A run is started
in a thread of the console process; stop ends it between steps and a start again resumes it with the
engine's guarantees (append-only outputs, idempotency keys from the file, the line and the skill's version:
nothing is paid twice). Runs belong to the replica that holds their folder.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from toolbag.bulk.files import BulkFileError, InputSpec
from toolbag.bulk.runner import BatchError, BatchRun, BatchSpec, Counts, DryRun
from toolbag.client import Client
from toolbag.errors import ToolbagError

RUNS_DIR_ENV = "TOOLBAG_CONSOLE_RUNS_DIR"
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
_RUN_ID = re.compile(r"^[0-9a-f]{16}$")
_COLUMN = re.compile(r"^[^\x00-\x1f]{1,128}$")


class BulkRunError(ToolbagError):
    """A bulk run that cannot be made or started; ``field`` names the form field at fault."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


@dataclass
class RunMeta:
    id: str
    skill: str
    format: str  # csv | jsonl
    filename: str
    id_column: str
    created_by: str
    created_ms: int
    state: str = "new"  # new | running | stopping | stopped | done | failed
    error: str = ""
    counts: dict[str, Any] = field(default_factory=dict)


def default_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV) or Path.home() / ".toolbag" / "console-runs")


class BulkRuns:
    """The console's bulk runs: made from uploads, dry-run, started, stopped, resumed and read back."""

    def __init__(self, client: Client, root: Path | None = None) -> None:
        self.client = client
        self._root = root
        self._lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}
        self._stop: set[str] = set()

    @property
    def root(self) -> Path:
        return self._root or default_runs_dir()

    # -- files ------------------------------------------------------------------------------------------

    def folder(self, run_id: str) -> Path:
        if not _RUN_ID.match(run_id) or not (self.root / run_id / "run.json").is_file():
            raise BulkRunError("run", f"no bulk run {run_id!r}")
        return self.root / run_id

    def meta(self, run_id: str) -> RunMeta:
        data = json.loads((self.folder(run_id) / "run.json").read_text(encoding="utf-8"))
        return RunMeta(**data)

    def _save(self, meta: RunMeta) -> None:
        folder = self.root / meta.id
        partial = folder / "run.json.partial"
        partial.write_text(json.dumps(asdict(meta), sort_keys=True), encoding="utf-8")
        os.replace(partial, folder / "run.json")

    def list(self) -> list[RunMeta]:
        if not self.root.is_dir():
            return []
        out = []
        for folder in self.root.iterdir():
            if _RUN_ID.match(folder.name) and (folder / "run.json").is_file():
                out.append(self.meta(folder.name))
        return sorted(out, key=lambda m: m.created_ms, reverse=True)

    def input_path(self, meta: RunMeta) -> Path:
        return self.root / meta.id / f"input.{meta.format}"

    def output_path(self, meta: RunMeta) -> Path:
        return self.root / meta.id / f"results.{meta.format}"

    def errors_path(self, meta: RunMeta) -> Path:
        return self.root / meta.id / f"results.errors.{meta.format}"

    # -- making one --------------------------------------------------------------------------------------

    def create(self, *, filename: str, data: bytes, skill: str, id_column: str, who: str) -> RunMeta:
        """A new run from an uploaded file; the file is checked by the engine (a dry run) before it is kept."""
        lowered = filename.lower()
        fmt = "csv" if lowered.endswith(".csv") else "jsonl" if lowered.endswith((".jsonl", ".ndjson")) else ""
        if not fmt:
            raise BulkRunError("file", "upload a .csv or a .jsonl file")
        if not data:
            raise BulkRunError("file", "the file is empty")
        if len(data) > MAX_UPLOAD_BYTES:
            raise BulkRunError("file", f"the file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
        if not skill:
            raise BulkRunError("skill", "pick a skill")
        if id_column and not _COLUMN.match(id_column):
            raise BulkRunError("id_column", "1-128 characters without control characters")
        meta = RunMeta(uuid.uuid4().hex[:16], skill, fmt, Path(filename).name[:200], id_column, who,
                       int(time.time() * 1000))
        folder = self.root / meta.id
        try:
            folder.mkdir(parents=True)
            (folder / f"input.{fmt}").write_bytes(data)
        except OSError as err:
            raise BulkRunError("file", f"cannot keep the upload on this server ({err.strerror or err}); set "
                                       f"{RUNS_DIR_ENV} to a writable folder") from None
        try:
            self._batch(meta)
        except BulkRunError:
            for child in folder.iterdir():
                child.unlink()
            folder.rmdir()
            raise
        self._save(meta)
        return meta

    def _batch(self, meta: RunMeta) -> BatchRun:
        spec = BatchSpec(
            input=InputSpec(self.input_path(meta), meta.format,  # type: ignore[arg-type]  # csv | jsonl, checked
                            id_field=meta.id_column or None),
            output=self.output_path(meta), errors=self.errors_path(meta), skill=meta.skill, tier="batch",
            caller=f"console-{meta.created_by}"[:128], max_in_flight=200, chunk_size=100,
        )
        try:
            return BatchRun(self.client, spec)
        except (BatchError, BulkFileError, UnicodeDecodeError) as err:
            raise self._refusal(meta, err) from None

    def _refusal(self, meta: RunMeta, err: Exception) -> BulkRunError:
        """The engine's message for the form: the field it concerns, the file named as it was uploaded."""
        if isinstance(err, UnicodeDecodeError):
            return BulkRunError("file", "the file is not UTF-8 text")
        text = str(err).replace(str(self.input_path(meta)), meta.filename)
        if text.startswith("--skill: "):
            return BulkRunError("skill", text.removeprefix("--skill: "))
        if text.startswith("--id-column: ") or "no column" in text:
            return BulkRunError("id_column", text.removeprefix("--id-column: "))
        return BulkRunError("file", text)

    def dry_run(self, run_id: str) -> DryRun:
        meta = self.meta(run_id)
        try:
            return self._batch(meta).dry_run()
        except (BatchError, BulkFileError, UnicodeDecodeError) as err:
            raise self._refusal(meta, err) from None

    # -- running -----------------------------------------------------------------------------------------

    def running(self, run_id: str) -> bool:
        thread = self._threads.get(run_id)
        return thread is not None and thread.is_alive()

    def start(self, run_id: str) -> None:
        """Start (or resume) the run in the background; records already in its outputs are skipped."""
        meta = self.meta(run_id)
        with self._lock:
            if self.running(run_id):
                raise BulkRunError("run", "the run is already running")
            batch = self._batch(meta)
            self._stop.discard(run_id)
            meta.state, meta.error = "running", ""
            self._save(meta)
            thread = threading.Thread(target=self._run, args=(batch, meta), name=f"toolbag-console-bulk-{run_id}",
                                      daemon=True)
            self._threads[run_id] = thread
            thread.start()

    def stop(self, run_id: str) -> None:
        meta = self.meta(run_id)
        if not self.running(run_id):
            raise BulkRunError("run", "the run is not running")
        self._stop.add(run_id)
        meta.state = "stopping"
        self._save(meta)

    def _run(self, batch: BatchRun, meta: RunMeta) -> None:
        last_saved = 0.0

        def step(counts: Counts) -> None:
            nonlocal last_saved
            meta.counts = counts.to_dict()
            if time.monotonic() - last_saved > 0.5:
                self._save(meta)
                last_saved = time.monotonic()
            if meta.id in self._stop:
                raise _Stopped

        try:
            counts = batch.run(on_step=step)
            meta.counts, meta.state = counts.to_dict(), "done"
        except _Stopped:
            meta.state = "stopped"
        except Exception as err:  # the run ends; the page says why and a start resumes it
            meta.state, meta.error = "failed", f"{type(err).__name__}: {err}"[:500]
        self._save(meta)

    def wait(self, run_id: str, timeout_s: float) -> None:
        """Wait for the run's thread to end (tests)."""
        thread = self._threads.get(run_id)
        if thread is not None:
            thread.join(timeout_s)


class _Stopped(Exception):
    """Raised from the progress callback to end a run between steps."""
