"""The export contract (docs/ARCHITECTURE.md section 8): one file per record type, as JSONL, CSV or Parquet.

Columns follow the contract's order (study_id, participant_id, condition, then the record's fields as
docs/ARCHITECTURE.md section 8 lists them; tests/project/test_export_docs.py keeps the two equal). Rows are
streamed, so a million events export in bounded memory; Parquet is written in row groups with an explicit schema,
so an empty file still has the right columns and types.

Every export reads one snapshot (one read transaction on a connection of its own, used by one thread only), so
its files agree with each other however much is uploaded meanwhile. A folder export is written into a hidden
folder inside ``--out`` and moved into place only when every file is complete, ``schema.json`` (files, columns,
types, contract version, the snapshot's row counts) last; a failed export leaves the folder as it was. Over HTTP,
rows are encoded on one thread of the export's own and the export is logged only once everything was sent; a
failure midway aborts the connection, so a cut-off file never ends like a complete one.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studyapp.events import CONTRACT_VERSION
from studyapp.server.storage import NotInitialized, Reader, Snapshot, Storage

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS = ("jsonl", "csv", "parquet")
PARQUET_ROW_GROUP = 50_000
SCHEMA_FILE = "schema.json"
# Bytes per piece of a streamed or written JSONL/CSV file.
CHUNK_BYTES = 64_000

log = logging.getLogger(__name__)

# Column types by name; pyarrow is imported only when a Parquet file is written, so the serving
# process does not carry it. Short names keep the column tables below readable.
S, F, INT, B, L = "string", "float64", "int64", "bool", "list<string>"
# The types as docs/ARCHITECTURE.md section 8 and schema.json name them.
TYPE_NAMES = {S: "string", F: "float", INT: "integer", B: "boolean", L: "list of strings"}


@dataclass(frozen=True)
class RecordType:
    name: str  # file name
    kind: str | None  # event kind (None: the participants table)
    columns: tuple[tuple[str, str], ...]  # after study_id, participant_id, condition
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
    # The study's own questions ([[questions]]): one row per question put to the participant, answered or not.
    RecordType("question_answers", "question_answer", (
        ("answer_id", S), ("question_id", S), ("question_version", S), ("question_type", S), ("question_when", S),
        ("status", S), ("asked_at", S), ("answered_at", S), ("answer_number", INT), ("answer_option", S),
        ("answer_text", S), ("comparison_id", S), ("message_id", S), ("study_day", INT), ("utc_offset_min", INT),
        ("ask_probability", F), *VERSION, *REPLACED,
    )),
    RecordType("consents", "consent", (
        ("consent_version", S), ("consent_sha256", S), ("categories", L), ("action", S), ("created_at", S),
        *VERSION,
    )),
)
RECORD_TYPE_NAMES = tuple(r.name for r in RECORD_TYPES)
# Every file starts with these: whose row it is and, from the server's own assignment, their condition.
LEADING = (("study_id", S), ("participant_id", S), ("condition", S))


def record_type(name: str) -> RecordType:
    for r in RECORD_TYPES:
        if r.name == name:
            return r
    raise KeyError(name)


def column_names(rt: RecordType) -> list[str]:
    return [*(c for c, _ in LEADING), *(c for c, _ in rt.columns)]


def _cell(value: Any, kind: str) -> Any:
    # Objects (model parameters, template versions) travel as JSON text in every format.
    if kind == S and isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value


def count_rows(reader: Reader, rt: RecordType) -> int:
    if rt.kind is None:
        return reader.count_participant_records()
    return sum(reader.count_records(kind) for kind in rt.kinds)


def _sources(reader: Reader, rt: RecordType) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
    if rt.kind is None:
        for r in reader.participant_records():
            yield r["participant_id"], None, r
        return
    for kind in rt.kinds:
        for participant_id, payload in reader.records(kind):
            yield participant_id, kind, payload


def rows(reader: Reader, rt: RecordType, study_id: str) -> Iterator[dict[str, Any]]:
    """The rows of one record type, as dicts with exactly the export columns."""
    # Read once, in the export's snapshot: the participants are few, their records many.
    conditions = reader.participant_conditions()
    for participant_id, kind, payload in _sources(reader, rt):
        if kind in rt.turn_of_kind:
            payload = {**payload, "turn": rt.turn_of_kind[kind]}
        row: dict[str, Any] = {"study_id": study_id, "participant_id": participant_id,
                               "condition": conditions.get(participant_id)}
        for name, column_kind in rt.columns:
            row[name] = _cell(payload.get(name), column_kind)
        yield row


# -- cells -------------------------------------------------------------------------------------------------------

_SURROGATE = re.compile("[\ud800-\udfff]")
# What makes a spreadsheet read a CSV cell as a formula (OWASP "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def utf8_text(text: str) -> str:
    """``text`` with any lone surrogate replaced by U+FFFD: UTF-8 files (CSV, Parquet) cannot hold one. The
    contract refuses such text; records stored before it did may still hold it."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def csv_text(text: str) -> str:
    """A text cell as CSV holds it: a leading ``= + - @``, tab or CR gets a ``'`` before it, so a spreadsheet
    shows the text instead of running it; NUL (which breaks CSV readers) becomes U+FFFD."""
    text = utf8_text(text.replace("\x00", "\ufffd"))
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return utf8_text(json.dumps(value, ensure_ascii=False))
    if isinstance(value, str):
        return csv_text(value)
    return value  # numbers stay numbers (a negative one too)


