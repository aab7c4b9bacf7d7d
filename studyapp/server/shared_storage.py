"""The storage methods both backends run with the same SQL: the study, researchers' tokens, codes and enrollment,
the frame of an upload, withdrawal and the export log.

SQL here uses ``?`` placeholders and standard statements both SQLite and PostgreSQL understand (the PostgreSQL
backend's connections translate the placeholders). A backend supplies its connections (``_read``, ``write``) and
the few parts that differ: row locks, the lookup and insert of an upload's events, what follows a withdrawal.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
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
from studyapp.study.conditions import allocation_scheme, block_order

EventRow = tuple[str, str, str, str, str | None, str, str]

# The model gateway's budgets per participant when the researchers set none (`studyapp-server models limits`).
DEFAULT_DAILY_TOKENS = 200_000
DEFAULT_REQUESTS_PER_MINUTE = 30
# How `usage --by ...` groups the gateway's counts: the columns named.
USAGE_GROUPS = {"participant": "participant_id", "role": "role", "day": "day", "model": "model"}


# The largest seed the allocation takes: an integer column on both backends (SQLite INTEGER, PostgreSQL BIGINT).
MAX_SEED = 2**63 - 1


def new_seed() -> int:
    return secrets.randbits(63)


@dataclass(frozen=True)
class Assignment:
    """A participant's condition and where the allocation gave it (block and position count from 1)."""

    condition: str
    block: int
    position: int


def next_slot(last: tuple[int, int, int, str] | None, names: tuple[str, ...], block_size: int) -> tuple[int, int]:
    """The block and position after the ``last`` allocation (block, position, block_size, conditions as JSON).
    A block is finished before the next starts; one begun under other conditions or another block size (a new
    protocol) is left as it is, and the next enrollment starts a new block."""
    if last is None:
        return 1, 1
    block, position, last_size, last_names = last
    if last_size == block_size and json.loads(last_names) == list(names) and position < block_size:
        return block, position + 1
    return block + 1, 1


@dataclass(frozen=True)
class GatewayLimits:
    daily_tokens: int
    requests_per_minute: int


