"""The storage methods both backends run with the same SQL: the study, researchers' tokens, codes and enrollment,
the frame of an upload, withdrawal and the export log.

SQL here uses ``?`` placeholders and standard statements both SQLite and PostgreSQL understand (the PostgreSQL
backend's connections translate the placeholders). A backend supplies its connections (``_read``, ``write``) and
the few parts that differ: row locks, the lookup and insert of an upload's events, what follows a withdrawal.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from studyapp.server import auth
from studyapp.server.ingest import (
    EventResult,
    ParticipantGone,
    StorageError,
    StudyTerms,
    categories_after,
    consented_categories,
    dumps,
    no_study,
    now,
    sort_batch,
    study_terms,
)
from studyapp.server.validation import RECORD_KEYS

EventRow = tuple[str, str, str, str, str | None, str, str]


def latest_sql(kind: str, what: str) -> str:
    """A SELECT of ``what`` from the events of ``kind`` (one ``?`` parameter: the kind), only the latest of each
    record for kinds with records (an edited attribute, a comparison rated after it was shown)."""
    if kind in RECORD_KEYS:
        return (f"SELECT {what} FROM events WHERE n IN "
                "(SELECT max(n) FROM events WHERE kind = ? GROUP BY participant_id, record_key)")
    return f"SELECT {what} FROM events WHERE kind = ?"


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What the shared methods use of a connection: rows read by column name."""

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Cursor: ...

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any: ...