# -- JSONL and CSV -----------------------------------------------------------------------------------------------


def encode(rt: RecordType, fmt: str, source: Iterator[dict[str, Any]]) -> Generator[tuple[bytes, int], None, None]:
    """The JSONL or CSV file of ``source`` in pieces of about CHUNK_BYTES: (bytes, rows in them)."""
    buf = io.StringIO()
    writer = csv.writer(buf) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(column_names(rt))
    n = 0
    for row in source:
        if writer is not None:
            writer.writerow([csv_cell(v) for v in row.values()])
        else:
            # ASCII with escapes: the exact text, whatever it holds.
            buf.write(json.dumps(row, ensure_ascii=True))
            buf.write("\n")
        n += 1
        if buf.tell() >= CHUNK_BYTES:
            yield buf.getvalue().encode("utf-8"), n
            buf.seek(0)
            buf.truncate()
            n = 0
    yield buf.getvalue().encode("utf-8"), n


def _write_text(fmt: str) -> Callable[[Path, RecordType, Iterator[dict[str, Any]], Callable[[int], None]], int]:
    def write(path: Path, rt: RecordType, source: Iterator[dict[str, Any]], tick: Callable[[int], None]) -> int:
        total = 0
        with path.open("wb") as f:
            for data, n in encode(rt, fmt, source):
                f.write(data)
                total += n
                tick(n)
        return total

    return write


write_csv = _write_text("csv")
write_jsonl = _write_text("jsonl")


# -- Parquet -----------------------------------------------------------------------------------------------------


def parquet_schema(rt: RecordType) -> pa.Schema:
    import pyarrow as pa

    types = {S: pa.string(), F: pa.float64(), INT: pa.int64(), B: pa.bool_(), L: pa.list_(pa.string())}
    return pa.schema([(name, types[kind]) for name, kind in (*LEADING, *rt.columns)])


def _utf8_values(values: list[Any]) -> list[Any]:
    return [utf8_text(v) if isinstance(v, str)
            else [utf8_text(x) if isinstance(x, str) else x for x in v] if isinstance(v, list) else v
            for v in values]


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
                try:
                    table = pa.table(columns, schema=schema)
                except UnicodeEncodeError:
                    # A lone surrogate stored before the contract refused it: U+FFFD in its place (the rare
                    # case pays for the cleaning, the common one does not).
                    table = pa.table({c: _utf8_values(v) for c, v in columns.items()}, schema=schema)
                writer.write_table(table)
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