@dataclass(frozen=True)
class Admission:
    """What the gateway may do with one participant's request: ``refused`` is None (go ahead), "withdrawn",
    "unknown" (no such participant or token), "no_consent" (no consent record received yet), "daily_tokens" or
    "requests_per_minute"."""

    refused: str | None
    participant_id: str | None = None
    limits: GatewayLimits | None = None
    used_tokens: int = 0


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
                   protocol_data: dict[str, Any], researcher: str = "owner", seed: int | None = None) -> str:
        """Create the study and its first researcher token; returns the token (shown once).

        ``seed`` (default: a new random one) is recorded for the allocation of conditions, so that every block's
        order can be reproduced from it; a study without conditions keeps one too, for a protocol that adds them."""
        with self.write() as conn:
            self._lock_study(conn)
            if conn.execute("SELECT 1 FROM study").fetchone():
                raise StorageError(f"{self.path} already holds a study. Use another --db for a new study.")
            conn.execute("INSERT INTO study (id, title, version, protocol, protocol_json, created_at) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         [study_id, title, version, protocol, json.dumps(protocol_data, sort_keys=True), now()])
            conn.execute("INSERT INTO allocation (id, seed, created_at) VALUES (1, ?, ?) ON CONFLICT (id) DO NOTHING",
                         [new_seed() if seed is None else seed, now()])
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
                assignment = self._assign(conn, ts)
                conn.execute("INSERT INTO participants (id, token_hash, code_hash, claim_hash, enrolled_at, condition, "
                             "condition_block, condition_position) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             [participant_id, auth.hash_secret(token), code_hash, claim_hash, ts,
                              *((assignment.condition, assignment.block, assignment.position) if assignment
                                else (None, None, None))])
                return participant_id, token
            if claim_hash is None:
                return None
            row = conn.execute("SELECT id, claim_hash FROM participants WHERE code_hash = ? "
                               f"AND last_upload_at IS NULL{self._for_update}", [code_hash]).fetchone()
            if row is None or row["claim_hash"] is None or not auth.same_hash(row["claim_hash"], claim_hash):
                return None
            conn.execute("UPDATE participants SET token_hash = ? WHERE id = ?", [auth.hash_secret(token), row["id"]])
            return row["id"], token

    def _assign(self, conn: Connection, ts: str) -> Assignment | None:
        """The next allocation of the study's conditions (None: it has none), recorded in this transaction.

        The allocation row's lock (PostgreSQL: FOR UPDATE; SQLite: its single writer) makes concurrent enrollments,
        in any worker process, take their slots one after another, so every block stays balanced."""
        study = conn.execute("SELECT protocol_json FROM study").fetchone()
        scheme = allocation_scheme(json.loads(study["protocol_json"])) if study is not None else None
        if scheme is None:
            return None
        names, block_size = scheme
        # A database made before conditions existed has no seed yet: the first allocation makes one.
        conn.execute("INSERT INTO allocation (id, seed, created_at) VALUES (1, ?, ?) ON CONFLICT (id) DO NOTHING",
                     [new_seed(), ts])
        seed = int(conn.execute(f"SELECT seed FROM allocation WHERE id = 1{self._for_update}").fetchone()["seed"])
        last = conn.execute("SELECT block, position, block_size, conditions FROM allocation_slots "
                            "ORDER BY block DESC, position DESC LIMIT 1").fetchone()
        block, position = next_slot(
            (int(last["block"]), int(last["position"]), int(last["block_size"]), last["conditions"]) if last else None,
            names, block_size)
        condition = block_order(seed, block, names, block_size)[position - 1]
        conn.execute("INSERT INTO allocation_slots (block, position, block_size, conditions, condition, assigned_at) "
                     "VALUES (?, ?, ?, ?, ?, ?)",
                     [block, position, block_size, json.dumps(list(names)), condition, ts])
        return Assignment(condition, block, position)

    def allocation(self) -> dict[str, Any]:
        """The randomization's record: the seed and every allocation made, in order (for an audit)."""
        with self._read() as conn:
            row = conn.execute("SELECT seed, created_at FROM allocation WHERE id = 1").fetchone()
            slots = [dict(r) for r in conn.execute(
                "SELECT block, position, block_size, conditions, condition, assigned_at FROM allocation_slots "
                "ORDER BY block, position")]
        for slot in slots:
            slot["conditions"] = json.loads(slot["conditions"])
        return {"seed": int(row["seed"]) if row else None, "slots": slots}

    def condition_of(self, participant_id: str) -> str | None:
        with self._read() as conn:
            row = conn.execute("SELECT condition FROM participants WHERE id = ?", [participant_id]).fetchone()
        return row["condition"] if row else None

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
            conn.execute("DELETE FROM gateway_usage WHERE participant_id = ?", [participant_id])
            conn.execute("DELETE FROM gateway_rate WHERE participant_id = ?", [participant_id])
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
                "condition": r["condition"],
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
                SELECT p.id, p.condition, p.enrolled_at, p.last_upload_at, p.consent_version,
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
            {"participant_id": r["participant_id"], "condition": None, "enrolled_at": None, "last_upload_at": None,
             "days_active": 0, "comparisons_rated": 0, "events": 0, "consent_version": None,
             "withdrawn_at": r["withdrawn_at"]}
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

    # -- the model gateway -------------------------------------------------------------------------

    def gateway_models(self) -> list[dict[str, Any]]:
        """The models the gateway serves, by name (settings only: a key is never stored, only where it is)."""
        with self._read() as conn:
            return [dict(r) for r in conn.execute("SELECT * FROM gateway_models ORDER BY name")]

    def gateway_model(self, name: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute("SELECT * FROM gateway_models WHERE name = ?", [name]).fetchone()
        return dict(row) if row is not None else None

    def add_gateway_model(self, *, name: str, base_url: str, upstream_model: str, api_key_env: str | None,
                          api_key_file: str | None) -> None:
        with self.write() as conn:
            if conn.execute("SELECT 1 FROM gateway_models WHERE name = ?", [name]).fetchone():
                raise StorageError(f"The gateway already serves a model named {name!r}. Remove it first "
                                   f"(studyapp-server models remove {name}) to change its settings.")
            conn.execute("INSERT INTO gateway_models (name, base_url, upstream_model, api_key_env, api_key_file, "
                         "added_at) VALUES (?, ?, ?, ?, ?, ?)",
                         [name, base_url, upstream_model, api_key_env, api_key_file, now()])

    def remove_gateway_model(self, name: str) -> bool:
        """Stop serving ``name``; False if there was no such model. Its usage counts stay."""
        with self.write() as conn:
            return conn.execute("DELETE FROM gateway_models WHERE name = ?", [name]).rowcount > 0

    def gateway_limits(self) -> GatewayLimits:
        with self._read() as conn:
            return self._limits(conn)

    @staticmethod
    def _limits(conn: Connection) -> GatewayLimits:
        row = conn.execute("SELECT daily_tokens, requests_per_minute FROM gateway_limits WHERE id = 1").fetchone()
        if row is None:
            return GatewayLimits(DEFAULT_DAILY_TOKENS, DEFAULT_REQUESTS_PER_MINUTE)
        return GatewayLimits(int(row["daily_tokens"]), int(row["requests_per_minute"]))

    def set_gateway_limits(self, *, daily_tokens: int | None = None,
                           requests_per_minute: int | None = None) -> GatewayLimits:
        """Change either budget (None keeps it); returns the budgets now in force, for every worker at once."""
        with self.write() as conn:
            current = self._limits(conn)
            limits = GatewayLimits(current.daily_tokens if daily_tokens is None else daily_tokens,
                                   current.requests_per_minute if requests_per_minute is None
                                   else requests_per_minute)
            conn.execute("INSERT INTO gateway_limits (id, daily_tokens, requests_per_minute, updated_at) "
                         "VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET daily_tokens = excluded.daily_tokens, "
                         "requests_per_minute = excluded.requests_per_minute, updated_at = excluded.updated_at",
                         [limits.daily_tokens, limits.requests_per_minute, now()])
        return limits

    def gateway_admit(self, token: str, *, day: str, minute: str) -> Admission:
        """Admit one request of the participant holding ``token`` to the gateway, or say why not.

        One write transaction: the participant must still be enrolled (on PostgreSQL its row lock orders this
        after a concurrent withdrawal), today's tokens (UTC ``day``) must be under the daily budget, and the
        request must fit in this UTC ``minute``'s rate, which it then uses. The counters live in the database, so
        the limits hold across every worker process."""
        token_hash = auth.hash_secret(token)
        with self.write() as conn:
            row = conn.execute("SELECT id, token_hash, categories FROM participants "
                               f"WHERE token_hash = ?{self._for_update}", [token_hash]).fetchone()
            if row is None or not auth.same_hash(row["token_hash"], token_hash):
                gone = conn.execute("SELECT 1 FROM tombstones WHERE token_hash = ?", [token_hash]).fetchone()
                return Admission("withdrawn" if gone else "unknown")
            participant_id = str(row["id"])
            if row["categories"] is None:
                # The consent document tells participants their model calls pass through this server: none do
                # before the server has received their consent record.
                return Admission("no_consent", participant_id)
            limits = self._limits(conn)
            used = int(conn.execute("SELECT coalesce(sum(prompt_tokens + completion_tokens), 0) AS used "
                                    "FROM gateway_usage WHERE participant_id = ? AND day = ?",
                                    [participant_id, day]).fetchone()["used"])
            if used >= limits.daily_tokens:
                return Admission("daily_tokens", participant_id, limits, used)
            # One statement both checks and counts: a new minute starts at 1; within the minute the row changes
            # only while under the limit, so no row comes back when the request does not fit.
            admitted = conn.execute(
                "INSERT INTO gateway_rate (participant_id, minute, requests) VALUES (?, ?, 1) "
                "ON CONFLICT (participant_id) DO UPDATE SET "
                "requests = CASE WHEN gateway_rate.minute = excluded.minute THEN gateway_rate.requests + 1 ELSE 1 END, "
                "minute = excluded.minute "
                "WHERE gateway_rate.minute <> excluded.minute OR gateway_rate.requests < ? "
                "RETURNING requests",
                [participant_id, minute, limits.requests_per_minute]).fetchone()
            if admitted is None:
                return Admission("requests_per_minute", participant_id, limits, used)
            return Admission(None, participant_id, limits, used)

    def record_gateway_usage(self, participant_id: str, *, day: str, role: str, model: str, prompt_tokens: int,
                             completion_tokens: int, error: bool, estimated: bool, latency_ms: int) -> None:
        """Add one request's counts. Nothing is added for a participant who withdrew while it ran."""
        with self.write() as conn:
            # INSERT ... SELECT from participants: no row (and no foreign-key error) once the participant is gone.
            conn.execute(
                "INSERT INTO gateway_usage (participant_id, day, role, model, requests, prompt_tokens, "
                "completion_tokens, errors, estimated, latency_ms_total, latency_ms_max) "
                "SELECT id, ?, ?, ?, 1, ?, ?, ?, ?, ?, ? FROM participants WHERE id = ? "
                "ON CONFLICT (participant_id, day, role, model) DO UPDATE SET "
                "requests = gateway_usage.requests + 1, "
                "prompt_tokens = gateway_usage.prompt_tokens + excluded.prompt_tokens, "
                "completion_tokens = gateway_usage.completion_tokens + excluded.completion_tokens, "
                "errors = gateway_usage.errors + excluded.errors, "
                "estimated = gateway_usage.estimated + excluded.estimated, "
                "latency_ms_total = gateway_usage.latency_ms_total + excluded.latency_ms_total, "
                "latency_ms_max = CASE WHEN excluded.latency_ms_max > gateway_usage.latency_ms_max "
                "THEN excluded.latency_ms_max ELSE gateway_usage.latency_ms_max END",
                [day, role, model, prompt_tokens, completion_tokens, int(error), int(estimated), latency_ms,
                 latency_ms, participant_id])

    def gateway_usage(self, by: Sequence[str] = ("participant", "role", "day", "model")) -> list[dict[str, Any]]:
        """The gateway's counts summed over everything but the ``by`` groups (participant, role, day, model), with
        the mean latency; ordered by the groups."""
        columns = [USAGE_GROUPS[g] for g in by]
        keys = ", ".join(columns)
        select = f"{keys}, " if keys else ""
        group = f" GROUP BY {keys} ORDER BY {keys}" if keys else ""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {select}sum(requests) AS requests, sum(prompt_tokens) AS prompt_tokens, "
                "sum(completion_tokens) AS completion_tokens, sum(errors) AS errors, sum(estimated) AS estimated, "
                "sum(latency_ms_total) AS latency_ms_total, max(latency_ms_max) AS latency_ms_max "
                f"FROM gateway_usage{group}").fetchall()
        out = []
        for r in rows:
            row = dict(r)
            if row["requests"] is None:
                continue  # no usage at all: the sums of no rows
            row = {k: (int(v) if k not in columns and v is not None else v) for k, v in row.items()}
            row["latency_ms_mean"] = round(row["latency_ms_total"] / row["requests"]) if row["requests"] else 0
            out.append(row)
        return out
