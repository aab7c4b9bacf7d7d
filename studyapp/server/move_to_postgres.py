"""Moving a pilot's server database from SQLite to PostgreSQL (``studyapp-server migrate-to-postgres``).

Every table of the SQLite database is copied, from one read snapshot, into an empty PostgreSQL database migrated to
the same schema, in one transaction (COPY; events keep their numbers ``n``, so the order of receipt and "the latest
event of a record" stay the same). Then each table is checked on both sides: its row count and a sha256 over its
rows in primary-key order, each row encoded the same way (JSON of its values), so any lost, added or altered row
shows as a difference naming the table.

One repair is made, and counted: PostgreSQL's json type refuses a lone surrogate escape (``\\ud800``) and
``\\u0000``, which payloads stored before the contract refused them may hold; such text becomes U+FFFD (what the
export files already write for it). The source's checksum is computed over the rows as they are written, repairs
included, so the check still covers every row and column.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from studyapp.server.export import utf8_text
from studyapp.server.ingest import StorageError, dumps
from studyapp.server.pg_storage import PgStorage
from studyapp.server.storage import Storage

# sqlite-utils' record of applied migrations and PostgreSQL's counterpart: each side keeps its own.
_BOOKKEEPING = {"_sqlite_migrations", "schema_migrations"}
_NEEDS_REPAIR = re.compile(r"\\u(?:d[89a-f][0-9a-f]{2}|0000)", re.IGNORECASE)


@dataclass
class TableCheck:
    table: str
    sqlite_rows: int
    postgres_rows: int
    sqlite_sha256: str
    postgres_sha256: str

    @property
    def ok(self) -> bool:
        return self.sqlite_rows == self.postgres_rows and self.sqlite_sha256 == self.postgres_sha256


@dataclass
class MoveReport:
    tables: list[TableCheck] = field(default_factory=list)
    repaired_payloads: int = 0

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables)

    def differences(self) -> list[str]:
        return [f"{t.table}: {t.sqlite_rows} rows in SQLite, {t.postgres_rows} in PostgreSQL"
                + ("" if t.sqlite_sha256 == t.postgres_sha256 else "; the rows' checksums differ")
                for t in self.tables if not t.ok]


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return utf8_text(value.replace("\x00", "\ufffd"))
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    return value


def repaired_payload(payload: str) -> str | None:
    """The payload with lone surrogates and NUL as U+FFFD, or None if PostgreSQL's json type takes it as it is."""
    if not _NEEDS_REPAIR.search(payload):
        return None
    cleaned = dumps(_clean(json.loads(payload)))
    return cleaned if cleaned != payload else None


def _row_bytes(values: Iterable[Any]) -> bytes:
    # Both drivers give str, int and None for these tables' columns: JSON of the values is the same on both sides.
    return json.dumps(list(values), ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"


class _Sum:
    def __init__(self) -> None:
        self.rows = 0
        self.sha = hashlib.sha256()

    def add(self, values: Iterable[Any]) -> None:
        self.rows += 1
        self.sha.update(_row_bytes(values))


def _sqlite_tables(conn: Any) -> dict[str, tuple[list[str], list[str]]]:
    """table -> (columns in order, primary-key columns in key order)."""
    tables: dict[str, tuple[list[str], list[str]]] = {}
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                                "ORDER BY name").fetchall():
        if name in _BOOKKEEPING:
            continue
        info = conn.execute(f'PRAGMA table_info("{name}")').fetchall()
        columns = [r["name"] for r in info]
        key = [r["name"] for r in sorted((r for r in info if r["pk"]), key=lambda r: r["pk"])] or ["rowid"]
        tables[name] = (columns, key)
    # Referenced tables first (participants before events): the target checks foreign keys row by row.
    ordered: dict[str, tuple[list[str], list[str]]] = {}
    while len(ordered) < len(tables):
        before = len(ordered)
        for name, shape in tables.items():
            parents = {r["table"] for r in conn.execute(f'PRAGMA foreign_key_list("{name}")')} - {name}
            if name not in ordered and parents <= set(ordered):
                ordered[name] = shape
        if len(ordered) == before:
            raise StorageError("The SQLite database's tables refer to each other in a cycle; it is not a "
                               "studyapp-server database.")
    return ordered


def _postgres_columns(target: PgStorage) -> dict[str, list[str]]:
    with target.snapshot() as snapshot:
        rows = snapshot.conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "ORDER BY table_name, ordinal_position").fetchall()
    columns: dict[str, list[str]] = {}
    for r in rows:
        if r["table_name"] not in _BOOKKEEPING:
            columns.setdefault(r["table_name"], []).append(r["column_name"])
    return columns


