"""Bulk input and output files: JSONL lines or CSV rows in, append-only results and errors out.

Every input record gets an **id**: its ``id`` field / column (or the one named), else its position — the
line number of a JSONL file, the spreadsheet row number of a CSV file (the header is row 1). Outputs are
written append-only, one step at a time in a single ``write``, so after a crash every complete record
in them is a finished line; :func:`open_output` reads the ids already there and cuts off a torn tail.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeGuard

from toolbag.errors import ToolbagError
from toolbag.skills.canonical import canonical_bytes, canonical_json

Format = Literal["jsonl", "csv"]
FORMATS: tuple[str, ...] = ("jsonl", "csv")
DEFAULT_ID_FIELD = "id"
ROW_COLUMN = "row"
_BOM = "\ufeff"


class BulkFileError(ToolbagError):
    """A problem with an input or output file, phrased for the person running the batch."""


def is_format(name: str) -> TypeGuard[Format]:
    return name in FORMATS


def guess_format(path: Path) -> Format:
    """``csv`` for a ``.csv`` file name, else ``jsonl``."""
    return "csv" if path.suffix.lower() == ".csv" else "jsonl"


@dataclass(frozen=True)
class InputSpec:
    """How to read an input file.

    ``id_field`` names the id field (JSONL) or column (CSV); ``None`` means ``id`` when present, else the
    position. ``input_field`` takes the job input from one field of each JSONL object instead of the
    whole object. ``keep_id`` leaves the id field in the job input (it is removed by default).
    """

    path: Path
    format: Format
    id_field: str | None = None
    input_field: str | None = None
    keep_id: bool = False


@dataclass(frozen=True)
class InputLine:
    """One input record. ``problem`` is ``(field, reason)`` when it cannot become a job."""

    number: int
    id: str | int
    key: str
    record: Any
    input: Any
    digest: str
    problem: tuple[str, str] | None = None


def _digest(value: Any) -> str:
    return hashlib.sha256(canonical_bytes(value)).hexdigest()


def id_key(fmt: Format, value: str | int) -> str:
    """The comparable form of an id: JSON for JSONL (``1`` and ``"1"`` differ), the text for CSV."""
    return canonical_json(value) if fmt == "jsonl" else str(value)


# -- reading inputs ---------------------------------------------------------------------------------


def csv_header(path: Path) -> list[str]:
    """The header row of a CSV file (``BulkFileError`` when it has none)."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        header = next(csv.reader(f), None)
    if not header:
        raise BulkFileError(f"{path}: the CSV file is empty (the first row must name the columns)")
    if len(set(header)) != len(header):
        dupes = sorted({c for c in header if header.count(c) > 1})
        raise BulkFileError(f"{path}: column names must be unique; repeated: {', '.join(dupes)}")
    return header


def csv_id_column(path: Path, header: Sequence[str], id_field: str | None) -> str | None:
    """The id column: ``id_field``, else ``id`` when the header has it, else None (ids are row numbers)."""
    column = id_field or (DEFAULT_ID_FIELD if DEFAULT_ID_FIELD in header else None)
    if column is not None and column not in header:
        raise BulkFileError(f"{path}: no column {column!r} (columns: {', '.join(header)})")
    return column


def read_input(spec: InputSpec, coerce: Callable[[dict[str, str]], Any] | None = None) -> Iterator[InputLine]:
    """Every record of the input file, in order, lazily. ``coerce`` turns a CSV row into a job input."""
    try:
        if spec.format == "jsonl":
            yield from _read_jsonl(spec)
        else:
            yield from _read_csv(spec, coerce)
    except OSError as err:
        raise BulkFileError(f"{spec.path}: cannot read ({err.strerror})") from None


def _read_jsonl(spec: InputSpec) -> Iterator[InputLine]:
    id_field = spec.id_field or DEFAULT_ID_FIELD
    with spec.path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            text = raw.strip()
            if not text:
                continue
            try:
                value = json.loads(text)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                reason = f"not valid JSON ({getattr(err, 'msg', err)})"
                yield InputLine(number, number, id_key("jsonl", number), None, None, "", ("line", reason))
                continue
            yield _jsonl_line(spec, id_field, number, value)


