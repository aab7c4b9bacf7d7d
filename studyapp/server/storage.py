"""The collection server's database: the only module of the server with SQL.

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
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from studyapp.migrations.server import migrations
from studyapp.server import auth
from studyapp.server.ingest import (
    EventResult,
    NotInitialized,
    ParticipantGone,
    StorageError,
    StudyTerms,
    categories_after,
    consented_categories,
    dumps,
    now,
    sort_batch,
    study_terms,
)
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
                "enrolled_at": r["enrolled_at"],
                "consent_version": r["consent_version"],
                "consent_sha256": r["consent_sha256"],
                "categories": json.loads(r["categories"]) if r["categories"] is not None else None,
                "withdrawn_at": None,
            }
        for r in self.conn.execute("SELECT participant_id, withdrawn_at FROM tombstones ORDER BY withdrawn_at"):
            yield {"participant_id": r["participant_id"], "enrolled_at": None, "consent_version": None,
                   "consent_sha256": None, "categories": None, "withdrawn_at": r["withdrawn_at"]}

    def count_participant_records(self) -> int:
        return (self.conn.execute("SELECT count(*) FROM participants").fetchone()[0]
                + self.conn.execute("SELECT count(*) FROM tombstones").fetchone()[0])

    def _latest_sql(self, kind: str, what: str) -> str:
        if kind in RECORD_KEYS:
            # The latest event of each record (an edited attribute, a comparison rated after it was shown).
            return (f"SELECT {what} FROM events WHERE n IN "
                    "(SELECT max(n) FROM events WHERE kind = ? GROUP BY participant_id, record_key)")
        return f"SELECT {what} FROM events WHERE kind = ?"

    def data_version(self) -> tuple[int, int, int]:
        """Changes whenever an export would: (last event number, events, tombstones). For caching analyses."""
        last, events = self.conn.execute("SELECT coalesce(max(n), 0), count(*) FROM events").fetchone()
        tombstones = self.conn.execute("SELECT count(*) FROM tombstones").fetchone()[0]
        return int(last), int(events), int(tombstones)

    def count_records(self, kind: str) -> int:
        if kind in RECORD_KEYS:
            sql = "SELECT count(*) FROM (SELECT 1 FROM events WHERE kind = ? GROUP BY participant_id, record_key)"
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


class Storage(Reader):
    def __init__(self, path: str | Path, *, migrate: bool = True) -> None:
        self.path = Path(path).expanduser()
        _check_file(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._terms: StudyTerms | None = None
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

    # -- study and researchers -----------------------------------------------------------------

    def study(self) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM study").fetchone()
        return dict(row) if row else None

    def require_study(self) -> dict[str, Any]:
        study = self.study()
        if study is None:
            raise NotInitialized(f"{self.path} holds no study yet. "
                                 f"Run `studyapp-server init --protocol FILE --db {self.path}`.")
        return study

    def init_study(self, *, study_id: str, title: str, version: str, protocol: str,
                   protocol_data: dict[str, Any], researcher: str = "owner") -> str:
        """Create the study and its first researcher token; returns the token (shown once)."""
        with self.write() as conn:
            if conn.execute("SELECT 1 FROM study").fetchone():
                raise StorageError(f"{self.path} already holds a study. Use another --db for a new study.")
            conn.execute("INSERT INTO study (id, title, version, protocol, protocol_json, created_at) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         [study_id, title, version, protocol, json.dumps(protocol_data, sort_keys=True), now()])
            return self._add_researcher(conn, researcher)

    def update_protocol(self, *, study_id: str, title: str, version: str, protocol: str,
                        protocol_data: dict[str, Any]) -> str:
        """Publish a new version of the study's protocol; returns the version it replaced.

        Participants' apps pick it up at their next sync; a new consent document makes them ask again
        before anything more is collected. Keep the earlier [[consent]] entries in the file, so records
        made under them still validate.
        """
        study = self.require_study()
        if study_id != study["id"]:
            raise StorageError(f"This protocol is for study {study_id!r}, but {self.path} holds study "
                               f"{study['id']!r}. Use the file of that study.")
        if version == study["version"]:
            raise StorageError(f"Study {study_id!r} is already at version {version!r}: raise [study] version "
                               "in the file to publish a change.")
        with self.write() as conn:
            conn.execute("UPDATE study SET title = ?, version = ?, protocol = ?, protocol_json = ?",
                         [title, version, protocol, json.dumps(protocol_data, sort_keys=True)])
        return str(study["version"])

    def add_researcher(self, name: str) -> str:
        with self.write() as conn:
            return self._add_researcher(conn, name)

    @staticmethod
    def _add_researcher(conn: sqlite3.Connection, name: str) -> str:
        token = auth.new_token()
        conn.execute("INSERT INTO researcher_tokens (id, name, token_hash, created_at) VALUES (?, ?, ?, ?)",
                     [str(uuid.uuid4()), name, auth.hash_secret(token), now()])
        return token

    def researcher_for(self, token: str) -> str | None:
        """The researcher's name for a token, or None."""
        return self.researcher_for_hash(auth.hash_secret(token))

    def researcher_for_hash(self, wanted: str) -> str | None:
        """The researcher's name for a token's hash (a dashboard session keeps only the hash), or None if the
        token is unknown or revoked."""
        found = None
        # Few rows: compare every hash in constant time rather than looking one up.
        for row in self.conn.execute("SELECT name, token_hash FROM researcher_tokens WHERE revoked_at IS NULL"):
            if auth.same_hash(row["token_hash"], wanted):
                found = row["name"]
        return found

    # -- enrollment ------------------------------------------------------------------------------

    def create_codes(self, n: int) -> list[str]:
        self.require_study()
        codes = [auth.new_code() for _ in range(n)]
        ts = now()
        with self.write() as conn:
            conn.executemany("INSERT INTO enrollment_codes (code_hash, created_at) VALUES (?, ?)",
                             [(auth.hash_secret(auth.normalize_code(c)), ts) for c in codes])
        return codes

    def code_counts(self) -> dict[str, int]:
        row = self.conn.execute(
            "SELECT count(*) AS total, count(used_at) AS used FROM enrollment_codes").fetchone()
        return {"total": row["total"], "used": row["used"], "unused": row["total"] - row["used"]}

    def enroll(self, code: str, claim: str | None = None) -> tuple[str, str] | None:
        """Exchange a one-time code for (participant_id, token); None if the code is unknown or used.

        ``claim`` is a random value the app makes for one enrollment. If the reply was lost and the app
        asks again with the same code and claim, before any upload, it gets the same participant id and
        a fresh token (the first one is replaced): enrollment happens once whatever the network does.
        """
        code_hash = auth.hash_secret(auth.normalize_code(code))
        claim_hash = auth.hash_secret(claim) if claim else None
        ts = now()
        token = auth.new_token()
        with self.write() as conn:
            cur = conn.execute("UPDATE enrollment_codes SET used_at = ? WHERE code_hash = ? AND used_at IS NULL",
                               [ts, code_hash])
            if cur.rowcount == 1:
                participant_id = str(uuid.uuid4())
                conn.execute("INSERT INTO participants (id, token_hash, code_hash, claim_hash, enrolled_at) "
                             "VALUES (?, ?, ?, ?, ?)",
                             [participant_id, auth.hash_secret(token), code_hash, claim_hash, ts])
                return participant_id, token
            if claim_hash is None:
                return None
            row = conn.execute("SELECT id, claim_hash FROM participants WHERE code_hash = ? "
                               "AND last_upload_at IS NULL", [code_hash]).fetchone()
            if row is None or row["claim_hash"] is None or not auth.same_hash(row["claim_hash"], claim_hash):
                return None
            conn.execute("UPDATE participants SET token_hash = ? WHERE id = ?", [auth.hash_secret(token), row["id"]])
            return row["id"], token

    def participant_for(self, token: str) -> str | None:
        wanted = auth.hash_secret(token)
        row = self.conn.execute("SELECT id, token_hash FROM participants WHERE token_hash = ?", [wanted]).fetchone()
        if row is None or not auth.same_hash(row["token_hash"], wanted):
            return None
        return row["id"]

    def tombstone_for(self, token: str) -> dict[str, Any] | None:
        wanted = auth.hash_secret(token)
        row = self.conn.execute("SELECT participant_id, token_hash, withdrawn_at FROM tombstones WHERE token_hash = ?",
                                [wanted]).fetchone()
        if row is None or not auth.same_hash(row["token_hash"], wanted):
            return None
        return {"participant_id": row["participant_id"], "withdrawn_at": row["withdrawn_at"]}

    # -- events ----------------------------------------------------------------------------------

    def store_events(self, participant_id: str, events: list[tuple[str, str, Any]]) -> list[EventResult]:
        """Store a batch in one transaction; per event: accepted, duplicate or rejected (with the reason)."""
        received_at = now()
        with self.write() as conn:
            participant = conn.execute("SELECT categories FROM participants WHERE id = ?", [participant_id]).fetchone()
            if participant is None:
                raise ParticipantGone(participant_id)
            owners: dict[str, str] = {}
            ids = [e[0] for e in events]
            for i in range(0, len(ids), LOOKUP_CHUNK):
                chunk = ids[i : i + LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                for row in conn.execute(f"SELECT event_id, participant_id FROM events WHERE event_id IN ({marks})",
                                        chunk):
                    owners[row["event_id"]] = row["participant_id"]
            batch = sort_batch(participant_id, events, owners=owners,
                               consented=consented_categories(participant["categories"]),
                               terms=self._study_terms, received_at=received_at)
            if batch.rows:
                conn.executemany(
                    "INSERT INTO events (event_id, participant_id, kind, record_key, day, payload, received_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    batch.rows,
                )
                conn.execute("UPDATE participants SET last_upload_at = ? WHERE id = ?", [received_at, participant_id])
            if batch.consent is not None:
                consent = batch.consent
                conn.execute(
                    "UPDATE participants SET consent_version = ?, consent_sha256 = ?, categories = ? WHERE id = ?",
                    [consent["consent_version"], consent["consent_sha256"], dumps(categories_after(consent)),
                     participant_id],
                )
            if batch.rejected:
                self._count_rejections(conn, participant_id, batch.rejected, received_at)
        return batch.results

    @staticmethod
    def _count_rejections(conn: sqlite3.Connection, participant_id: str, rejected: Counter[tuple[str, str]],
                          at: str) -> None:
        """Add a batch's rejected events to the participant's counts by kind and reason (upload health)."""
        conn.executemany(
            "INSERT INTO rejections (participant_id, kind, reason, events, first_at, last_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (participant_id, kind, reason) "
            "DO UPDATE SET events = events + excluded.events, last_at = excluded.last_at",
            [(participant_id, kind, reason, n, at, at) for (kind, reason), n in rejected.items()],
        )

    def _study_terms(self) -> StudyTerms:
        """The study's categories and its consent documents (version -> sha256), cached."""
        terms = self._terms
        if terms is None:
            terms = study_terms(self.require_study()["protocol_json"])
            self._terms = terms
        return terms

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

    def event_ids(self, participant_id: str | None = None) -> list[str]:
        if participant_id is None:
            return [r[0] for r in self.conn.execute("SELECT event_id FROM events ORDER BY n")]
        return [r[0] for r in self.conn.execute("SELECT event_id FROM events WHERE participant_id = ? ORDER BY n",
                                                [participant_id])]

    def count_events(self) -> int:
        return self.conn.execute("SELECT count(*) FROM events").fetchone()[0]

    # -- withdrawal ----------------------------------------------------------------------------

    def withdraw(self, token: str) -> dict[str, Any] | None:
        """Delete every record of the token's participant and keep a tombstone.

        Idempotent: a repeated request (the first reply was lost) finds the tombstone and answers the
        same. None if the token belongs to no participant, withdrawn or not.
        """
        token_hash = auth.hash_secret(token)
        with self.write() as conn:
            row = conn.execute("SELECT id FROM participants WHERE token_hash = ?", [token_hash]).fetchone()
            if row is None:
                stone = conn.execute("SELECT participant_id, withdrawn_at FROM tombstones WHERE token_hash = ?",
                                     [token_hash]).fetchone()
                return dict(stone) if stone else None
            participant_id = row["id"]
            ts = now()
            conn.execute("DELETE FROM events WHERE participant_id = ?", [participant_id])
            conn.execute("DELETE FROM rejections WHERE participant_id = ?", [participant_id])
            conn.execute("DELETE FROM participants WHERE id = ?", [participant_id])
            conn.execute("INSERT INTO tombstones (participant_id, token_hash, withdrawn_at) VALUES (?, ?, ?)",
                         [participant_id, token_hash, ts])
        self.checkpoint(reason=f"the withdrawal of participant {participant_id}")
        return {"participant_id": participant_id, "withdrawn_at": ts}

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

    def compliance(self) -> list[dict[str, Any]]:
        """One row per participant (withdrawn ones from their tombstone): the researchers' overview."""
        rows = [
            {
                "participant_id": r["id"],
                "enrolled_at": r["enrolled_at"],
                "last_upload_at": r["last_upload_at"],
                "days_active": r["days_active"],
                "comparisons_rated": r["rated"],
                "events": r["events"],
                "consent_version": r["consent_version"],
                "withdrawn_at": None,
            }
            for r in self.conn.execute(
                """
                SELECT p.id, p.enrolled_at, p.last_upload_at, p.consent_version,
                  (SELECT count(DISTINCT day) FROM events e WHERE e.participant_id = p.id) AS days_active,
                  (SELECT count(*) FROM events e WHERE e.participant_id = p.id) AS events,
                  (SELECT count(DISTINCT record_key) FROM events e
                     WHERE e.participant_id = p.id AND e.kind = 'comparison'
                       AND json_extract(e.payload, '$.rating') IS NOT NULL) AS rated
                FROM participants p ORDER BY p.enrolled_at
                """
            )
        ]
        rows += [
            {"participant_id": r["participant_id"], "enrolled_at": None, "last_upload_at": None, "days_active": 0,
             "comparisons_rated": 0, "events": 0, "consent_version": None, "withdrawn_at": r["withdrawn_at"]}
            for r in self.conn.execute("SELECT participant_id, withdrawn_at FROM tombstones ORDER BY withdrawn_at")
        ]
        return rows

    def rejections(self) -> list[dict[str, Any]]:
        """Rejected uploads of enrolled participants: one row per participant, kind and reason, with counts."""
        return [dict(r) for r in self.conn.execute(
            "SELECT participant_id, kind, reason, events, first_at, last_at FROM rejections "
            "ORDER BY participant_id, events DESC, kind, reason")]

    def rated_comparisons_by_day(self) -> dict[str, dict[str, int]]:
        """Per participant, rated comparisons counted by the date of ``rated_at`` (as in the export: the latest
        event of each comparison)."""
        sql = self._latest_sql("comparison", "participant_id, substr(json_extract(payload, '$.rated_at'), 1, 10) "
                                             "AS day, json_extract(payload, '$.rating') AS rating")
        counts: dict[str, dict[str, int]] = {}
        for r in self.conn.execute(f"SELECT participant_id, day, count(*) AS n FROM ({sql}) "
                                   "WHERE rating IS NOT NULL AND day IS NOT NULL GROUP BY participant_id, day",
                                   ["comparison"]):
            counts.setdefault(r["participant_id"], {})[r["day"]] = r["n"]
        return counts

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

    def log_export(self, *, researcher: str, via: str, fmt: str, record_types: list[str], rows: int,
                   destination: str | None) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT INTO export_log (id, researcher, via, format, record_types, rows, destination, exported_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [str(uuid.uuid4()), researcher, via, fmt, dumps(record_types), rows, destination, now()],
            )

    def export_log(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM export_log ORDER BY exported_at")]


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
            raise NotInitialized(f"{self.path} holds no study yet. "
                                 f"Run `studyapp-server init --protocol FILE --db {self.path}`.")
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
