"""An export folder (or rows already in hand) as one pandas DataFrame per record type.

The files and their column types are those of ``RECORD_TYPES`` (docs/ARCHITECTURE.md section 8). Whatever the
format, a column has the same dtype here: strings ``string``, integers ``Int64``, floats ``float64``, booleans
``boolean`` (all nullable; an empty string counts as empty, as it must in CSV), lists of strings Python lists.
Times stay ISO-8601 text as exported; ``utc_times`` parses them on use.

An older export lacks files and columns a newer one has: they stay absent, and ``Export.missing`` names the first
one a measure needs, so the measure can say "not available" instead of guessing. Withdrawn participants are left
out of every frame.

A study with ``[conditions]`` has a ``condition`` column right after ``participant_id`` in every file (empty for
participants enrolled before the study had conditions); ``Export.conditions`` maps each participant to theirs. An
export without the column has no conditions. The study's questions are in ``question_answers`` (absent in older
exports).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from studyapp.server.export import FORMATS, RECORD_TYPES, RecordType, column_names

# Column types of the contract (studyapp.server.export's short names) -> the dtype every format is read into.
DTYPES = {"string": "string", "int64": "Int64", "float64": "float64", "bool": "boolean"}
LIST = "list<string>"
EXPORT_HINT = "studyapp-server export --format jsonl|csv|parquet --out DIR"
CONDITION = "condition"  # the participant's randomized condition, right after participant_id in every file

# The files this reader knows even where the exporter it is installed with predates them (their columns as
# docs/ARCHITECTURE.md section 8 gives them); the exporter's own definition wins where it has the file.
LATER_RECORD_TYPES: tuple[RecordType, ...] = (
    RecordType("question_answers", "question_answer", (
        ("answer_id", "string"), ("question_id", "string"), ("question_version", "string"),
        ("question_type", "string"), ("question_when", "string"), ("status", "string"), ("asked_at", "string"),
        ("answered_at", "string"), ("answer_number", "int64"), ("answer_option", "string"),
        ("answer_text", "string"), ("comparison_id", "string"), ("message_id", "string"), ("study_day", "int64"),
        ("utc_offset_min", "int64"), ("ask_probability", "float64"), ("contract_version", "int64"),
        ("replaced_entities", "string"),
    )),
)
KNOWN_RECORD_TYPES: tuple[RecordType, ...] = (
    *RECORD_TYPES, *(rt for rt in LATER_RECORD_TYPES if rt.name not in {r.name for r in RECORD_TYPES}))
KNOWN_NAMES = tuple(rt.name for rt in KNOWN_RECORD_TYPES)


class ExportError(Exception):
    """The folder is not a readable export; the message says what is wrong and what to do."""


@dataclass
class Export:
    """One DataFrame per record type present (file name without extension -> frame)."""

    frames: dict[str, pd.DataFrame]
    source: str = ""  # the folder, or "live database"
    format: str = ""  # "jsonl", "csv", "parquet" or "frames"
    notes: list[str] = field(default_factory=list)
    withdrawn: int = 0  # participants left out because they withdrew

    def __contains__(self, file: str) -> bool:
        return file in self.frames

    def __getitem__(self, file: str) -> pd.DataFrame:
        return self.frames[file]

    def get(self, file: str) -> pd.DataFrame | None:
        return self.frames.get(file)

    def missing(self, file: str, *columns: str) -> str | None:
        """The first needed ``file.column`` this export cannot give, or None when all are there.

        A column is missing when its file or the column is absent, or when the file has rows and the column is
        empty in every one (apps before the column was sent). A file with no rows misses nothing: a measure on
        it has no items, which is not the same as an export that cannot have them.
        """
        frame = self.frames.get(file)
        for column in columns:
            if frame is None or column not in frame.columns:
                return f"{file}.{column}"
            if len(frame) and frame[column].isna().all():
                return f"{file}.{column}"
        if frame is None and not columns:
            return file
        return None

    def conditions(self) -> pd.Series:
        """participant_id -> condition (string), for participants with one; empty without conditions.

        The participants file says it where it has the column (it lists every participant); otherwise the first
        condition on any of the participant's records.
        """
        participants = self.frames.get("participants")
        if participants is not None and CONDITION in participants.columns:
            sources = [participants]
        else:
            sources = [f for f in self.frames.values() if CONDITION in f.columns and "participant_id" in f.columns]
        found: dict[str, str] = {}
        for frame in sources:
            pairs = frame.loc[frame[CONDITION].notna() & frame["participant_id"].notna(),
                              ["participant_id", CONDITION]].drop_duplicates("participant_id")
            for pid, condition in zip(pairs["participant_id"], pairs[CONDITION], strict=True):
                found.setdefault(str(pid), str(condition))
        return pd.Series(found, dtype="string").sort_index()

    @property
    def study_id(self) -> str | None:
        for frame in self.frames.values():
            if "study_id" in frame.columns and frame["study_id"].notna().any():
                return str(frame["study_id"].dropna().iloc[0])
        return None

    def participant_ids(self) -> list[str]:
        """Enrolled participants: the participants file, or (without it) everyone who sent a record."""
        participants = self.frames.get("participants")
        if participants is not None and "participant_id" in participants.columns:
            return sorted(participants["participant_id"].dropna().unique())
        ids: set[str] = set()
        for frame in self.frames.values():
            if "participant_id" in frame.columns:
                ids.update(frame["participant_id"].dropna().unique())
        return sorted(ids)


def utc_times(values: pd.Series) -> pd.Series:
    """ISO-8601 text as UTC timestamps; a time without an offset (apps before contract 2) is taken as UTC."""
    return pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")


# -- reading a folder --------------------------------------------------------------------------------------------


def load_export(path: Path) -> Export:
    """Read the export folder ``path`` (JSONL, CSV or Parquet, told by the files in it)."""
    path = Path(path)
    if not path.is_dir():
        raise ExportError(f"{path} is not a folder. Give the folder an export was written to ({EXPORT_HINT}).")
    fmt, files = _detect(path)
    raw = {name: _READERS[fmt](file) for name, file in files.items()}
    return _build(raw, source=str(path), fmt=fmt)


def from_frames(frames: Mapping[str, pd.DataFrame], *, source: str = "live database") -> Export:
    """An ``Export`` from frames already in hand (e.g. ``pd.DataFrame(list(studyapp.server.export.rows(...)))``),
    normalized as an export folder is."""
    return _build(dict(frames), source=source, fmt="frames")


def _detect(path: Path) -> tuple[str, dict[str, Path]]:
    found: dict[str, dict[str, Path]] = {}
    for name in KNOWN_NAMES:
        for fmt in FORMATS:
            file = path / f"{name}.{fmt}"
            if file.is_file():
                found.setdefault(fmt, {})[name] = file
    if not found:
        raise ExportError(
            f"{path} holds no export files (such as comparisons.csv, comparisons.jsonl or comparisons.parquet). "
            f"Point to the folder given to --out of {EXPORT_HINT}.")
    if len(found) > 1:
        mixed = ", ".join(f"{fmt} ({len(files)} files)" for fmt, files in sorted(found.items()))
        raise ExportError(
            f"{path} mixes export formats: {mixed}. Files of different exports must not be combined: "
            "export again into an empty folder, or move the files of one format elsewhere.")
    fmt, files = next(iter(found.items()))
    return fmt, files


def _unreadable(file: Path, why: str) -> ExportError:
    return ExportError(f"{file} could not be read: {why}. The file may be cut short or edited; "
                       f"export it again ({EXPORT_HINT}).")


def _read_jsonl(file: Path) -> pd.DataFrame:
    records: list[dict[str, Any]] = []
    try:
        with file.open(encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise _unreadable(file, f"line {number} is not JSON ({e.msg})") from None
                if not isinstance(record, dict):
                    raise _unreadable(file, f"line {number} is not a JSON object")
                records.append(record)
    except UnicodeDecodeError as e:
        raise _unreadable(file, f"it is not UTF-8 text ({e.reason})") from None
    return pd.DataFrame.from_records(records) if records else pd.DataFrame()


def _read_csv(file: Path) -> pd.DataFrame:
    try:
        # Every cell as text, and only an empty cell is empty ("NA" is someone's text); types come from the contract.
        return pd.read_csv(file, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise _unreadable(file, "it is empty, without even the header row an export writes") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise _unreadable(file, f"it is not valid CSV ({_first_line(e)})") from None


def _read_parquet(file: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Nullable pandas types straight from Arrow, so an integer column with empty cells stays whole numbers.
    mapping = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype(), pa.string(): pd.StringDtype(),
               pa.large_string(): pd.StringDtype()}
    try:
        table = pq.read_table(file)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise _unreadable(file, f"it is not a Parquet file ({_first_line(e)})") from None
    try:
        return table.to_pandas(types_mapper=mapping.get, ignore_metadata=True)
    except (pa.ArrowException, ValueError, TypeError) as e:
        raise _unreadable(file, f"its columns have types an export does not write ({_first_line(e)})") from None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


_READERS = {"jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet}


# -- one normalization for every source ---------------------------------------------------------------------------


def _build(raw: dict[str, pd.DataFrame], *, source: str, fmt: str) -> Export:
    where = source if fmt == "frames" else None
    frames = {name: _normalize(name, frame, _label(name, fmt, where)) for name, frame in raw.items()}
    export = Export(frames=frames, source=source, format=fmt)
    _exclude_withdrawn(export)
    if "participants" not in frames:
        export.notes.append("The export has no participants file: withdrawn participants cannot be told apart, "
                            "and study days and weeks measured from enrollment are not available.")
    return export


def _label(name: str, fmt: str, where: str | None) -> str:
    return f"{name} ({where})" if where else f"{name}.{fmt}"


def _normalize(name: str, frame: pd.DataFrame, label: str) -> pd.DataFrame:
    try:
        rt = next(r for r in KNOWN_RECORD_TYPES if r.name == name)
    except StopIteration:
        return frame  # not a file of the contract: kept as given
    kinds = _kinds(rt)
    if frame.columns.empty:  # a file with no rows (JSONL, or no rows in hand) has no columns to read: the contract's
        return _empty(rt)
    if "participant_id" not in frame.columns:
        raise ExportError(f"{label} has no participant_id column, so it is not a studyapp export file "
                          f"(its columns: {', '.join(map(str, frame.columns[:8]))}). Export again ({EXPORT_HINT}).")
    out = {column: _convert(frame[column], kinds[column], f"{label}, column {column}") if column in kinds
           else frame[column] for column in frame.columns}
    ordered = [c for c in _column_names(rt) if c in out] + [c for c in out if c not in kinds]
    return pd.DataFrame({c: out[c] for c in ordered}).reset_index(drop=True)


def _kinds(rt: RecordType) -> dict[str, str]:
    return {"study_id": "string", "participant_id": "string", CONDITION: "string", **dict(rt.columns)}


def _column_names(rt: RecordType) -> list[str]:
    """The contract's column order, with ``condition`` right after ``participant_id`` whether or not the exporter
    this reader is installed with writes it."""
    names = [c for c in column_names(rt) if c != CONDITION]
    return [*names[:2], CONDITION, *names[2:]]


def _empty(rt: RecordType) -> pd.DataFrame:
    # A file with no rows gets the contract's columns (without condition, which only a study with conditions has).
    kinds = _kinds(rt)
    return pd.DataFrame({c: pd.Series([], dtype=object if kinds[c] == LIST else DTYPES[kinds[c]])
                         for c in column_names(rt) if c != CONDITION})


def _convert(values: pd.Series, kind: str, where: str) -> pd.Series:
    values = values.reset_index(drop=True)
    if kind == LIST:
        return pd.Series([_as_list(v, where) for v in values], dtype=object)
    if kind == "string":
        if values.dtype == object:  # objects travel as JSON text in every format (export._cell)
            values = values.map(lambda v: json.dumps(v, ensure_ascii=False, sort_keys=True)
                                if isinstance(v, dict | list) else v)
        text = values.astype("string")
        return text.mask((text == "").fillna(False).astype(bool))
    values = _blank_to_na(values)
    if kind == "bool":
        return _as_bool(values, where)
    numbers = pd.to_numeric(values, errors="coerce")
    _refuse(values.notna() & numbers.isna(), values, where, "a number")
    if kind == "int64":
        floats = pd.Series(numbers.to_numpy(dtype="float64", na_value=np.nan))
        _refuse(floats.notna() & (floats != floats.round()), values, where, "a whole number")
        return floats.astype("Int64")
    return pd.Series(numbers.to_numpy(dtype="float64", na_value=np.nan))


def _blank_to_na(values: pd.Series) -> pd.Series:
    if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
        return values.mask((values.astype("string").str.strip() == "").fillna(False).astype(bool))
    return values


def _refuse(bad: pd.Series, values: pd.Series, where: str, wanted: str) -> None:
    bad = bad.fillna(False).astype(bool)
    if bad.any():
        raise ExportError(f"{where}: {values[bad].iloc[0]!r} is not {wanted} ({int(bad.sum())} such cells). "
                          f"The file may have been edited; export it again ({EXPORT_HINT}).")


def _is_empty(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


_TRUTH = {"true": True, "false": False, "1": True, "0": False}


def _as_bool(values: pd.Series, where: str) -> pd.Series:
    if values.dtype == bool or isinstance(values.dtype, pd.BooleanDtype):
        return values.astype("boolean")
    out: list[Any] = []
    for value in values:
        if _is_empty(value):
            out.append(pd.NA)
        elif isinstance(value, bool | np.bool_):
            out.append(bool(value))
        elif str(value).strip().lower() in _TRUTH:
            out.append(_TRUTH[str(value).strip().lower()])
        else:
            raise ExportError(f"{where}: {value!r} is not true or false. "
                              f"The file may have been edited; export it again ({EXPORT_HINT}).")
    return pd.Series(out, dtype="boolean")


def _as_list(value: Any, where: str) -> list[str] | None:
    if isinstance(value, list | tuple | np.ndarray):
        return [str(v) for v in value]
    if _is_empty(value) or value == "":
        return None
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, list):
            return [str(v) for v in parsed]
    raise ExportError(f"{where}: {value!r} is not a list (a JSON array in CSV). "
                      f"The file may have been edited; export it again ({EXPORT_HINT}).")


def _exclude_withdrawn(export: Export) -> None:
    participants = export.frames.get("participants")
    if participants is None or "withdrawn_at" not in participants.columns:
        return
    gone = set(participants.loc[participants["withdrawn_at"].notna(), "participant_id"].dropna())
    if not gone:
        return
    export.frames = {name: _without(frame, gone) for name, frame in export.frames.items()}
    export.withdrawn = len(gone)
    who = "1 withdrawn participant" if len(gone) == 1 else f"{len(gone)} withdrawn participants"
    export.notes.append(f"{who} excluded from every measure (the server deleted their records at withdrawal).")


def _without(frame: pd.DataFrame, participants: Iterable[str]) -> pd.DataFrame:
    if "participant_id" not in frame.columns:
        return frame
    return frame[~frame["participant_id"].isin(list(participants)).fillna(False)].reset_index(drop=True)
