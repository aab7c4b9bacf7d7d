"""What is committed stays committed, even when the database is opened twice in one process.

Closing any descriptor of a file drops every fcntl lock the process holds on it (POSIX), so a plain
``open()``/``close()`` of the database while a connection is open would let another process believe it
is the last connection, checkpoint and delete the WAL the open connection still writes to
(sqlite.org/howtocorrupt.html, 2.2). These tests run the real sequence in real processes.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from studyapp.store.db import UnusableDatabase, open_database
from tests.support.second_open_child import crash_after_a_second_open


def test_commits_survive_kill_9_after_a_second_open_and_another_process_closing(tmp_path: Path) -> None:
    path = tmp_path / "studyapp.db"
    wal_kept = crash_after_a_second_open("client", path)

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        contents = [row[0] for row in conn.execute("SELECT content FROM messages ORDER BY n")]
    finally:
        conn.close()
    assert contents == ["first", "second"], (
        f"the commit after the other process closed is lost (its -wal file was "
        f"{'kept' if wal_kept else 'deleted while still in use'})")
    assert wal_kept


def test_a_one_byte_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    # SQLite reports a 1-byte file as empty and would write a database over it: the header check must not rely on it.
    path = tmp_path / "studyapp.db"
    path.write_bytes(b"x")
    with pytest.raises(UnusableDatabase) as info:
        open_database(path)
    assert str(path) in str(info.value) and "not a SQLite database" in str(info.value)
    assert path.read_bytes() == b"x"


def test_an_empty_file_becomes_a_new_database(tmp_path: Path) -> None:
    path = tmp_path / "studyapp.db"
    path.write_bytes(b"")
    db = open_database(path)
    assert "messages" in db.table_names()
    db.close()
