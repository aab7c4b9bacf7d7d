"""The collection server's database on PostgreSQL: the public interface of the SQLite ``Storage`` that the app, the
export and the dashboard use (see docs/ARCHITECTURE.md, "Storage backends"; ``checkpoint`` is SQLite's alone).

Connections come from a psycopg_pool pool of POOL_MAX per process: each call borrows one for one transaction and
waits at most POOL_WAIT_S for it (then psycopg_pool's PoolTimeout, which the app answers with 503 and Retry-After).
A snapshot (an export, the export listing, the dashboard) keeps its connection until it ends, so at most
MAX_SNAPSHOTS of them are open at once; one more is refused at once with ``StorageBusy``, and the rest of the pool
stays free for enrollment, uploads and withdrawals however many exports researchers hold open.

Unlike SQLite there is no process-wide write lock: PostgreSQL serializes what must be serialized with row locks (a
participant's uploads and withdrawal take ``FOR UPDATE`` on its row) and the unique key on ``event_id`` with
``ON CONFLICT DO NOTHING`` keeps ingest exactly once across transactions, threads and worker processes. Only the
insert of events (to its commit) is serialized, by an advisory lock, so that event numbers commit in order
(``EVENTS_ORDER_LOCK``).

A withdrawal's DELETE leaves dead row versions in the table files until (auto)VACUUM frees their space and later
rows overwrite it (``VACUUM FULL events`` rewrites the table without them), and in the WAL and base backups until
they are recycled (docs/ARCHITECTURE.md, privacy invariant 5).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from studyapp.migrations import server_pg
from studyapp.server.ingest import StorageBusy, StorageError, StudyTerms, dumps, no_study, now
from studyapp.server.shared_storage import EventRow, SharedStorage
from studyapp.server.storage import Reader
from studyapp.server.validation import check_event

# How long opening the storage waits for a first connection before it says the database cannot be reached.
CONNECT_TIMEOUT_S = 10.0
POOL_MAX = 10
# The longest a request waits for a pooled connection before it is answered 503 (well within the app's 30 s).
POOL_WAIT_S = 10.0
# Open snapshots per process: half the pool, the other half is for everything else.
MAX_SNAPSHOTS = POOL_MAX // 2
# What a refused snapshot's answer asks the client to wait (an export takes seconds, not milliseconds).
SNAPSHOT_RETRY_AFTER_S = 5
# Taken (until commit) by every transaction that inserts events, so that event numbers commit in their order: an
# export names its snapshot by its last event number, and the snapshot must hold exactly the events numbered up to
# it. Without it, two uploads' transactions could commit out of order and a snapshot see event n+1 but not n.
EVENTS_ORDER_LOCK = 0x5354_5544_5945_5654  # distinct from the migrations' server_pg.LOCK_KEY
# The batch's rows go in as one INSERT ... SELECT FROM json_to_recordset(one JSON array of rows): one round trip per
# upload, and one C-encoded parameter. (As text[] arrays per column, every quote of every payload's JSON was escaped
# for the array literal in Python, which cost the server more than everything else an upload does.)
_INSERT_EVENTS = (
    "INSERT INTO events (event_id, participant_id, kind, record_key, day, payload, received_at) "
    "SELECT event_id, participant_id, kind, record_key, day, payload, received_at FROM json_to_recordset(%s::json) "
    "AS batch(event_id text, participant_id text, kind text, record_key text, day text, payload text, "
    "received_at text) "
    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)
_ROW_FIELDS = ("event_id", "participant_id", "kind", "record_key", "day", "payload", "received_at")
# ensure_ascii off: non-ASCII text goes as UTF-8 (the contract refused lone surrogates, which no JSON text holds).
_ROWS_ENCODER = json.JSONEncoder(ensure_ascii=False, check_circular=False, separators=(",", ":"))


def shown(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if "password" in parts.query:  # libpq also takes it as a parameter: ...?password=...
        parts = parts._replace(query="")
    if parts.password is not None:
        host = parts.hostname or ""
        netloc = f"{parts.username}@{host}" if parts.username else host
        if parts.port:
            netloc += f":{parts.port}"
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


class _Row(tuple[Any, ...]):
    """A row read by position or by column name, and turned into a dict by ``dict(row)``, like ``sqlite3.Row``:
    the shared SQL code reads both backends' rows the same way."""

    _index: dict[str, int]

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


