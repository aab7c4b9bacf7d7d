"""Checks that an export is complete and one consistent snapshot of the server's database.

Used by tests/server/test_export_under_load.py and bench/bench_export_load.py. Every export names the snapshot it
was read from (``last_event``: the number of the last event it could see; in ``schema.json`` for a folder, in the
``X-Export-Last-Event`` header over HTTP). Events are numbered in commit order and, without withdrawals, never
removed, so the rows an export must hold can be counted again afterwards from the live database.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from studyapp.server import export
from studyapp.server.pg_storage import PgStorage
from studyapp.server.storage import Storage
from studyapp.server.validation import RECORD_KEYS


def read_rows(path: Path, fmt: str) -> list[dict[str, Any]]:
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    if fmt == "csv":
        with path.open(encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))
    return pq.read_table(path).to_pylist()


def parse_body(body: bytes, fmt: str) -> list[dict[str, Any]]:
    text = body.decode("utf-8")
    if fmt == "jsonl":
        return [json.loads(line) for line in text.splitlines()]
    return list(csv.DictReader(io.StringIO(text, newline="")))


def rows_as_of(storage: Storage | PgStorage, rt: export.RecordType, last_event: int) -> int:
    """How many rows of ``rt`` an export of the snapshot whose last event is ``last_event`` must hold."""
    with storage.snapshot() as snapshot:
        if rt.kind is None:
            return snapshot.count_participant_records()  # no one enrolls or withdraws while the checks run
        n = 0
        for kind in rt.kinds:
            if kind in RECORD_KEYS:
                sql = ("SELECT count(*) FROM (SELECT 1 FROM events WHERE kind = ? AND n <= ? "
                       "GROUP BY participant_id, record_key) AS latest")
            else:
                sql = "SELECT count(*) FROM events WHERE kind = ? AND n <= ?"
            n += snapshot.conn.execute(sql, [kind, last_event]).fetchone()[0]
        return n


def labels_have_their_attributes(attributes: list[dict[str, Any]], labels: list[dict[str, Any]]) -> list[str]:
    """Labelled attribute ids missing from the same export's attributes (the uploads send both in one batch)."""
    known = {(a["participant_id"], a["attribute_id"]) for a in attributes}
    return sorted({lab["attribute_id"] for lab in labels if (lab["participant_id"], lab["attribute_id"]) not in known})


def check_folder(out: Path, fmt: str, storage: Storage | PgStorage) -> dict[str, int]:
    """Assert the export folder ``out`` is complete and one snapshot; returns rows per file."""
    schema = json.loads((out / "schema.json").read_text(encoding="utf-8"))
    assert schema["format"] == fmt
    last_event = schema["snapshot"]["last_event"]
    files = {entry["record_type"]: entry for entry in schema["files"]}
    assert list(files) == list(export.RECORD_TYPE_NAMES)
    counts: dict[str, int] = {}
    rows: dict[str, list[dict[str, Any]]] = {}
    for rt in export.RECORD_TYPES:
        path = out / files[rt.name]["file"]
        rows[rt.name] = read_rows(path, fmt)
        counts[rt.name] = len(rows[rt.name])
        assert counts[rt.name] == files[rt.name]["rows"], f"{path.name}: the file and schema.json differ"
        assert counts[rt.name] == rows_as_of(storage, rt, last_event), \
            f"{path.name}: not the rows of the snapshot at event {last_event}"
    missing = labels_have_their_attributes(rows["attributes"], rows["attribute_labels"])
    assert not missing, f"labels of attributes the same export lacks: {missing[:5]}"
    return counts


def check_http(headers: Any, body: bytes, fmt: str, rt: export.RecordType, storage: Storage | PgStorage) -> int:
    """Assert one HTTP export is complete and the rows of the snapshot it names; returns its rows."""
    rows = parse_body(body, fmt)
    assert len(rows) == int(headers["x-export-rows"]), f"{rt.name}: the body and X-Export-Rows differ"
    assert len(rows) == rows_as_of(storage, rt, int(headers["x-export-last-event"])), \
        f"{rt.name}: not the rows of the snapshot it names"
    return len(rows)