class SharedStorage:
    path: Any
    _terms: tuple[str, StudyTerms] | None  # (protocol version, its terms)
    # Appended to a SELECT of the row an upload or a withdrawal changes: PostgreSQL locks it (" FOR UPDATE");
    # SQLite needs nothing (one writer at a time).
    _for_update = ""

    # -- what a backend supplies -------------------------------------------------------------------

    def _read(self) -> AbstractContextManager[Any]:
        """A connection for reads."""
        raise NotImplementedError

    def write(self) -> AbstractContextManager[Any]:
        """One write transaction: everything inside commits together or not at all."""
        raise NotImplementedError

    def _lock_study(self, conn: Any) -> None:
        """Make a concurrent ``init_study`` wait for this one (SQLite's single writer does already)."""

    def _stored_owners(self, conn: Any, event_ids: list[str]) -> dict[str, str]:
        """The participant of each of these event ids that is stored."""
        raise NotImplementedError

    def _insert_events(self, conn: Any, rows: list[EventRow]) -> set[str] | None:
        """Insert an upload's rows; the ids inserted, or None when all were (no other writer can interfere)."""
        raise NotImplementedError

    @staticmethod
    def _json_field(name: str) -> str:
        """SQL for the top-level field ``name`` of an event's payload (NULL when missing or JSON null)."""
        raise NotImplementedError

    def _after_withdrawal(self, participant_id: str) -> None:
        """The withdrawal is committed: clean up what the database keeps of deleted rows, where it can."""

    # -- study and researchers -----------------------------------------------------------------

    def study(self) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute("SELECT * FROM study").fetchone()
        return dict(row) if row else None

    def require_study(self) -> dict[str, Any]:
        study = self.study()
        if study is None:
            raise no_study(self.path)
        return study

    def init_study(self, *, study_id: str, title: str, version: str, protocol: str,
                   protocol_data: dict[str, Any], researcher: str = "owner") -> str:
        """Create the study and its first researcher token; returns the token (shown once)."""
        with self.write() as conn:
            self._lock_study(conn)
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
    def _add_researcher(conn: Connection, name: str) -> str:
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
        with self._read() as conn:
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
        with self.write() as conn:
            conn.executemany("INSERT INTO enrollment_codes (code_hash, created_at) VALUES (?, ?)",
                             [(auth.hash_secret(auth.normalize_code(c)), ts) for c in codes])
        return codes

    def code_counts(self) -> dict[str, int]:
        with self._read() as conn:
            row = conn.execute("SELECT count(*) AS total, count(used_at) AS used FROM enrollment_codes").fetchone()
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
            # Concurrent requests for one code: the UPDATE's row lock (or SQLite's single writer) lets one win.
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
                               f"AND last_upload_at IS NULL{self._for_update}", [code_hash]).fetchone()
            if row is None or row["claim_hash"] is None or not auth.same_hash(row["claim_hash"], claim_hash):
                return None
            conn.execute("UPDATE participants SET token_hash = ? WHERE id = ?", [auth.hash_secret(token), row["id"]])
            return row["id"], token

    def participant_for(self, token: str) -> str | None:
        wanted = auth.hash_secret(token)
        with self._read() as conn:
            row = conn.execute("SELECT id, token_hash FROM participants WHERE token_hash = ?", [wanted]).fetchone()
        if row is None or not auth.same_hash(row["token_hash"], wanted):
            return None
        return str(row["id"])

    def tombstone_for(self, token: str) -> dict[str, Any] | None:
        wanted = auth.hash_secret(token)
        with self._read() as conn:
            row = conn.execute("SELECT participant_id, token_hash, withdrawn_at FROM tombstones "
                               "WHERE token_hash = ?", [wanted]).fetchone()
        if row is None or not auth.same_hash(row["token_hash"], wanted):
            return None
        return {"participant_id": row["participant_id"], "withdrawn_at": row["withdrawn_at"]}

    # -- events ----------------------------------------------------------------------------------

    def store_events(self, participant_id: str, events: list[tuple[str, str, Any]]) -> list[EventResult]:
        """Store a batch in one transaction; per event: accepted, duplicate or rejected (with the reason)."""
        received_at = now()
        with self.write() as conn:
            # On PostgreSQL the row lock queues this participant's concurrent uploads (a retry racing the original)
            # and its withdrawal: each then sees what the one before it committed.
            participant = conn.execute(f"SELECT categories FROM participants WHERE id = ?{self._for_update}",
                                       [participant_id]).fetchone()
            if participant is None:
                raise ParticipantGone(participant_id)
            batch = sort_batch(participant_id, events, owners=self._stored_owners(conn, [e[0] for e in events]),
                               consented=consented_categories(participant["categories"]),
                               terms=lambda: self._study_terms(conn), received_at=received_at)
            if batch.rows:
                inserted = self._insert_events(conn, batch.rows)
                if inserted is not None and len(inserted) < len(batch.rows):
                    # Another participant's upload stored some of these ids since the lookup (this participant's
                    # own uploads are queued by its row lock).
                    batch.taken_meanwhile(inserted)
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
    def _count_rejections(conn: Connection, participant_id: str, rejected: Counter[tuple[str, str]], at: str) -> None:
        """Add a batch's rejected events to the participant's counts by kind and reason (upload health)."""
        conn.executemany(
            "INSERT INTO rejections (participant_id, kind, reason, events, first_at, last_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (participant_id, kind, reason) "
            "DO UPDATE SET events = rejections.events + excluded.events, last_at = excluded.last_at",
            [(participant_id, kind, reason, n, at, at) for (kind, reason), n in rejected.items()],
        )

    def _study_terms(self, conn: Connection) -> StudyTerms:
        """The study's categories and its consent documents (version -> sha256), cached per protocol version: a
        protocol published from another process (``studyapp-server update-protocol``) or worker while this one
        runs adds consent documents that its apps already show participants.

        Read on the upload's own connection: on PostgreSQL a second pooled connection, taken while the upload holds
        its first, waits until the pool gives up when every connection is held by an upload waiting the same way."""
        study = conn.execute("SELECT version, protocol_json FROM study").fetchone()
        if study is None:
            raise no_study(self.path)
        cached = self._terms
        if cached is None or cached[0] != study["version"]:
            cached = self._terms = (study["version"], study_terms(study["protocol_json"]))
        return cached[1]

    def event_ids(self, participant_id: str | None = None) -> list[str]:
        with self._read() as conn:
            if participant_id is None:
                rows = conn.execute("SELECT event_id FROM events ORDER BY n").fetchall()
            else:
                rows = conn.execute("SELECT event_id FROM events WHERE participant_id = ? ORDER BY n",
                                    [participant_id]).fetchall()
        return [r["event_id"] for r in rows]

    def count_events(self) -> int:
        with self._read() as conn:
            return int(conn.execute("SELECT count(*) AS n FROM events").fetchone()["n"])

    # -- withdrawal ----------------------------------------------------------------------------

    def withdraw(self, token: str) -> dict[str, Any] | None:
        """Delete every record of the token's participant and keep a tombstone.

        Idempotent: a repeated request (the first reply was lost) finds the tombstone and answers the
        same. None if the token belongs to no participant, withdrawn or not.
        """
        token_hash = auth.hash_secret(token)
        with self.write() as conn:
            row = conn.execute(f"SELECT id FROM participants WHERE token_hash = ?{self._for_update}",
                               [token_hash]).fetchone()
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
        self._after_withdrawal(participant_id)
        return {"participant_id": participant_id, "withdrawn_at": ts}

    # -- researchers' views ------------------------------------------------------------------------

    def compliance(self) -> list[dict[str, Any]]:
        """One row per participant (withdrawn ones from their tombstone): the researchers' overview."""
        with self._read() as conn:
            return self._compliance_rows(conn)

    def _compliance_rows(self, conn: Connection) -> list[dict[str, Any]]:
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
            for r in conn.execute(
                f"""
                SELECT p.id, p.enrolled_at, p.last_upload_at, p.consent_version,
                  (SELECT count(DISTINCT day) FROM events e WHERE e.participant_id = p.id) AS days_active,
                  (SELECT count(*) FROM events e WHERE e.participant_id = p.id) AS events,
                  (SELECT count(DISTINCT record_key) FROM events e
                     WHERE e.participant_id = p.id AND e.kind = 'comparison'
                       AND {self._json_field('rating')} IS NOT NULL) AS rated
                FROM participants p ORDER BY p.enrolled_at
                """
            )
        ]
        rows += [
            {"participant_id": r["participant_id"], "enrolled_at": None, "last_upload_at": None, "days_active": 0,
             "comparisons_rated": 0, "events": 0, "consent_version": None, "withdrawn_at": r["withdrawn_at"]}
            for r in conn.execute("SELECT participant_id, withdrawn_at FROM tombstones ORDER BY withdrawn_at")
        ]
        return rows

    def rated_comparisons_by_day(self) -> dict[str, dict[str, int]]:
        """Per participant, rated comparisons counted by the date of ``rated_at`` (as in the export: the latest
        event of each comparison)."""
        sql = latest_sql("comparison", f"participant_id, substr({self._json_field('rated_at')}, 1, 10) AS day, "
                                       f"{self._json_field('rating')} AS rating")
        counts: dict[str, dict[str, int]] = {}
        with self._read() as conn:
            found = conn.execute(f"SELECT participant_id, day, count(*) AS n FROM ({sql}) AS latest "
                                 "WHERE rating IS NOT NULL AND day IS NOT NULL GROUP BY participant_id, day",
                                 ["comparison"]).fetchall()
        for r in found:
            counts.setdefault(r["participant_id"], {})[r["day"]] = r["n"]
        return counts

    def rejections(self) -> list[dict[str, Any]]:
        """Rejected uploads of enrolled participants: one row per participant, kind and reason, with counts."""
        with self._read() as conn:
            return [dict(r) for r in conn.execute(
                "SELECT participant_id, kind, reason, events, first_at, last_at FROM rejections "
                "ORDER BY participant_id, events DESC, kind, reason")]

    def log_export(self, *, researcher: str, via: str, fmt: str, record_types: list[str], rows: int,
                   destination: str | None) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT INTO export_log (id, researcher, via, format, record_types, rows, destination, exported_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [str(uuid.uuid4()), researcher, via, fmt, dumps(record_types), rows, destination, now()],
            )

    def export_log(self) -> list[dict[str, Any]]:
        with self._read() as conn:
            return [dict(r) for r in conn.execute("SELECT * FROM export_log ORDER BY exported_at")]
