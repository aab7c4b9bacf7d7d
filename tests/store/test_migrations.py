"""The client schema: migrating a blank database, an older one, and refusing files that are not ours."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database

from studyapp.migrations.client import migrations
from studyapp.store.conversations import ConversationStore
from studyapp.store.db import UnusableDatabase, open_database, pending_migrations, schema_version

EXPECTED_TABLES = {
    "conversations", "messages", "attributes", "attribute_events", "attribute_labels", "extraction_runs",
    "selections", "comparisons", "ratings", "relevance_labels", "judge_verdicts", "studies", "consent_events",
    "schedule_decisions", "label_dismissals", "memory_views", "question_asks",
    "outbox", "pseudonyms", "privacy_terms", "settings", "messages_fts", "_sqlite_migrations",
}


def every_migration() -> list[str]:
    """The client's migrations in order, by sqlite-utils' public API: on a blank database all are pending."""
    return [m.name for m in migrations.pending(Database(memory=True))]


def test_blank_database_gets_the_whole_schema(tmp_path: Path) -> None:
    db = open_database(tmp_path / "s.db")
    assert EXPECTED_TABLES <= set(db.table_names())
    assert schema_version(db) == every_migration()[-1]
    assert pending_migrations(db) == []
    columns = {c.name: c.type for c in db["messages"].columns}
    assert columns["n"] == "INTEGER" and db["messages"].pks == ["n"]
    for name in ("id", "conversation_id", "role", "content", "status", "model", "arm", "in_thread", "first_token_ms"):
        assert name in columns
    fks = {(fk.column, fk.other_table, fk.other_column) for fk in db["messages"].foreign_keys}
    assert ("conversation_id", "conversations", "id") in fks
    assert "idx_messages_conversation" in {i.name for i in db["messages"].indexes}
    assert {c.name for c in db["attributes"].columns} >= {"text", "reason", "confidence", "status", "origin",
                                                          "evidence"}


def test_blank_database_gets_the_question_asks_table_and_its_trigger(tmp_path: Path) -> None:
    db = open_database(tmp_path / "s.db")
    columns = {c.name: c.type for c in db["question_asks"].columns}
    assert db["question_asks"].pks == ["id"]
    assert {"study_id", "question_id", "question_version", "question_type", "question_when", "asked_at",
            "utc_offset_min", "local_day", "study_day", "period", "period_ends_at", "comparison_id", "message_id",
            "ask_probability", "status", "due_at", "answered_at", "answer_number", "answer_option",
            "answer_text"} <= set(columns)
    assert columns["answer_number"] == "INTEGER" and columns["ask_probability"] == "REAL"
    assert "collect_question_answer" in {t.name for t in db.triggers}
    # The database refuses a status the app never writes.
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        db.execute("INSERT INTO question_asks (id, study_id, question_id, question_version, question_type, "
                   "question_when, asked_at, utc_offset_min, local_day, status) VALUES "
                   "('a', 's', 'q', '1', 'yes_no', 'at_end', '2026-11-03T00:00:00+00:00', 0, '2026-11-03', 'maybe')")


def test_pragmas(tmp_path: Path) -> None:
    db = open_database(tmp_path / "s.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000


def test_reopening_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    open_database(path).close()
    db = open_database(path)
    assert [m.name for m in migrations.applied(db)] == every_migration()


def test_database_at_previous_schema_is_migrated_and_its_messages_become_searchable(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    # Build a database as the previous release left it: everything before the search index.
    conn = sqlite3.connect(path)
    old = Database(conn)
    migrations.apply(old, stop_before="m002_message_search")
    assert "messages_fts" not in old.table_names()
    store = ConversationStore(old)
    conversation = store.create("Before the upgrade")
    store.add_message(conversation.id, "user", "my sourdough starter smells of acetone")
    conn.close()

    db = open_database(path)
    assert "messages_fts" in db.table_names()
    hits = ConversationStore(db).search("sourdough")
    assert [h.message.content for h in hits] == ["my sourdough starter smells of acetone"]
    # New messages are indexed by the triggers.
    ConversationStore(db).add_message(conversation.id, "assistant", "try feeding it more often")
    assert len(ConversationStore(db).search("feeding")) == 1


def test_file_that_is_not_sqlite_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "studyapp.db"
    content = b"these are someone's notes, not a database\n" * 100
    path.write_bytes(content)
    with pytest.raises(UnusableDatabase) as info:
        open_database(path)
    assert str(path) in str(info.value)
    assert "not a SQLite database" in str(info.value)
    assert path.read_bytes() == content


def test_corrupt_sqlite_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "studyapp.db"
    _damage(path)
    before = path.read_bytes()
    with pytest.raises(UnusableDatabase) as info:
        open_database(path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before


def test_database_of_another_program_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "studyapp.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    conn.execute("INSERT INTO invoices (amount) VALUES (12.5)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(UnusableDatabase) as info:
        open_database(path)
    assert "another program" in str(info.value)
    assert path.read_bytes() == before


def test_directory_in_place_of_the_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "studyapp.db"
    path.mkdir()
    with pytest.raises(UnusableDatabase, match="directory"):
        open_database(path)


def test_integrity_problem_names_a_damaged_file_and_passes_a_sound_one(tmp_path: Path) -> None:
    from studyapp.store.db import integrity_problem

    sound = tmp_path / "sound.db"
    open_database(sound).close()
    assert integrity_problem(sound) is None
    damaged = tmp_path / "damaged.db"
    _damage(damaged)
    problem = integrity_problem(damaged)
    assert problem is not None and str(damaged) in str(problem) and "corrupt" in str(problem)


def _damage(path: Path) -> None:
    db = open_database(path)
    store = ConversationStore(db)
    conversation = store.create()
    for i in range(300):
        store.add_message(conversation.id, "user", f"message {i} " + "x" * 200)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    raw = bytearray(path.read_bytes())
    # Overwrite pages in the middle with garbage, keeping the header intact.
    raw[4096 * 3 : 4096 * 7] = b"\xde\xad\xbe\xef" * 4096
    path.write_bytes(bytes(raw))