def _jsonl_line(spec: InputSpec, id_field: str, number: int, value: Any) -> InputLine:
    digest = _digest(value)
    has_id = isinstance(value, dict) and id_field in value
    line_id: str | int = number
    problem: tuple[str, str] | None = None
    if has_id:
        raw_id = value[id_field]
        if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or raw_id == "":
            problem = (id_field, "an id must be a non-empty string or an integer")
        else:
            line_id = raw_id
    elif spec.id_field is not None:
        problem = (spec.id_field, "missing (--id-field names it, so every line needs one)")
    job_input: Any = value
    if spec.input_field is not None:
        if not isinstance(value, dict) or spec.input_field not in value:
            problem = problem or (spec.input_field, "missing (--input-field names it)")
            job_input = None
        else:
            job_input = value[spec.input_field]
    elif has_id and not spec.keep_id:
        job_input = {k: v for k, v in value.items() if k != id_field}
    return InputLine(number, line_id, id_key("jsonl", line_id), value, job_input, digest, problem)


def _read_csv(spec: InputSpec, coerce: Callable[[dict[str, str]], Any] | None) -> Iterator[InputLine]:
    header = csv_header(spec.path)
    id_column = csv_id_column(spec.path, header, spec.id_field)
    with spec.path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        next(reader, None)
        for index, cells in enumerate(reader):
            number = index + 2  # the spreadsheet row: the header is row 1
            if not any(c.strip() for c in cells):
                continue
            problem: tuple[str, str] | None = None
            if len(cells) > len(header):
                problem = ("row", f"{len(cells)} cells but only {len(header)} columns")
            row = {name: (cells[i] if i < len(cells) else "") for i, name in enumerate(header)}
            row_id: str | int = number
            if id_column is not None:
                if row[id_column].strip():
                    row_id = row[id_column]
                else:
                    problem = problem or (id_column, "empty id")
            job_row = row if spec.keep_id or id_column is None else {k: v for k, v in row.items() if k != id_column}
            job_input = coerce(job_row) if coerce is not None else job_row
            yield InputLine(number, row_id, id_key("csv", row_id), row, job_input, _digest(row), problem)