def _sqlite_rows(conn: Any, table: str, columns: list[str], key: list[str]) -> Iterator[tuple[Any, ...]]:
    # SQLite orders text by its bytes (BINARY), as PostgreSQL's "C" collation does below.
    cols = ", ".join(f'"{c}"' for c in columns)
    order = ", ".join(f'"{c}"' for c in key)
    for row in conn.execute(f'SELECT {cols} FROM "{table}" ORDER BY {order}'):
        yield tuple(row)


def move(source: Path, url: str, *, progress: Any = None) -> MoveReport:
    """Copy the SQLite server database ``source`` into the empty PostgreSQL database ``url`` and check every table.
    Raises StorageError if the target holds anything or the schemas differ; the report says whether the checks
    agree (``ok``) and what differs."""
    # Migrated first (as `serve` would): both sides then have the current schema.
    sqlite = Storage(source)
    try:
        target = PgStorage(url)
    except BaseException:
        sqlite.close()
        raise
    try:
        return _move(sqlite, target, progress)
    except psycopg.Error as exc:
        # Nothing was committed: the copy is one transaction.
        raise StorageError(f"Copying into {target.path} failed, nothing was written: {exc}") from exc
    finally:
        target.close()
        sqlite.close()


def _move(sqlite: Storage, target: PgStorage, progress: Any) -> MoveReport:
    report = MoveReport()
    pg_columns = _postgres_columns(target)
    with sqlite.snapshot() as snapshot:
        tables = _sqlite_tables(snapshot.conn)
        for table, (columns, _) in tables.items():
            if sorted(pg_columns.get(table, [])) != sorted(columns):
                raise StorageError(f"Table {table} has columns {columns} in SQLite but {pg_columns.get(table)} in "
                                   "PostgreSQL: update studyapp on both sides to the same version first.")
        sums: dict[str, _Sum] = {}
        with target.write() as conn:
            held = [t for t in pg_columns
                    if conn.execute(f'SELECT EXISTS (SELECT 1 FROM "{t}")').fetchone()[0]]
            if held:
                raise StorageError(f"{target.path} is not empty (rows in {', '.join(sorted(held))}): "
                                   "migrate-to-postgres copies only into an empty database. Create a new one "
                                   "(createdb) and pass its URL.")
            for table, (columns, key) in tables.items():
                sums[table] = total = _Sum()
                payload_at = columns.index("payload") if table == "events" else None
                cols = ", ".join(f'"{c}"' for c in columns)
                # COPY writes the identity column n as given (as INSERT ... OVERRIDING SYSTEM VALUE would).
                with conn.raw.cursor() as cur, cur.copy(f'COPY "{table}" ({cols}) FROM STDIN') as copy:
                    for values in _sqlite_rows(snapshot.conn, table, columns, key):
                        if payload_at is not None and (fixed := repaired_payload(values[payload_at])) is not None:
                            values = (*values[:payload_at], fixed, *values[payload_at + 1:])
                            report.repaired_payloads += 1
                        copy.write_row(values)
                        total.add(values)
                        if progress is not None:
                            progress(1)
            if "events" in tables:
                # Later uploads are numbered after the copied events.
                conn.execute("SELECT setval(pg_get_serial_sequence('events', 'n'), "
                             "coalesce((SELECT max(n) FROM events), 0) + 1, false)")
    with target.snapshot() as check:
        # Text keys in SQLite's byte order; numbers (events.n, gateway_limits.id) take no collation.
        text_columns = {(r["table_name"], r["column_name"]) for r in check.conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND data_type = 'text'")}
        for table, (columns, key) in tables.items():
            cols = ", ".join(f'"{c}"' for c in columns)
            order = ", ".join(f'"{c}" COLLATE "C"' if (table, c) in text_columns else f'"{c}"' for c in key)
            total = _Sum()
            with check.conn.raw.cursor(name=f"check_{table}") as cur:
                cur.itersize = 5000
                cur.execute(f'SELECT {cols} FROM "{table}" ORDER BY {order}')  # type: ignore[arg-type]
                for values in cur:
                    total.add(values)
            source = sums[table]
            report.tables.append(TableCheck(table, source.rows, total.rows, source.sha.hexdigest(),
                                            total.sha.hexdigest()))
    return report


def count_rows(source: Path) -> int:
    """How many rows ``move`` will copy (for a progress bar)."""
    sqlite = Storage(source)
    try:
        with sqlite.snapshot() as snapshot:
            return sum(snapshot.conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
                       for t in _sqlite_tables(snapshot.conn))
    finally:
        sqlite.close()