def _sqlite_like_row(cursor: psycopg.Cursor[Any]) -> Callable[[Sequence[Any]], _Row]:
    index = {column.name: i for i, column in enumerate(cursor.description or [])}

    def make(values: Sequence[Any]) -> _Row:
        row = _Row(values)
        row._index = index
        return row

    return make


class _Connection:
    """A pooled connection speaking the shared SQL: ``?`` placeholders become psycopg's ``%s`` (no statement of the
    server has a literal ``?`` or ``%``)."""

    def __init__(self, conn: psycopg.Connection[_Row]) -> None:
        self.raw = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[_Row]:
        return self.raw.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]  # our own constant text

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        with self.raw.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), params)  # type: ignore[arg-type]


class PgStorage(SharedStorage):
    _for_update = " FOR UPDATE"

    def __init__(self, url: str, *, migrate: bool = True, max_connections: int = POOL_MAX,
                 connect_timeout: float = CONNECT_TIMEOUT_S) -> None:
        self.url = url
        # The name messages use for the database (the SQLite backend's is its file path).
        self.path = shown(url)
        self._terms: tuple[str, StudyTerms] | None = None
        self.max_snapshots = max(1, max_connections // 2)
        self._snapshots = threading.BoundedSemaphore(self.max_snapshots)
        self._pool = ConnectionPool(url, min_size=1, max_size=max_connections, open=False, timeout=POOL_WAIT_S,
                                    kwargs={"autocommit": True, "row_factory": _sqlite_like_row},
                                    name="studyapp-server")
        try:
            self._pool.open(wait=True, timeout=connect_timeout)
        except PoolTimeout as exc:
            self._pool.close()
            raise StorageError(f"Cannot connect to the PostgreSQL database {self.path} within "
                               f"{connect_timeout:g}s: check the host, port, user, password and database name "
                               "in --db, and that the server is running.") from exc
        try:
            with self._pool.connection() as conn:
                tables = self._table_names(conn)
                if tables and server_pg.TABLE not in tables:
                    raise StorageError(f"{self.path} belongs to another program (no studyapp-server schema). "
                                       "Pass another --db.")
                if migrate:
                    server_pg.apply(conn)
        except BaseException:
            self._pool.close()
            raise

    # -- connections -------------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[_Connection]:
        """A pooled connection for reads (autocommit: each statement sees the latest commits)."""
        with self._pool.connection() as conn:
            yield _Connection(conn)

    @contextmanager
    def write(self) -> Iterator[_Connection]:
        """One write transaction: everything inside commits together or not at all."""
        with self._pool.connection() as conn, conn.transaction():
            yield _Connection(conn)

    def close(self) -> None:
        self._pool.close()

    @staticmethod
    def _table_names(conn: psycopg.Connection[Any]) -> list[str]:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                            "ORDER BY tablename").fetchall()
        return [r["tablename"] for r in rows]

    def table_names(self) -> list[str]:
        with self._pool.connection() as conn:
            return self._table_names(conn)

    @staticmethod
    def _json_field(name: str) -> str:
        # json, not jsonb: nothing is converted, only this field read. Both refuse a lone surrogate escape, which
        # the contract refuses at ingest (text copied from an older SQLite database must be cleaned first).
        return f"(payload::json ->> '{name}')"

    def _lock_study(self, conn: _Connection) -> None:
        conn.execute("LOCK TABLE study IN EXCLUSIVE MODE")

    # -- events ----------------------------------------------------------------------------------

    def _stored_owners(self, conn: _Connection, event_ids: list[str]) -> dict[str, str]:
        rows = conn.raw.execute("SELECT event_id, participant_id FROM events WHERE event_id = ANY(%b::text[])",
                                [event_ids])
        return {r[0]: r[1] for r in rows}

    def _insert_events(self, conn: _Connection, rows: list[EventRow]) -> set[str]:
        conn.execute("SELECT pg_advisory_xact_lock(?)", [EVENTS_ORDER_LOCK])
        batch = _ROWS_ENCODER.encode([dict(zip(_ROW_FIELDS, row, strict=True)) for row in rows])
        return {r[0] for r in conn.raw.execute(_INSERT_EVENTS, [batch])}

    def records(self, kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(participant_id, payload) of the records of one kind, in the order they were received."""
        with self.snapshot() as snapshot:
            yield from snapshot.records(kind)

    def data_version(self) -> tuple[int, int, int]:
        """Changes whenever an export would: (last event number, events, tombstones). For caching analyses."""
        with self.snapshot() as snapshot:
            return snapshot.data_version()

    def snapshot(self) -> PgSnapshot:
        """A REPEATABLE READ transaction on a pooled connection of its own (use it as a context manager); raises
        StorageBusy when ``max_snapshots`` are open already (they would take the connections uploads need)."""
        if not self._snapshots.acquire(blocking=False):
            raise StorageBusy(f"The server is busy with other exports (at most {self.max_snapshots} at once per "
                              "server process, so that participants' uploads keep their database connections); "
                              f"retry in {SNAPSHOT_RETRY_AFTER_S} seconds.", SNAPSHOT_RETRY_AFTER_S)
        return PgSnapshot(self._pool, self.path, on_release=self._snapshots.release)

    def bulk_insert_events(self, participant_id: str, rows: Iterable[tuple[str, str, dict[str, Any]]],
                           chunk: int = 50_000) -> int:
        """Insert already-checked (event_id, kind, payload) rows fast (benchmarks and imports): one COPY in one
        transaction (``chunk`` is for the SQLite backend's interface)."""
        n = 0
        received_at = now()
        with self.write() as conn, conn.raw.cursor() as cur:
            conn.execute("SELECT pg_advisory_xact_lock(?)", [EVENTS_ORDER_LOCK])
            with cur.copy("COPY events (event_id, participant_id, kind, record_key, day, payload, received_at) "
                          "FROM STDIN") as copy:
                for event_id, kind, payload in rows:
                    checked = check_event(event_id, kind, payload)
                    copy.write_row((event_id, participant_id, kind, checked.record_key, checked.day,
                                    dumps(checked.payload), received_at))
                    n += 1
        return n


class PgSnapshot(Reader):
    """One ``REPEATABLE READ`` read-only transaction on a pooled connection: every read sees the database as it was
    at the first one, however much is written meanwhile (the export's one snapshot)."""

    def __init__(self, pool: ConnectionPool[Any], path: str, on_release: Callable[[], None] | None = None) -> None:
        self.path = path
        self._pool = pool
        # Called exactly once: when the connection is back in the pool, or when none could be had.
        self._on_release = on_release
        self._closed = False
        try:
            self._raw = pool.getconn()
        except BaseException:
            self._closed = True
            if on_release is not None:
                on_release()
            raise
        try:
            self._raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            self._conn = _Connection(self._raw)
            row = self._conn.execute("SELECT * FROM study").fetchone()
            self.study: dict[str, Any] | None = dict(row) if row is not None else None
            self.last_event: int = int(self._conn.execute("SELECT coalesce(max(n), 0) FROM events").fetchone()[0])
        except BaseException:
            self._release()
            raise

    @property
    def conn(self) -> Any:
        return self._conn

    def require_study(self) -> dict[str, Any]:
        if self.study is None:
            raise no_study(self.path)
        return self.study

    def records(self, kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """As ``Reader.records``, through a server-side cursor: the rows come in chunks, not all at once."""
        sql = self._latest_sql(kind, "participant_id, payload") + " ORDER BY n"
        with self._raw.cursor(name=f"records_{kind}") as cur:
            cur.itersize = 5000
            cur.execute(sql.replace("?", "%s"), [kind])  # type: ignore[arg-type]  # our own constant text
            for participant_id, payload in cur:
                yield participant_id, json.loads(payload)

    def _release(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._raw.execute("ROLLBACK")
        except psycopg.Error:
            pass
        try:
            self._pool.putconn(self._raw)
        finally:
            if self._on_release is not None:
                self._on_release()

    def close(self) -> None:
        self._release()

    def __enter__(self) -> PgSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
