"""Bulk input and output files: ids, parsing problems, CSV typing, torn tails, locking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolbag.bulk.files import (
    BulkFileError,
    InputSpec,
    OutputFile,
    coerce_for_schema,
    read_input,
    scan_ids,
)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_ids_come_from_the_id_field_else_the_line_number(tmp_path: Path) -> None:
    src = write(tmp_path / "in.jsonl", '{"id": "a", "text": "x"}\n\n{"text": "y"}\n{"id": 7, "text": "z"}\n')
    lines = list(read_input(InputSpec(src, "jsonl")))
    assert [(x.number, x.id) for x in lines] == [(1, "a"), (3, 3), (4, 7)]
    assert lines[0].input == {"text": "x"}, "the id field is not part of the job input"
    assert lines[1].input == {"text": "y"}
    assert all(x.problem is None for x in lines)
    kept = list(read_input(InputSpec(src, "jsonl", keep_id=True)))
    assert kept[0].input == {"id": "a", "text": "x"}


def test_jsonl_problems_name_the_field_and_do_not_stop_reading(tmp_path: Path) -> None:
    src = write(tmp_path / "in.jsonl", '{"key": "a", "text": "x"}\n{not json\n{"text": "no key"}\n{"key": true}\n')
    lines = list(read_input(InputSpec(src, "jsonl", id_field="key")))
    assert len(lines) == 4
    assert lines[0].problem is None and lines[0].id == "a"
    assert lines[1].problem is not None and lines[1].problem[0] == "line" and "not valid JSON" in lines[1].problem[1]
    assert lines[2].problem == ("key", "missing (--id-field names it, so every line needs one)")
    assert lines[3].problem is not None and lines[3].problem[0] == "key"


def test_jsonl_input_field_and_content_digest(tmp_path: Path) -> None:
    src = write(tmp_path / "in.jsonl", '{"id": 1, "input": {"text": "hi"}, "note": "n"}\n{"id": 2}\n')
    lines = list(read_input(InputSpec(src, "jsonl", input_field="input")))
    assert lines[0].input == {"text": "hi"}
    assert lines[1].problem == ("input", "missing (--input-field names it)")
    edited = write(tmp_path / "edited.jsonl", '{"id": 1, "input": {"text": "hi!"}, "note": "n"}\n')
    same = write(tmp_path / "same.jsonl", '{"note": "n", "input": {"text": "hi"},   "id": 1}\n')
    digest = lines[0].digest
    assert next(read_input(InputSpec(edited, "jsonl"))).digest != digest, "an edited line gets a new digest"
    assert next(read_input(InputSpec(same, "jsonl"))).digest == digest, "key order and spacing do not matter"


def test_csv_rows_are_numbered_like_a_spreadsheet_and_keep_the_id_column(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes("\ufeffid,text,notes\nr1,\"hello, world\",x\n\nr2,\"two\nlines\",\n".encode())
    lines = list(read_input(InputSpec(src, "csv")))
    assert [(x.number, x.id) for x in lines] == [(2, "r1"), (4, "r2")]
    assert lines[0].input == {"text": "hello, world", "notes": "x"}
    assert lines[1].input == {"text": "two\nlines", "notes": ""}
    assert lines[0].record == {"id": "r1", "text": "hello, world", "notes": "x"}


def test_csv_without_id_column_uses_the_row_number(tmp_path: Path) -> None:
    src = write(tmp_path / "in.csv", "text\na\nb,extra\n")
    lines = list(read_input(InputSpec(src, "csv")))
    assert [x.id for x in lines] == [2, 3]
    assert lines[1].problem == ("row", "2 cells but only 1 columns")
    with pytest.raises(BulkFileError, match="no column 'key'"):
        list(read_input(InputSpec(src, "csv", id_field="key")))


def test_csv_cells_are_typed_by_the_skill_input_schema() -> None:
    schema = {
        "type": "object",
        "properties": {"text": {"type": "string"}, "labels": {"type": "array"}, "max_words": {"type": "integer"},
                       "flag": {"type": ["boolean", "null"]}},
        "additionalProperties": False,
    }
    coerce = coerce_for_schema(schema)
    row = {"text": "42", "labels": '["a", "b"]', "max_words": "30", "flag": "", "notes": "mine"}
    assert coerce(row) == {"text": "42", "labels": ["a", "b"], "max_words": 30}
    assert coerce({"text": "t", "max_words": "lots"}) == {"text": "t", "max_words": "lots"}, \
        "a cell that is not JSON stays text, for the validator to report"


def test_scan_ids_rejects_a_repeated_id(tmp_path: Path) -> None:
    src = write(tmp_path / "in.jsonl", '{"id": "a"}\n{"id": "b"}\n{"id": "a"}\n')
    with pytest.raises(BulkFileError, match="id 'a' is on records 1 and 3"):
        scan_ids(read_input(InputSpec(src, "jsonl")))
    ok = write(tmp_path / "ok.jsonl", '{"id": "1"}\n{"id": 1}\n')
    assert scan_ids(read_input(InputSpec(ok, "jsonl"))) == 2, "the string '1' and the number 1 are different ids"


def test_jsonl_output_reads_done_ids_and_cuts_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"id": "a", "output": 1}\n{"id": 2, "output": 2}\n{"id": "c", "outp')
    out = OutputFile(path, "jsonl").open()
    assert out.done == {'"a"', "2"}
    out.write([{"id": "c", "output": 3}])
    out.close()
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["a", 2, "c"]


def test_jsonl_output_refuses_a_foreign_file(tmp_path: Path) -> None:
    path = write(tmp_path / "out.jsonl", "hello\n")
    with pytest.raises(BulkFileError, match="not a result this command wrote"):
        OutputFile(path, "jsonl").open()


def test_csv_output_header_once_and_torn_records_cut(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    cols = ["id", "text", "output"]
    out = OutputFile(path, "csv", cols, "id").open()
    out.write([{"id": "a", "text": "multi\nline", "output": "x"}])
    out.close()
    with path.open("ab") as f:
        f.write(b'b,"torn\nrecord')  # the run died in the middle of a quoted cell
    again = OutputFile(path, "csv", cols, "id").open()
    assert again.done == {"a"}
    again.write([{"id": "b", "text": "t", "output": "y"}])
    again.close()
    text = path.read_text(encoding="utf-8-sig")
    assert text == 'id,text,output\na,"multi\nline",x\nb,t,y\n'
    with pytest.raises(BulkFileError, match="differ from what this run writes"):
        OutputFile(path, "csv", ["id", "other"], "id").open()


def test_an_output_file_has_one_writer(tmp_path: Path) -> None:
    first = OutputFile(tmp_path / "out.jsonl", "jsonl").open()
    try:
        with pytest.raises(BulkFileError, match="another batch run is writing"):
            OutputFile(tmp_path / "out.jsonl", "jsonl").open()
    finally:
        first.close()
    OutputFile(tmp_path / "out.jsonl", "jsonl").open().close()
