"""examples/: the protocol checks, and the small export (tests/support/example_export.py) still shows every file
and column of the export contract, with rows, so it cannot fall behind the code unnoticed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from studyapp.server.export import RECORD_TYPES, column_names
from studyapp.study.protocol import load_protocol

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_example_protocol_is_valid() -> None:
    assert load_protocol(EXAMPLES / "study.toml").id


@pytest.mark.parametrize("rt", RECORD_TYPES, ids=lambda rt: rt.name)
def test_the_example_export_has_every_file_with_its_columns_and_rows(rt) -> None:
    path = EXAMPLES / "export" / f"{rt.name}.csv"
    assert path.exists(), f"{path} is missing: run python -m tests.support.example_export examples/export"
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == column_names(rt), (
        f"{path.name} has other columns than the export: run python -m tests.support.example_export examples/export")
    assert len(rows) > 1, f"{path.name} has no rows"


def test_the_example_export_has_no_other_files() -> None:
    assert {p.stem for p in (EXAMPLES / "export").glob("*.csv")} == {rt.name for rt in RECORD_TYPES}


def test_the_example_export_has_its_schema_json_describing_each_file() -> None:
    path = EXAMPLES / "export" / "schema.json"
    assert path.exists(), f"{path} is missing: run python -m tests.support.example_export examples/export"
    schema = json.loads(path.read_text(encoding="utf-8"))
    files = {f["record_type"]: f for f in schema["files"]}
    assert list(files) == [rt.name for rt in RECORD_TYPES]
    for rt in RECORD_TYPES:
        with (EXAMPLES / "export" / files[rt.name]["file"]).open(encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
        assert [c["name"] for c in files[rt.name]["columns"]] == rows[0] == column_names(rt)
        assert files[rt.name]["rows"] == len(rows) - 1
