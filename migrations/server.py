"""Schema of the collection server's database (migration set "studyapp-server").

Every schema change is a new function here, appended at the end; never edit one that has shipped.
Tokens and enrollment codes are stored only as sha256 hashes. Times are UTC ISO-8601.
A withdrawn participant leaves nothing behind but a row in ``tombstones``.
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("studyapp-server")


@migrations()
def m001_initial(db: Database) -> None:
    # One study per server database. protocol is the exact TOML text the researchers wrote;
    # protocol_json is Protocol.to_dict() with consent texts inline (what participants' apps store).
    db.execute(
        """
        CREATE TABLE study (
            id TEXT PRIMARY KEY,
            title TEXT NOT NULL,
            version TEXT NOT NULL,
            protocol TEXT NOT NULL,
            protocol_json TEXT NOT NULL,
            created_at TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE researcher_tokens (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            revoked_at TEXT
        )
        """
    )
    # One-time codes: used_at is set when a code is exchanged. No link to the participant is kept,
    # so a withdrawal has nothing to clean up here.
    db.execute(
        """
        CREATE TABLE enrollment_codes (
            code_hash TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            used_at TEXT
        )
        """
    )
    db.execute(
        """
        CREATE TABLE participants (
            id TEXT PRIMARY KEY,
            token_hash TEXT NOT NULL UNIQUE,
            -- the code used and the hash of the app's one-time claim: an enrollment whose reply was lost
            -- can be repeated by the same app (same code and claim) without spending a second code
            code_hash TEXT UNIQUE,
            claim_hash TEXT,
            enrolled_at TEXT NOT NULL,
            consent_version TEXT,
            consent_sha256 TEXT,
            categories TEXT,
            last_upload_at TEXT
        )
        """
    )
    # n is an explicit INTEGER PRIMARY KEY: the order events were received, stable across VACUUM.
    # record_key names the record an event describes (e.g. the message id), so the export keeps
    # the latest version of each record; day is the participant-side date of the event (days active),
    # null for kinds without a time of their own (relevance labels, judge verdicts).
    db.execute(
        """
        CREATE TABLE events (
            n INTEGER PRIMARY KEY,
            event_id TEXT NOT NULL UNIQUE,
            participant_id TEXT NOT NULL REFERENCES participants(id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            record_key TEXT NOT NULL,
            day TEXT,
            payload TEXT NOT NULL,
            received_at TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX idx_events_participant ON events(participant_id, kind)")
    db.execute("CREATE INDEX idx_events_record ON events(kind, participant_id, record_key, n)")
    # token_hash lets a repeated withdrawal request (the first reply was lost) be answered "confirmed".
    db.execute(
        """
        CREATE TABLE tombstones (
            participant_id TEXT PRIMARY KEY,
            token_hash TEXT NOT NULL UNIQUE,
            withdrawn_at TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE export_log (
            id TEXT PRIMARY KEY,
            researcher TEXT NOT NULL,
            via TEXT NOT NULL,
            format TEXT NOT NULL,
            record_types TEXT NOT NULL,
            rows INTEGER NOT NULL,
            destination TEXT,
            exported_at TEXT NOT NULL
        )
        """
    )


@migrations()
def m002_rejections(db: Database) -> None:
    # Rejected uploads, counted per participant, event kind and reason (the researchers' upload health).
    # Only the kind and the server's reason are kept, never the event; a reason may quote up to 60 characters
    # of the offending value (contract.show). Deleted with the participant at withdrawal.
    db.execute(
        """
        CREATE TABLE rejections (
            participant_id TEXT NOT NULL REFERENCES participants(id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            reason TEXT NOT NULL,
            events INTEGER NOT NULL,
            first_at TEXT NOT NULL,
            last_at TEXT NOT NULL,
            PRIMARY KEY (participant_id, kind, reason)
        )
        """
    )


@migrations()
def m003_gateway(db: Database) -> None:
    # The model gateway (studyapp/server/gateway.py). gateway_models holds what `studyapp-server models add`
    # configured: where the upstream is and the NAME of the environment variable or the PATH of the file holding
    # its API key, never the key itself.
    db.execute(
        """
        CREATE TABLE gateway_models (
            name TEXT PRIMARY KEY,
            base_url TEXT NOT NULL,
            upstream_model TEXT NOT NULL,
            api_key_env TEXT,
            api_key_file TEXT,
            added_at TEXT NOT NULL
        )
        """
    )
    # At most one row (id 1): the budgets `studyapp-server models limits` set; no row means the defaults.
    db.execute(
        """
        CREATE TABLE gateway_limits (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            daily_tokens INTEGER NOT NULL,
            requests_per_minute INTEGER NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
    )
    # Counts and timings only, per participant, UTC day, role and model: never a prompt or an answer.
    # estimated counts the requests whose tokens were estimated from the text length (no usage from the upstream).
    # Deleted with the participant at withdrawal.
    db.execute(
        """
        CREATE TABLE gateway_usage (
            participant_id TEXT NOT NULL REFERENCES participants(id) ON DELETE CASCADE,
            day TEXT NOT NULL,
            role TEXT NOT NULL,
            model TEXT NOT NULL,
            requests INTEGER NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            errors INTEGER NOT NULL,
            estimated INTEGER NOT NULL,
            latency_ms_total INTEGER NOT NULL,
            latency_ms_max INTEGER NOT NULL,
            PRIMARY KEY (participant_id, day, role, model)
        )
        """
    )
    # The request-rate window of each participant: the current UTC minute and the requests admitted in it. In the
    # database, not in a process, so that every worker of `serve --workers N` counts against the same limit.
    db.execute(
        """
        CREATE TABLE gateway_rate (
            participant_id TEXT PRIMARY KEY REFERENCES participants(id) ON DELETE CASCADE,
            minute TEXT NOT NULL,
            requests INTEGER NOT NULL
        )
        """
    )


@migrations()
def m004_conditions(db: Database) -> None:
    # Randomized conditions (protocol [conditions]). The participant's condition, and the block and position of
    # the allocation that gave it (blocks and positions count from 1); empty for a study without conditions and
    # for participants enrolled before it had them. Deleted with the participant at withdrawal.
    db.execute("ALTER TABLE participants ADD COLUMN condition TEXT")
    db.execute("ALTER TABLE participants ADD COLUMN condition_block INTEGER")
    db.execute("ALTER TABLE participants ADD COLUMN condition_position INTEGER")
    # At most one row (id 1): the seed every block's order is drawn from (studyapp.study.conditions.block_order),
    # made at `studyapp-server init` or given with --seed.
    db.execute(
        """
        CREATE TABLE allocation (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            seed INTEGER NOT NULL,
            created_at TEXT NOT NULL
        )
        """
    )
    # Every allocation made, in order: the audit trail of the randomization. No participant id: a withdrawal
    # leaves the allocation (and the balance of its block) as it was, without a link to the person.
    db.execute(
        """
        CREATE TABLE allocation_slots (
            block INTEGER NOT NULL,
            position INTEGER NOT NULL,
            block_size INTEGER NOT NULL,
            conditions TEXT NOT NULL,
            condition TEXT NOT NULL,
            assigned_at TEXT NOT NULL,
            PRIMARY KEY (block, position)
        )
        """
    )