# -- a folder export ---------------------------------------------------------------------------------------------


class ExportError(RuntimeError):
    """An export was refused or failed; the message says what happened and what to do."""


def file_names(fmt: str) -> list[str]:
    """The files of one export, schema.json last."""
    return [*(f"{rt.name}.{fmt}" for rt in RECORD_TYPES), SCHEMA_FILE]


def schema_document(fmt: str, study_id: str, last_event: int, counts: dict[str, int]) -> dict[str, Any]:
    """schema.json: what a reader needs beyond the files themselves (an empty JSONL file shows no columns)."""
    document: dict[str, Any] = {
        "study_id": study_id,
        "format": fmt,
        "contract_version": CONTRACT_VERSION,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        # Every file holds the database as it was at this event (numbered in the order they were stored).
        "snapshot": {"last_event": last_event},
        "files": [
            {"record_type": rt.name, "file": f"{rt.name}.{fmt}", "rows": counts[rt.name],
             "columns": [{"name": name, "type": TYPE_NAMES[kind]}
                         for name, kind in (*LEADING, *rt.columns)]}
            for rt in RECORD_TYPES
        ],
    }
    if fmt == "csv":
        document["csv_text_cells"] = ("A text cell starting with = + - @, tab or CR has a ' put before it; NUL and "
                                      "text that is not Unicode are U+FFFD. JSONL keeps the exact text.")
    return document


def _refuse_symlinks(out_dir: Path, names: list[str]) -> None:
    """Never write through a symlink planted at the folder or at a file of the export."""
    if out_dir.is_symlink():
        raise ExportError(f"{out_dir} is a symlink; the export does not write through symlinks. "
                          "Give the real folder as --out.")
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir} is a file, not a folder. Give a folder as --out.")
    for name in names:
        path = out_dir / name
        if path.is_symlink():
            raise ExportError(f"{path} is a symlink; the export does not write through symlinks. "
                              f"Remove {name} from {out_dir} or export to another folder.")
        if path.is_dir():
            raise ExportError(f"{path} is a folder where the export writes a file. Move it away or export to "
                              "another folder.")


def _publish(partial: Path, out_dir: Path, names: list[str]) -> None:
    # The old schema.json goes first and the new one comes last: while files are swapped the folder does not
    # look like a complete export. os.replace swaps a planted symlink itself, never writes through it.
    (out_dir / SCHEMA_FILE).unlink(missing_ok=True)
    for name in names:
        os.replace(partial / name, out_dir / name)


def export(storage: Storage, out_dir: Path, fmt: str, *, researcher: str, via: str = "cli",
           tick: Callable[[int], None] = lambda n: None) -> dict[str, int]:
    """Write every record type to ``out_dir`` in ``fmt`` from one snapshot, with schema.json; log the export;
    return rows per file. Raises ExportError (out_dir unchanged) when refused or failed."""
    if fmt not in WRITERS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    names = file_names(fmt)
    _refuse_symlinks(out_dir, names)
    storage.require_study()
    out_dir.mkdir(parents=True, exist_ok=True)
    _refuse_symlinks(out_dir, names)
    partial = Path(tempfile.mkdtemp(prefix=".export-partial-", dir=out_dir))
    moved = False
    try:
        with storage.snapshot() as snapshot:
            study = snapshot.require_study()
            expected = {rt.name: count_rows(snapshot, rt) for rt in RECORD_TYPES}
            counts: dict[str, int] = {}
            for rt in RECORD_TYPES:
                counts[rt.name] = WRITERS[fmt](partial / f"{rt.name}.{fmt}", rt, rows(snapshot, rt, study["id"]),
                                               tick)
            if counts != expected:
                raise ExportError(f"the files hold other row counts than the snapshot ({counts} != {expected})")
            document = schema_document(fmt, study["id"], snapshot.last_event, counts)
        (partial / SCHEMA_FILE).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        moved = True
        _publish(partial, out_dir, names)
    except NotInitialized:
        raise
    except Exception as exc:
        if moved:
            log.error("export (%s) to %s failed while its files were moved into place: %s", fmt, out_dir, exc)
            raise ExportError(f"The {fmt} export to {out_dir} failed while its files were moved into place ({exc}). "
                              f"{out_dir} has no {SCHEMA_FILE} now, so do not use its files: export again.") from exc
        log.error("export (%s) to %s failed; nothing was written: %s", fmt, out_dir, exc)
        raise ExportError(f"The {fmt} export to {out_dir} failed ({exc}); nothing was written there (files of "
                          "earlier exports are as they were). Fix the cause and export again.") from exc
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    storage.log_export(researcher=researcher, via=via, fmt=fmt, record_types=list(counts), rows=sum(counts.values()),
                       destination=str(out_dir))
    return counts


