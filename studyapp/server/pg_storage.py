"""The collection server's database on PostgreSQL: the same public interface as the SQLite ``Storage`` (so far the
study, researchers' tokens, codes and enrollment, ingest, withdrawal and the export log; see docs/ARCHITECTURE.md).

Connections come from a psycopg_pool pool: each call borrows one for one transaction. Unlike SQLite there is no
process-wide write lock: PostgreSQL serializes what must be serialized with row locks (a participant's uploads and
withdrawal take ``FOR UPDATE`` on its row) and the unique key on ``event_id`` with ``ON CONFLICT DO NOTHING`` keeps
ingest exactly once across transactions, threads and worker processes.

A withdrawal's DELETE leaves dead row versions in the table files until (auto)VACUUM frees their space and later
rows overwrite it (``VACUUM FULL events`` rewrites the table without them), and in the WAL and base backups until
they are recycled (docs/ARCHITECTURE.md, privacy invariant 5).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from studyapp.migrations import server_pg
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
from studyapp.server.validation import check_event

# How long opening the storage waits for a first connection before it says the database cannot be reached.
CONNECT_TIMEOUT_S = 10.0
POOL_MAX = 10
# The batch's rows go in as one INSERT ... SELECT FROM unnest(arrays): one round trip per upload.
_INSERT_EVENTS = (
    "INSERT INTO events (event_id, participant_id, kind, record_key, day, payload, received_at) "
    "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[]) "
    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)


def shown(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


class PgStorage:
    def __init__(self, url: str, *, migrate: bool = True, max_connections: int = POOL_MAX,
                 connect_timeout: float = CONNECT_TIMEOUT_S) -> None:
        self.url = url
        # The name messages use for the database (the SQLite backend's is its file path).
        self.path = shown(url)
        self._terms: StudyTerms | None = None
        self._pool = ConnectionPool(url, min_size=1, max_size=max_connections, open=False,
                                    kwargs={"autocommit": True, "row_factory": dict_row},
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
    def read(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A pooled connection for reads (autocommit: each statement sees the latest commits)."""
        with self._pool.connection() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """One write transaction: everything inside commits together or not at all."""
        with self._pool.connection() as conn, conn.transaction():
            yield conn

    def close(self) -> None:
        self._pool.close()

    @staticmethod
    def _table_names(conn: psycopg.Connection[Any]) -> list[str]:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                            "ORDER BY tablename").fetchall()
        return [r["tablename"] for r in rows]

    def table_names(self) -> list[str]:
        with self.read() as conn:
            return self._table_names(conn)

    # -- study and researchers -----------------------------------------------------------------

    def study(self) -> dict[str, Any] | None:
        with self.read() as conn:
            return conn.execute("SELECT * FROM study").fetchone()

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
            # Two concurrent inits: the second waits here and then finds the first one's study.
            conn.execute("LOCK TABLE study IN EXCLUSIVE MODE")
            if conn.execute("SELECT 1 FROM study").fetchone():
                raise StorageError(f"{self.path} already holds a study. Use another --db for a new study.")
            conn.execute("INSERT INTO study (id, title, version, protocol, protocol_json, created_at) "
                         "VALUES (%s, %s, %s, %s, %s, %s)",
                         [study_id, title, version, protocol, json.dumps(protocol_data, sort_keys=True), now()])
            return self._add_researcher(conn, researcher)

    def update_protocol(self, *, study_id: str, title: str, version: str, protocol: str,
                        protocol_data: dict[str, Any]) -> str:
        """Publish a new version of the study's protocol; returns the version it replaced."""
        with self.write() as conn:
            study = conn.execute("SELECT id, version FROM study FOR UPDATE").fetchone()
            if study is None:
                raise NotInitialized(f"{self.path} holds no study yet. "
                                     f"Run `studyapp-server init --protocol FILE --db {self.path}`.")
            if study_id != study["id"]:
                raise StorageError(f"This protocol is for study {study_id!r}, but {self.path} holds study "
                                   f"{study['id']!r}. Use the file of that study.")
            if version == study["version"]:
                raise StorageError(f"Study {study_id!r} is already at version {version!r}: raise [study] version "
                                   "in the file to publish a change.")
            conn.execute("UPDATE study SET title = %s, version = %s, protocol = %s, protocol_json = %s",
                         [title, version, protocol, json.dumps(protocol_data, sort_keys=True)])
        self._terms = None
        return str(study["version"])

    def add_researcher(self, name: str) -> str:
        with self.write() as conn:
            return self._add_researcher(conn, name)

    @staticmethod
    def _add_researcher(conn: psycopg.Connection[Any], name: str) -> str:
        token = auth.new_token()
        conn.execute("INSERT INTO researcher_tokens (id, name, token_hash, created_at) VALUES (%s, %s, %s, %s)",
                     [str(uuid.uuid4()), name, auth.hash_secret(token), now()])
        return token

    def researcher_for(self, token: str) -> str | None:
        """The researcher's name for a token, or None."""
        return self.researcher_for_hash(auth.hash_secret(token))

    def researcher_for_hash(self, wanted: str) -> str | None:
        """The researcher's name for a token's hash, or None if the token is unknown or revoked."""
        found = None
        with self.read() as conn:
            rows = conn.execute("SELECT name, token_hash FROM researcher_tokens WHERE revoked_at IS NULL").fetchall()
        # Few rows: compare every hash in constant time rather than looking one up.
        for row in rows:
            if auth.same_hash(row["token_hash"], wanted):
                found = row["name"]
        return found

    # -- enrollment ------------------------------------------------------------------------------

    def create_codes(self, n: int) -> list[str]:
        self.require_study()
        codes = [auth.new_code() for _ in range(n)]
        ts = now()
        with self.write() as conn, conn.cursor() as cur:
            cur.executemany("INSERT INTO enrollment_codes (code_hash, created_at) VALUES (%s, %s)",
                            [(auth.hash_secret(auth.normalize_code(c)), ts) for c in codes])
        return codes

    def code_counts(self) -> dict[str, int]:
        with self.read() as conn:
            row = conn.execute("SELECT count(*) AS total, count(used_at) AS used FROM enrollment_codes").fetchone()
        assert row is not None
        return {"total": row["total"], "used": row["used"], "unused": row["total"] - row["used"]}

    def enroll(self, code: str, claim: str | None = None) -> tuple[str, str] | None:
        """Exchange a one-time code for (participant_id, token); None if the code is unknown or used.

        A repeated request with the same code and claim, before any upload, gets the same participant id and a
        fresh token (as ``Storage.enroll``). The UPDATE's row lock makes a code usable once however many requests
        race for it.
        """
        code_hash = auth.hash_secret(auth.normalize_code(code))
        claim_hash = auth.hash_secret(claim) if claim else None
        ts = now()
        token = auth.new_token()
        with self.write() as conn:
            cur = conn.execute("UPDATE enrollment_codes SET used_at = %s WHERE code_hash = %s AND used_at IS NULL",
                               [ts, code_hash])
            if cur.rowcount == 1:
                participant_id = str(uuid.uuid4())
                conn.execute("INSERT INTO participants (id, token_hash, code_hash, claim_hash, enrolled_at) "
                             "VALUES (%s, %s, %s, %s, %s)",
                             [participant_id, auth.hash_secret(token), code_hash, claim_hash, ts])
                return participant_id, token
            if claim_hash is None:
                return None
            row = conn.execute("SELECT id, claim_hash FROM participants WHERE code_hash = %s "
                               "AND last_upload_at IS NULL FOR UPDATE", [code_hash]).fetchone()
            if row is None or row["claim_hash"] is None or not auth.same_hash(row["claim_hash"], claim_hash):
                return None
            conn.execute("UPDATE participants SET token_hash = %s WHERE id = %s",
                         [auth.hash_secret(token), row["id"]])
            return row["id"], token

    def participant_for(self, token: str) -> str | None:
        wanted = auth.hash_secret(token)
        with self.read() as conn:
            row = conn.execute("SELECT id, token_hash FROM participants WHERE token_hash = %s", [wanted]).fetchone()
        if row is None or not auth.same_hash(row["token_hash"], wanted):
            return None
        return str(row["id"])

    def tombstone_for(self, token: str) -> dict[str, Any] | None:
        wanted = auth.hash_secret(token)
        with self.read() as conn:
            row = conn.execute("SELECT participant_id, token_hash, withdrawn_at FROM tombstones "
                               "WHERE token_hash = %s", [wanted]).fetchone()
        if row is None or not auth.same_hash(row["token_hash"], wanted):
            return None
        return {"participant_id": row["participant_id"], "withdrawn_at": row["withdrawn_at"]}

    # -- events ----------------------------------------------------------------------------------

    def store_events(self, participant_id: str, events: list[tuple[str, str, Any]]) -> list[EventResult]:
        """Store a batch in one transaction; per event: accepted, duplicate or rejected (with the reason)."""
        received_at = now()
        with self.write() as conn:
            # The row lock queues this participant's concurrent uploads (a retry racing the original) and its
            # withdrawal: each then sees what the one before it committed.
            participant = conn.execute("SELECT categories FROM participants WHERE id = %s FOR UPDATE",
                                       [participant_id]).fetchone()
            if participant is None:
                raise ParticipantGone(participant_id)
            ids = [e[0] for e in events]
            owners = {r["event_id"]: r["participant_id"] for r in conn.execute(
                "SELECT event_id, participant_id FROM events WHERE event_id = ANY(%s)", [ids]).fetchall()}
            batch = sort_batch(participant_id, events, owners=owners,
                               consented=consented_categories(participant["categories"]),
                               terms=self._study_terms, received_at=received_at)
            if batch.rows:
                columns = [list(column) for column in zip(*batch.rows, strict=True)]
                inserted = {r["event_id"] for r in conn.execute(_INSERT_EVENTS, columns)}
                if len(inserted) < len(batch.rows):
                    # Another participant's upload stored some of these ids since the lookup above (this
                    # participant's own uploads are queued by its row lock).
                    batch.taken_meanwhile(inserted)
                conn.execute("UPDATE participants SET last_upload_at = %s WHERE id = %s",
                             [received_at, participant_id])
            if batch.consent is not None:
                consent = batch.consent
                conn.execute("UPDATE participants SET consent_version = %s, consent_sha256 = %s, categories = %s "
                             "WHERE id = %s",
                             [consent["consent_version"], consent["consent_sha256"],
                              dumps(categories_after(consent)), participant_id])
            if batch.rejected:
                self._count_rejections(conn, participant_id, batch.rejected, received_at)
        return batch.results

    @staticmethod
    def _count_rejections(conn: psycopg.Connection[Any], participant_id: str, rejected: Counter[tuple[str, str]],
                          at: str) -> None:
        """Add a batch's rejected events to the participant's counts by kind and reason (upload health)."""
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO rejections (participant_id, kind, reason, events, first_at, last_at) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (participant_id, kind, reason) "
                "DO UPDATE SET events = rejections.events + excluded.events, last_at = excluded.last_at",
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
        """Insert already-checked (event_id, kind, payload) rows fast (benchmarks and imports), with COPY."""
        n = 0
        received_at = now()
        with self.write() as conn, conn.cursor() as cur, cur.copy(
                "COPY events (event_id, participant_id, kind, record_key, day, payload, received_at) "
                "FROM STDIN") as copy:
            for event_id, kind, payload in rows:
                checked = check_event(event_id, kind, payload)
                copy.write_row((event_id, participant_id, kind, checked.record_key, checked.day,
                                dumps(checked.payload), received_at))
                n += 1
        return n

    def event_ids(self, participant_id: str | None = None) -> list[str]:
        with self.read() as conn:
            if participant_id is None:
                rows = conn.execute("SELECT event_id FROM events ORDER BY n").fetchall()
            else:
                rows = conn.execute("SELECT event_id FROM events WHERE participant_id = %s ORDER BY n",
                                    [participant_id]).fetchall()
        return [r["event_id"] for r in rows]

    def count_events(self) -> int:
        with self.read() as conn:
            row = conn.execute("SELECT count(*) AS n FROM events").fetchone()
        assert row is not None
        return int(row["n"])

    # -- withdrawal ----------------------------------------------------------------------------

    def withdraw(self, token: str) -> dict[str, Any] | None:
        """Delete every record of the token's participant and keep a tombstone.

        Idempotent: a repeated request finds the tombstone and answers the same. None if the token belongs to no
        participant, withdrawn or not. The deleted rows' space is reclaimed by (auto)VACUUM (see the module).
        """
        token_hash = auth.hash_secret(token)
        with self.write() as conn:
            row = conn.execute("SELECT id FROM participants WHERE token_hash = %s FOR UPDATE",
                               [token_hash]).fetchone()
            if row is None:
                return conn.execute("SELECT participant_id, withdrawn_at FROM tombstones WHERE token_hash = %s",
                                    [token_hash]).fetchone()
            participant_id = row["id"]
            ts = now()
            conn.execute("DELETE FROM events WHERE participant_id = %s", [participant_id])
            conn.execute("DELETE FROM rejections WHERE participant_id = %s", [participant_id])
            conn.execute("DELETE FROM participants WHERE id = %s", [participant_id])
            conn.execute("INSERT INTO tombstones (participant_id, token_hash, withdrawn_at) VALUES (%s, %s, %s)",
                         [participant_id, token_hash, ts])
        return {"participant_id": participant_id, "withdrawn_at": ts}

    # -- researchers' views ------------------------------------------------------------------------

    def rejections(self) -> list[dict[str, Any]]:
        """Rejected uploads of enrolled participants: one row per participant, kind and reason, with counts."""
        with self.read() as conn:
            return conn.execute(
                "SELECT participant_id, kind, reason, events, first_at, last_at FROM rejections "
                "ORDER BY participant_id, events DESC, kind, reason").fetchall()

    def log_export(self, *, researcher: str, via: str, fmt: str, record_types: list[str], rows: int,
                   destination: str | None) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT INTO export_log (id, researcher, via, format, record_types, rows, destination, exported_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [str(uuid.uuid4()), researcher, via, fmt, dumps(record_types), rows, destination, now()],
            )

    def export_log(self) -> list[dict[str, Any]]:
        with self.read() as conn:
            return conn.execute("SELECT * FROM export_log ORDER BY exported_at").fetchall()