def coerce_for_schema(schema: Any) -> Callable[[dict[str, str]], Any]:
    """A CSV row → job input for a skill's input schema: columns the schema does not name are dropped,
    empty cells are left out (so defaults and ``required`` apply), and cells of non-string properties are
    read as JSON (``3``, ``true``, ``["a", "b"]``); a cell that is not JSON stays text for the validator."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return lambda row: {k: v for k, v in row.items() if v != ""}
    typed: dict[str, bool] = {}
    for name, sub in properties.items():
        kind = sub.get("type") if isinstance(sub, dict) else None
        kinds = set(kind) if isinstance(kind, list) else {kind} if kind else set()
        typed[name] = bool(kinds) and "string" not in kinds
    closed = isinstance(schema, dict) and schema.get("additionalProperties") is False

    def coerce(row: dict[str, str]) -> Any:
        out: dict[str, Any] = {}
        for name, cell in row.items():
            if cell == "" or (closed and name not in properties):
                continue
            if typed.get(name):
                try:
                    out[name] = json.loads(cell)
                    continue
                except json.JSONDecodeError:
                    pass
            out[name] = cell
        return out

    return coerce


def scan_ids(lines: Iterator[InputLine]) -> int:
    """Count the records and check their ids are unique; ``BulkFileError`` names the first repeat."""
    seen: dict[str, int] = {}
    count = 0
    for line in lines:
        count += 1
        first = seen.setdefault(line.key, line.number)
        if first != line.number:
            raise BulkFileError(
                f"ids must be unique: id {line.id!r} is on records {first} and {line.number} "
                "(name the id field with --id-field, or remove the repeat)"
            )
    return count


# -- writing outputs --------------------------------------------------------------------------------


class OutputFile:
    """An append-only JSONL or CSV file of finished records, locked against a second writer."""

    def __init__(self, path: Path, fmt: Format, columns: Sequence[str] = (), id_column: str = "id") -> None:
        self.path = path
        self.format = fmt
        self.columns = list(columns)
        self.id_column = id_column
        self.done: set[str] = set()
        self._fd = -1

    def open(self) -> OutputFile:
        """Lock the file, read the ids already in it, cut off a torn last record, write a CSV header."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BulkFileError(f"{self.path}: another batch run is writing this file") from None
        self._fd = fd
        try:
            good_end = self._read_done()
        except BulkFileError:
            self.close()
            raise
        size = os.fstat(fd).st_size
        if good_end < size:
            os.ftruncate(fd, good_end)
        os.lseek(fd, 0, os.SEEK_END)
        if good_end == 0 and self.format == "csv":
            self._write_bytes(self._csv_bytes([self.columns], bom=True))
        return self

    def peek(self) -> set[str]:
        """The ids already written, without locking, repairing or creating the file (for a dry run)."""
        if not self.path.exists():
            return set()
        self._fd = os.open(self.path, os.O_RDONLY)
        try:
            self._read_done()
        finally:
            self.close()
        return self.done

    def _read_done(self) -> int:
        """Collect the ids of complete records; return the offset just past the last complete one."""
        with open(self._fd, "rb", closefd=False) as f:
            f.seek(0)
            return self._read_jsonl(f) if self.format == "jsonl" else self._read_csv(f)

    def _read_jsonl(self, f: io.BufferedReader) -> int:
        good_end = offset = 0
        for raw in f:
            offset += len(raw)
            if not raw.endswith(b"\n"):
                break  # a torn last line: written partly when the run died
            if not raw.strip():
                good_end = offset
                continue
            try:
                record = json.loads(raw)
                self.done.add(id_key("jsonl", record["id"]))
            except (ValueError, KeyError, TypeError):
                raise BulkFileError(
                    f"{self.path}: line {raw[:60]!r}… is not a result this command wrote; use a new output file"
                ) from None
            good_end = offset
        return good_end

    def _read_csv(self, f: io.BufferedReader) -> int:
        consumed = [0]
        ended_line = [True]

        def lines() -> Iterator[str]:
            for raw in f:
                consumed[0] += len(raw)
                ended_line[0] = raw.endswith(b"\n")
                yield raw.decode("utf-8", errors="replace")

        reader = csv.reader(lines(), strict=True)
        good_end = 0
        try:
            header = next(reader, None)
            if header is None:
                return 0
            if header and header[0].startswith(_BOM):
                header[0] = header[0][len(_BOM):]
            if not ended_line[0]:
                return 0
            if header != self.columns:
                raise BulkFileError(
                    f"{self.path}: its columns ({', '.join(header)}) differ from what this run writes "
                    f"({', '.join(self.columns)}); use a new output file"
                )
            good_end = consumed[0]
            at = header.index(self.id_column)
            for cells in reader:
                if not ended_line[0] or len(cells) != len(header):
                    break
                self.done.add(cells[at])
                good_end = consumed[0]
        except csv.Error:
            pass  # a torn last record (an open quote at the end of the file)
        return good_end

    def _csv_bytes(self, rows: Sequence[Sequence[Any]], bom: bool = False) -> bytes:
        buf = io.StringIO()
        if bom:
            buf.write(_BOM)
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerows(rows)
        return buf.getvalue().encode("utf-8")

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        """Append ``records`` in one write (JSON objects, or CSV rows keyed by column)."""
        if not records:
            return
        if self.format == "jsonl":
            data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
        else:
            data = self._csv_bytes([[r.get(c, "") for c in self.columns] for r in records])
        self._write_bytes(data)

    def _write_bytes(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing releases the lock
            self._fd = -1