def total_rows(storage: Storage) -> int:
    return sum(count_rows(storage, rt) for rt in RECORD_TYPES)


# -- one file over HTTP ------------------------------------------------------------------------------------------


class HttpExport:
    """One record type in JSONL or CSV for a streamed HTTP answer, from one snapshot.

    The snapshot's connection is made, read and closed on one thread of the export's own (sqlite3 refuses a
    connection on another thread, and the server's shared thread pool would hand each step to any thread).
    ``open()`` takes the snapshot and counts its rows (for the headers); ``body()`` yields the bytes.
    """

    def __init__(self, storage: Storage, rt: RecordType, fmt: str) -> None:
        self.storage, self.rt, self.fmt = storage, rt, fmt
        self.rows = 0  # in the snapshot
        self.sent = 0
        self.last_event = 0
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export")
        self._snapshot: Snapshot | None = None
        self._chunks: Generator[tuple[bytes, int], None, None] | None = None
        self._released = False

    def _open(self) -> None:
        snapshot = self._snapshot = self.storage.snapshot()
        study = snapshot.require_study()
        self.rows = count_rows(snapshot, self.rt)
        self.last_event = snapshot.last_event
        self._chunks = encode(self.rt, self.fmt, rows(snapshot, self.rt, study["id"]))

    def _next(self) -> tuple[bytes, int] | None:
        assert self._chunks is not None
        return next(self._chunks, None)

    def _close(self) -> None:
        chunks, snapshot = self._chunks, self._snapshot
        self._chunks = self._snapshot = None
        if chunks is not None:
            chunks.close()
        if snapshot is not None:
            snapshot.close()

    def _release(self) -> None:
        # Runs after whatever step is in progress, on the same thread; nothing here awaits, so it also runs
        # when the client went away and the answer was cancelled. Called from body() and from the response
        # (ExportResponse), whichever ends first: only the first call does anything.
        if self._released:
            return
        self._released = True
        self._thread.submit(self._close)
        self._thread.shutdown(wait=False)

    def release(self) -> None:
        """Close the snapshot (after the step in progress); safe to call more than once."""
        self._release()

    async def open(self) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._open)
        except BaseException:
            self._release()
            raise

    async def body(self, on_complete: Callable[[int], Awaitable[None]]) -> AsyncIterator[bytes]:
        """The file's bytes; ``on_complete(rows)`` once everything was handed to the server to send. An error
        propagates, and the server then aborts the connection: the client sees a cut-off answer, not an end."""
        loop = asyncio.get_running_loop()
        try:
            while (chunk := await loop.run_in_executor(self._thread, self._next)) is not None:
                data, n = chunk
                yield data
                self.sent += n
            if self.sent != self.rows:
                raise ExportError(f"sent {self.sent} rows of {self.rt.name}, but the snapshot holds {self.rows}")
            # The snapshot ends before the answer does: once a client has read the whole file, the connection is
            # free for the next export (PostgreSQL allows a server process only so many snapshots at once).
            await loop.run_in_executor(self._thread, self._close)
        except Exception as exc:
            log.error("export of %s (%s) over HTTP failed after %d rows: %s", self.rt.name, self.fmt, self.sent, exc)
            raise
        finally:
            self._release()
        await on_complete(self.sent)
