"""The collection server's database on SQLite (the default backend; pg_storage.py is the PostgreSQL one, and the SQL
both speak is in shared_storage.py: the server's SQL lives in these three modules and the migrations).

One SQLite file (WAL) migrated by the "studyapp-server" set. Every request thread gets its own
connection; writes are serialized by a lock and run in one ``BEGIN IMMEDIATE`` transaction each,
so a batch of events is stored completely or not at all, and ``event_id UNIQUE`` makes a retried
batch harmless (exactly once).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from studyapp.migrations.server import migrations
from studyapp.server.ingest import (
    EventResult,
    NotInitialized,
    ParticipantGone,
    StorageError,
    StudyTerms,
    dumps,
    no_study,
    now,
)
from studyapp.server.shared_storage import EventRow, SharedStorage, latest_sql
from studyapp.server.validation import RECORD_KEYS, check_event

# Re-exported: the app, the CLI and the export import them from here.
__all__ = ["EventResult", "NotInitialized", "ParticipantGone", "Reader", "Snapshot", "Storage", "StorageError"]

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
# How long the checkpoint after a withdrawal waits for readers to leave (writers wait that long too).
CHECKPOINT_WAIT_MS = 2_000
# Chunk size for "WHERE event_id IN (...)" lookups (well under SQLite's variable limit).
LOOKUP_CHUNK = 500


def _not_sqlite(path: Path) -> str:
    return f"{path} is not a SQLite database; it was left untouched. Pass another --db."


def _check_file(path: Path) -> None:
    # stat() only: reading the header with plain file I/O and closing it would drop every fcntl lock this
    # process holds on the file (another Storage may be open), so another process could checkpoint and delete
    # the WAL still in use (sqlite.org/howtocorrupt.html, 2.2). The header is checked through SQLite instead.
    if path.is_dir():
        raise StorageError(f"{path} is a directory, not a database file. Pass another --db.")
    # SQLite treats a 1-byte file as empty and would write over it; no SQLite database is 1 byte long.
    if path.is_file() and path.stat().st_size == 1:
        raise StorageError(_not_sqlite(path))


class Reader:
    """The reads behind the export (on ``conn``): shared by the storage and by a snapshot."""

    @property
    def conn(self) -> sqlite3.Connection:
        raise NotImplementedError

    def participant_records(self) -> Iterator[dict[str, Any]]:
        """Rows of the participants export file: enrolled participants, then tombstones."""
        for r in self.conn.execute("SELECT * FROM participants ORDER BY enrolled_at"):
            yield {
                "participant_id": r["id"],
                "condition": r["condition"],
                "enrolled_at": r["enrolled_at"],
                "consent_version": r["consent_version"],
                "consent_sha256": r["consent_sha256"],
                "categories": json.loads(r["categories"]) if r["categories"] is not None else None,
                "withdrawn_at": None,
            }
        for r in self.conn.execute("SELECT participant_id, withdrawn_at FROM tombstones ORDER BY withdrawn_at"):
            yield {"participant_id": r["participant_id"], "condition": None, "enrolled_at": None,
                   "consent_version": None, "consent_sha256": None, "categories": None,
                   "withdrawn_at": r["withdrawn_at"]}

    def participant_conditions(self) -> dict[str, str | None]:
        """Each enrolled participant's condition (a withdrawn participant has none left: only the tombstone)."""
        return {r[0]: r[1] for r in self.conn.execute("SELECT id, condition FROM participants")}

    def count_participant_records(self) -> int:
        return (self.conn.execute("SELECT count(*) FROM participants").fetchone()[0]
                + self.conn.execute("SELECT count(*) FROM tombstones").fetchone()[0])

    def _latest_sql(self, kind: str, what: str) -> str:
        return latest_sql(kind, what)

    def data_version(self) -> tuple[int, int, int]:
        """Changes whenever an export would: (last event number, events, tombstones). For caching analyses."""
        last, events = self.conn.execute("SELECT coalesce(max(n), 0), count(*) FROM events").fetchone()
        tombstones = self.conn.execute("SELECT count(*) FROM tombstones").fetchone()[0]
        return int(last), int(events), int(tombstones)

    def count_records(self, kind: str) -> int:
        if kind in RECORD_KEYS:
            # The alias: PostgreSQL (before 16) wants one on every subquery in FROM.
            sql = ("SELECT count(*) FROM (SELECT 1 FROM events WHERE kind = ? GROUP BY participant_id, record_key) "
                   "AS records")
        else:
            sql = "SELECT count(*) FROM events WHERE kind = ?"
        return self.conn.execute(sql, [kind]).fetchone()[0]

    def records(self, kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(participant_id, payload) of the records of one kind, in the order they were received."""
        cursor = self.conn.execute(self._latest_sql(kind, "participant_id, payload") + " ORDER BY n", [kind])
        while True:
            chunk = cursor.fetchmany(5000)
            if not chunk:
                break
            for participant_id, payload in chunk:
                yield participant_id, json.loads(payload)


class Storage(Reader, SharedStorage):
    def __init__(self, path: str | Path, *, migrate: bool = True) -> None:
        self.path = Path(path).expanduser()
        _check_file(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._terms: tuple[str, StudyTerms] | None = None
        # What the last failed checkpoint was for (a withdrawal), until one succeeds.
        self._checkpoint_owed: str | None = None
        db = Database(self.conn)
        tables = set(db.table_names())
        if tables and "_sqlite_migrations" not in tables:
            raise StorageError(f"{self.path} belongs to another program (no studyapp-server schema). "
                               "Pass another --db.")
        if migrate:
            with self._write_lock:
                migrations.apply(db)

    # -- connections -------------------------------------------------------------------------

    @staticmethod
    def _json_field(name: str) -> str:
        return f"json_extract(payload, '$.{name}')"

    @property
    def conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False,
                                       isolation_level=None)
                conn.row_factory = sqlite3.Row
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                try:
                    # The first read checks the header before any pragma that writes (journal_mode does).
                    conn.execute("PRAGMA schema_version").fetchone()
                except sqlite3.DatabaseError as exc:
                    conn.close()
                    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_NOTADB:
                        raise StorageError(_not_sqlite(self.path)) from exc
                    raise
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA foreign_keys = ON")
                # Deleted rows are overwritten with zeros, not only unlinked: a withdrawal must leave no text in
                # free pages (set explicitly, whatever the SQLite build's default).
                conn.execute("PRAGMA secure_delete = ON")
            except sqlite3.DatabaseError as exc:
                raise StorageError(f"{self.path} cannot be opened as a SQLite database ({exc}). "
                                   "Pass another --db.") from exc
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: everything inside commits together or not at all."""
        conn = self.conn
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
                if self._checkpoint_owed is not None:
                    # A withdrawal's checkpoint found a reader in the way: try again, without waiting. What was
                    # just written is committed whatever happens here.
                    try:
                        self._checkpoint(self._checkpoint_owed, 0)
                    except sqlite3.Error:
                        log.exception("retrying the checkpoint owed for %s failed", self._checkpoint_owed)

    def close(self) -> None:
        with self._connections_lock:
            for conn in self._connections:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._connections.clear()
        self._local = threading.local()

    def table_names(self) -> list[str]:
        return Database(self.conn).table_names()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        yield self.conn

    # -- events ----------------------------------------------------------------------------------

    def _stored_owners(self, conn: sqlite3.Connection, event_ids: list[str]) -> dict[str, str]:
        owners: dict[str, str] = {}
        for i in range(0, len(event_ids), LOOKUP_CHUNK):
            chunk = event_ids[i : i + LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(f"SELECT event_id, participant_id FROM events WHERE event_id IN ({marks})", chunk):
                owners[row["event_id"]] = row["participant_id"]
        return owners

    def _insert_events(self, conn: sqlite3.Connection, rows: list[EventRow]) -> None:
        # The write lock keeps every other writer out between the lookup and here: all rows go in.
        conn.executemany(
            "INSERT INTO events (event_id, participant_id, kind, record_key, day, payload, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    def bulk_insert_events(self, participant_id: str, rows: Iterable[tuple[str, str, dict[str, Any]]],
                           chunk: int = 50_000) -> int:
        """Insert already-checked (event_id, kind, payload) rows fast (benchmarks and imports)."""
        n = 0
        batch: list[tuple[Any, ...]] = []
        received_at = now()

        def flush() -> None:
            with self.write() as conn:
                conn.executemany(
                    "INSERT INTO events (event_id, participant_id, kind, record_key, day, payload, received_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    batch,
                )
            batch.clear()

        for event_id, kind, payload in rows:
            checked = check_event(event_id, kind, payload)
            batch.append((event_id, participant_id, kind, checked.record_key, checked.day,
                          dumps(checked.payload), received_at))
            n += 1
            if len(batch) >= chunk:
                flush()
        if batch:
            flush()
        return n

    # -- withdrawal ----------------------------------------------------------------------------

    def _after_withdrawal(self, participant_id: str) -> None:
        self.checkpoint(reason=f"the withdrawal of participant {participant_id}")

    def checkpoint(self, *, reason: str, wait_ms: int = CHECKPOINT_WAIT_MS) -> bool:
        """Copy the WAL into the database file and empty it (``wal_checkpoint(TRUNCATE)``), so deleted rows live on
        in no WAL frame either; True when done.

        TRUNCATE waits up to ``wait_ms`` for readers to leave (writers wait meanwhile, so not long). If a reader
        stays, the log says so and the checkpoint is owed: it is tried again, without waiting, after each later
        write and when each snapshot (an export, the dashboard) ends, until it succeeds.
        """
        with self._write_lock:
            return self._checkpoint(reason, wait_ms)

    def _checkpoint(self, reason: str, wait_ms: int, conn: sqlite3.Connection | None = None) -> bool:
        conn = conn or self.conn
        conn.execute(f"PRAGMA busy_timeout = {wait_ms}")
        try:
            busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not busy:
            if self._checkpoint_owed:
                log.info("the WAL of %s is checkpointed now: the records deleted at %s are gone from it",
                         self.path, self._checkpoint_owed)
            self._checkpoint_owed = None
            return True
        if self._checkpoint_owed is None:
            log.warning("the WAL of %s could not be checkpointed after %s (%d of %d frames copied; a reader is "
                        "still open): the deleted records stay in %s-wal until a later write or the end of a read "
                        "retries it",
                        self.path, reason, copied, frames, self.path.name)
        self._checkpoint_owed = self._checkpoint_owed or reason
        return False

    # -- researchers' views ------------------------------------------------------------------------

    def records(self, kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(participant_id, payload) of the records of one kind, in the order they were received."""
        # A snapshot of its own: a long read never holds up the request threads' connection. Consume it on the
        # thread that started it (a connection serves one thread).
        with self.snapshot() as snapshot:
            yield from snapshot.records(kind)

    def snapshot(self) -> Snapshot:
        """A read transaction on a connection of its own (use it as a context manager, on one thread)."""
        return Snapshot(self.path, on_close=self._after_snapshot)

    def _after_snapshot(self, conn: sqlite3.Connection) -> None:
        """A snapshot just ended on ``conn`` (its own thread's connection): if a withdrawal's checkpoint is owed,
        it was most likely this reader that stood in the way, so try again now instead of waiting for a write that
        may never come (at the end of a study the last withdrawal can be followed only by exports)."""
        if self._checkpoint_owed is None or not self._write_lock.acquire(blocking=False):
            return  # nothing owed, or a writer is at work and retries after its commit
        try:
            if self._checkpoint_owed is not None:
                self._checkpoint(self._checkpoint_owed, 0, conn)
        except sqlite3.Error:
            log.exception("retrying the checkpoint owed for %s after a read failed", self._checkpoint_owed)
        finally:
            self._write_lock.release()
class Snapshot(Reader):
    """One read transaction on a connection of its own: every read sees the database as it was at the first one
    (SQLite WAL keeps that version for the transaction however much is written meanwhile).

    Made, used and closed on one thread (sqlite3 checks it). Keep it short: while it is open, a checkpoint cannot
    reset the WAL past its version.
    """

    def __init__(self, path: Path, *, on_close: Callable[[sqlite3.Connection], None] | None = None) -> None:
        self.path = path
        self._on_close = on_close
        self._conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            self._conn.row_factory = sqlite3.Row
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._conn.execute("BEGIN")
            # The first read fixes the version every later read of this transaction sees.
            self.study: dict[str, Any] | None = (dict(row) if (row := self._conn.execute(
                "SELECT * FROM study").fetchone()) is not None else None)
            self.last_event: int = self._conn.execute("SELECT coalesce(max(n), 0) FROM events").fetchone()[0]
        except BaseException:
            self._conn.close()
            raise

    @property
    def conn(self) -> sqlite3.Connection:
        return self._conn

    def require_study(self) -> dict[str, Any]:
        if self.study is None:
            raise no_study(self.path)
        return self.study

    def close(self) -> None:
        try:
            self._conn.execute("ROLLBACK")
            if self._on_close is not None:
                self._on_close(self._conn)  # the transaction is over: this connection holds no snapshot now
        except sqlite3.Error:
            pass
        finally:
            self._conn.close()

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
