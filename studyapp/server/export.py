"""The export contract (docs/ARCHITECTURE.md section 8): one file per record type, as JSONL, CSV or Parquet.

Columns follow the contract's order (study_id, participant_id, then the record's fields as docs/ARCHITECTURE.md
section 8 lists them; tests/project/test_export_docs.py keeps the two equal). Rows are streamed, so a million
events export in bounded memory; Parquet is written in row groups with an explicit schema, so an empty file
still has the right columns and types.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from studyapp.server.storage import Storage

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS = ("jsonl", "csv", "parquet")
PARQUET_ROW_GROUP = 50_000

# Column types by name; pyarrow is imported only when a Parquet file is written, so the serving
# process does not carry it. Short names keep the column tables below readable.
S, F, INT, B, L = "string", "float64", "int64", "bool", "list<string>"


@dataclass(frozen=True)
class RecordType:
    name: str  # file name
    kind: str | None  # event kind (None: the participants table)
    columns: tuple[tuple[str, str], ...]  # after study_id, participant_id
    # Further event kinds written to the same file, and the value of its ``turn`` column for each kind.
    more_kinds: tuple[str, ...] = ()
    turn_of_kind: dict[str, str] = field(default_factory=dict)

    @property
    def kinds(self) -> tuple[str, ...]:
        return (self.kind, *self.more_kinds) if self.kind is not None else ()


# Every event-based file ends with these: the contract version of the app that sent the row (empty: an app before
# version 2, which did not send the fields marked "since 2" in docs/ARCHITECTURE.md section 8), and for records
# with free text, the entity types anonymization replaced in it with their counts (JSON).
VERSION = (("contract_version", INT),)
REPLACED = (("replaced_entities", S),)


RECORD_TYPES: tuple[RecordType, ...] = (
    RecordType("participants", None, (
        ("enrolled_at", S), ("consent_version", S), ("consent_sha256", S), ("categories", L), ("withdrawn_at", S),
    )),
    RecordType("messages", "message", (
        ("conversation_id", S), ("message_id", S), ("role", S), ("content", S), ("created_at", S), ("status", S),
        ("arm", S), ("comparison_id", S), *VERSION, *REPLACED,
    )),
    RecordType("attributes", "attribute", (
        ("attribute_id", S), ("text", S), ("reason", S), ("confidence", F), ("origin", S), ("status", S),
        ("created_at", S), ("updated_at", S), *VERSION, *REPLACED,
    )),
    # source, attribute_text, confidence, age_s: empty for labels from apps before they were sent.
    RecordType("attribute_labels", "attribute_label", (
        ("attribute_id", S), ("label", S), ("labeled_at", S), ("source", S), ("attribute_text", S),
        ("confidence", F), ("age_s", F), *VERSION, *REPLACED,
    )),
    RecordType("label_dismissals", "label_dismissal", (
        ("dismissal_id", S), ("attribute_id", S), ("dismissed_at", S), ("source", S), *VERSION,
    )),
    RecordType("comparisons", "comparison", (
        ("comparison_id", S), ("conversation_id", S), ("prompt", S), ("generic_response", S),
        ("personalized_response", S), ("personalized_side", S), ("model", S), ("created_at", S), ("rating", INT),
        ("chosen", S), ("rated_at", S), ("skipped", B),
        # beyond the contract
        ("comment", S), ("parameters", S), ("templates", S), ("time_to_rate_ms", F),
        # analysis without joins; empty for comparisons from apps before they were sent
        ("prompt_message_id", S), ("shown_at", S), ("rating_shown", INT), ("memory_size", INT),
        ("selected_count", INT), ("selector_model", S), ("selector_template", S), ("protocol_version", S),
        ("study_day", INT), ("utc_offset_min", INT),
        # since contract 2: what became of it, and the versions behind both arms
        ("state", S), ("ended_at", S), ("consent_version", S), ("extractor_model", S), ("extractor_template", S),
        ("generic_template", S), ("personalized_template", S), ("context_messages", INT), ("context_sha256", S),
        *VERSION, *REPLACED,
    )),
    RecordType("relevance_labels", "relevance_label", (
        ("comparison_id", S), ("attribute_id", S), ("selected_by_model", B), ("model_relevant", B),
        ("human_relevant", B),
        ("relevance_status", S), ("asked_when", S), ("ask_probability", F), ("labeled_at", S), *VERSION,
    )),
    RecordType("judge_verdicts", "judge_verdict", (
        ("comparison_id", S), ("judge_model", S), ("personalized_side", S), ("rating", INT),
        ("verdict_id", S), ("verdict_status", S), ("judge_template", S), ("context_sha256", S),
        ("context_chars", INT), ("created_at", S), *VERSION,
    )),
    RecordType("schedule_decisions", "schedule_decision", (
        ("decision_id", S), ("conversation_id", S), ("message_id", S), ("decided_at", S), ("eligible", B),
        ("draw", F), ("probability", F), ("outcome", S), ("reason", S), ("memory_size", INT), ("selected_count", INT),
        *VERSION,
    )),
    # The selector's decision on every attribute for a request: comparison turns (kind selection, with the
    # relevance labels) and, where the selections category is consented, ordinary turns (kind turn_selection).
    RecordType("selections", "selection", (
        ("turn", S), ("selection_id", S), ("message_id", S), ("conversation_id", S), ("attribute_id", S),
        ("selected", B), ("valid", B), ("rationale", S), ("model", S), ("template", S), ("decided_at", S),
        *VERSION, *REPLACED,
    ), more_kinds=("turn_selection",), turn_of_kind={"selection": "comparison", "turn_selection": "ordinary"}),
    RecordType("memory_views", "memory_view", (
        ("view_id", S), ("opened_at", S), ("closed_at", S), ("duration_s", F), ("screen", S), *VERSION,
    )),
    RecordType("consents", "consent", (
        ("consent_version", S), ("consent_sha256", S), ("categories", L), ("action", S), ("created_at", S),
        *VERSION,
    )),
)
RECORD_TYPE_NAMES = tuple(r.name for r in RECORD_TYPES)


def record_type(name: str) -> RecordType:
    for r in RECORD_TYPES:
        if r.name == name:
            return r
    raise KeyError(name)


def column_names(rt: RecordType) -> list[str]:
    return ["study_id", "participant_id", *(c for c, _ in rt.columns)]


def _cell(value: Any, kind: str) -> Any:
    # Objects (model parameters, template versions) travel as JSON text in every format.
    if kind == S and isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value


def count_rows(storage: Storage, rt: RecordType) -> int:
    if rt.kind is None:
        return storage.count_participant_records()
    return sum(storage.count_records(kind) for kind in rt.kinds)


def _sources(storage: Storage, rt: RecordType) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
    if rt.kind is None:
        for r in storage.participant_records():
            yield r["participant_id"], None, r
        return
    for kind in rt.kinds:
        for participant_id, payload in storage.records(kind):
            yield participant_id, kind, payload


def rows(storage: Storage, rt: RecordType, study_id: str) -> Iterator[dict[str, Any]]:
    """The rows of one record type, as dicts with exactly the export columns."""
    for participant_id, kind, payload in _sources(storage, rt):
        if kind in rt.turn_of_kind:
            payload = {**payload, "turn": rt.turn_of_kind[kind]}
        row: dict[str, Any] = {"study_id": study_id, "participant_id": participant_id}
        for name, column_kind in rt.columns:
            row[name] = _cell(payload.get(name), column_kind)
        yield row


def csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    return value


def write_csv(path: Path, rt: RecordType, source: Iterator[dict[str, Any]], tick: Callable[[int], None]) -> int:
    n = 0
    with path.open("w", encoding="utf-8", newline="", errors="backslashreplace") as f:
        writer = csv.writer(f)
        writer.writerow(column_names(rt))
        for row in source:
            writer.writerow([csv_cell(v) for v in row.values()])
            n += 1
            if n % 1000 == 0:
                tick(1000)
        tick(n % 1000)
    return n


def write_jsonl(path: Path, rt: RecordType, source: Iterator[dict[str, Any]], tick: Callable[[int], None]) -> int:
    n = 0
    with path.open("w", encoding="utf-8") as f:
        out: IO[str] = f
        for row in source:
            out.write(json.dumps(row, ensure_ascii=True))
            out.write("\n")
            n += 1
            if n % 1000 == 0:
                tick(1000)
        tick(n % 1000)
    return n


def parquet_schema(rt: RecordType) -> pa.Schema:
    import pyarrow as pa

    types = {S: pa.string(), F: pa.float64(), INT: pa.int64(), B: pa.bool_(), L: pa.list_(pa.string())}
    return pa.schema([("study_id", pa.string()), ("participant_id", pa.string()),
                      *((name, types[kind]) for name, kind in rt.columns)])


def write_parquet(path: Path, rt: RecordType, source: Iterator[dict[str, Any]], tick: Callable[[int], None]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema(rt)
    names = schema.names
    n = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        columns: dict[str, list[Any]] = {c: [] for c in names}
        pending = 0

        def flush() -> None:
            nonlocal pending
            if pending:
                writer.write_table(pa.table(columns, schema=schema))
                tick(pending)
                for c in names:
                    columns[c].clear()
                pending = 0

        for row in source:
            for c in names:
                columns[c].append(row[c])
            pending += 1
            n += 1
            if pending >= PARQUET_ROW_GROUP:
                flush()
        flush()
    return n


WRITERS = {"jsonl": write_jsonl, "csv": write_csv, "parquet": write_parquet}


def export(storage: Storage, out_dir: Path, fmt: str, *, researcher: str, via: str = "cli",
           tick: Callable[[int], None] = lambda n: None) -> dict[str, int]:
    """Write every record type to ``out_dir`` in ``fmt``; log the export; return rows per file."""
    if fmt not in WRITERS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    study = storage.require_study()
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for rt in RECORD_TYPES:
        path = out_dir / f"{rt.name}.{fmt}"
        counts[rt.name] = WRITERS[fmt](path, rt, rows(storage, rt, study["id"]), tick)
    storage.log_export(researcher=researcher, via=via, fmt=fmt, record_types=list(counts), rows=sum(counts.values()),
                       destination=str(out_dir))
    return counts


def total_rows(storage: Storage) -> int:
    return sum(count_rows(storage, rt) for rt in RECORD_TYPES)
