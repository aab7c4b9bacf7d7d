"""Schema of the collection server's database on PostgreSQL (the same tables as migrations/server.py for SQLite).

Ordered SQL steps, each applied once and recorded by name in ``schema_migrations``; every pending step runs in one
transaction with the record of it, so a failed migration leaves the database as it was. Append new steps at the end;
never edit one that has shipped. Tokens and enrollment codes are stored only as sha256 hashes; times are UTC
ISO-8601 text, as on SQLite, so both backends answer the same strings. A withdrawn participant leaves nothing
behind but a row in ``tombstones``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

# Serializes migrators: several server workers may start at once on one database.
LOCK_KEY = 0x5354_5544_5941_5050  # "STUDYAPP"
TABLE = "schema_migrations"

STEPS: list[tuple[str, str]] = [
    ("m001_initial", """
        -- One study per server database. protocol is the exact TOML text the researchers wrote;
        -- protocol_json is Protocol.to_dict() with consent texts inline (what participants' apps store).
        CREATE TABLE study (
            id TEXT PRIMARY KEY,
            title TEXT NOT NULL,
            version TEXT NOT NULL,
            protocol TEXT NOT NULL,
            protocol_json TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE researcher_tokens (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            revoked_at TEXT
        );
        -- One-time codes: used_at is set when a code is exchanged; no link to the participant is kept.
        CREATE TABLE enrollment_codes (
            code_hash TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            used_at TEXT
        );
        CREATE TABLE participants (
            id TEXT PRIMARY KEY,
            token_hash TEXT NOT NULL UNIQUE,
            -- the code used and the hash of the app's one-time claim (a repeated enrollment, see Storage.enroll)
            code_hash TEXT UNIQUE,
            claim_hash TEXT,
            enrolled_at TEXT NOT NULL,
            consent_version TEXT,
            consent_sha256 TEXT,
            categories TEXT,
            last_upload_at TEXT
        );
        -- n: the order events were received. event_id is unique across participants (as on SQLite): an id another
        -- participant's record holds is refused, and INSERT ... ON CONFLICT (event_id) DO NOTHING makes a batch
        -- retried concurrently harmless (exactly once). payload is the JSON text as received and checked (TEXT,
        -- not jsonb: it keeps the exact text, including escaped lone surrogates jsonb refuses).
        CREATE TABLE events (
            n BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            event_id TEXT NOT NULL UNIQUE,
            participant_id TEXT NOT NULL REFERENCES participants(id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            record_key TEXT NOT NULL,
            day TEXT,
            payload TEXT NOT NULL,
            received_at TEXT NOT NULL
        );
        CREATE INDEX idx_events_participant ON events(participant_id, kind);
        CREATE INDEX idx_events_record ON events(kind, participant_id, record_key, n);
        CREATE TABLE tombstones (
            participant_id TEXT PRIMARY KEY,
            token_hash TEXT NOT NULL UNIQUE,
            withdrawn_at TEXT NOT NULL
        );
        CREATE TABLE export_log (
            id TEXT PRIMARY KEY,
            researcher TEXT NOT NULL,
            via TEXT NOT NULL,
            format TEXT NOT NULL,
            record_types TEXT NOT NULL,
            rows BIGINT NOT NULL,
            destination TEXT,
            exported_at TEXT NOT NULL
        );
    """),
    ("m002_rejections", """
        -- Rejected uploads, counted per participant, event kind and reason (the researchers' upload health).
        CREATE TABLE rejections (
            participant_id TEXT NOT NULL REFERENCES participants(id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            reason TEXT NOT NULL,
            events BIGINT NOT NULL,
            first_at TEXT NOT NULL,
            last_at TEXT NOT NULL,
            PRIMARY KEY (participant_id, kind, reason)
        );
    """),
    ("m003_gateway", """
        -- The model gateway (see migrations/server.py m003_gateway): upstream settings (the NAME of the key's
        -- environment variable or the PATH of its file, never the key), the budgets, and counts and timings only.
        CREATE TABLE gateway_models (
            name TEXT PRIMARY KEY,
            base_url TEXT NOT NULL,
            upstream_model TEXT NOT NULL,
            api_key_env TEXT,
            api_key_file TEXT,
            added_at TEXT NOT NULL
        );
        CREATE TABLE gateway_limits (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            daily_tokens BIGINT NOT NULL,
            requests_per_minute BIGINT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE gateway_usage (
            participant_id TEXT NOT NULL REFERENCES participants(id) ON DELETE CASCADE,
            day TEXT NOT NULL,
            role TEXT NOT NULL,
            model TEXT NOT NULL,
            requests BIGINT NOT NULL,
            prompt_tokens BIGINT NOT NULL,
            completion_tokens BIGINT NOT NULL,
            errors BIGINT NOT NULL,
            estimated BIGINT NOT NULL,
            latency_ms_total BIGINT NOT NULL,
            latency_ms_max BIGINT NOT NULL,
            PRIMARY KEY (participant_id, day, role, model)
        );
        CREATE TABLE gateway_rate (
            participant_id TEXT PRIMARY KEY REFERENCES participants(id) ON DELETE CASCADE,
            minute TEXT NOT NULL,
            requests BIGINT NOT NULL
        );
    """),
    ("m004_conditions", """
        -- Randomized conditions (see migrations/server.py m004_conditions): the participant's condition with the
        -- block and position of its allocation, the seed every block's order is drawn from, and every allocation
        -- made (without a participant id, so it outlives a withdrawal unlinked).
        ALTER TABLE participants ADD COLUMN condition TEXT;
        ALTER TABLE participants ADD COLUMN condition_block BIGINT;
        ALTER TABLE participants ADD COLUMN condition_position BIGINT;
        CREATE TABLE allocation (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            seed BIGINT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE allocation_slots (
            block BIGINT NOT NULL,
            position BIGINT NOT NULL,
            block_size BIGINT NOT NULL,
            conditions TEXT NOT NULL,
            condition TEXT NOT NULL,
            assigned_at TEXT NOT NULL,
            PRIMARY KEY (block, position)
        );
    """),
]


def applied(conn: psycopg.Connection) -> list[str]:
    """The names of the steps applied to the database, in the order they were applied."""
    from psycopg.rows import tuple_row

    # Plain tuples whatever row factory the connection has.
    with conn.cursor(row_factory=tuple_row) as cur:
        exists = cur.execute("SELECT to_regclass(%s) IS NOT NULL", [TABLE]).fetchone()
        if not exists or not exists[0]:
            return []
        return [r[0] for r in cur.execute(f"SELECT name FROM {TABLE} ORDER BY applied_at, name").fetchall()]


def apply(conn: psycopg.Connection) -> list[str]:
    """Apply the pending steps in one transaction (``conn`` in autocommit mode); returns their names."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
        conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (name TEXT PRIMARY KEY, "
                     "applied_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())")
        done = set(applied(conn))
        pending = [(name, sql) for name, sql in STEPS if name not in done]
        for name, sql in pending:
            conn.execute(sql)  # type: ignore[arg-type]  # our own constant text, several statements
            conn.execute(f"INSERT INTO {TABLE} (name) VALUES (%s)", [name])
    return [name for name, _ in pending]
