"""The collection server's database keeps every commit when it is opened twice in one process and another
process opens and closes it (the client's tests/store/test_crash_durability.py, for Storage)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from studyapp.server.storage import Storage, StorageError
from tests.support.second_open_child import crash_after_a_second_open

pytestmark = pytest.mark.sqlite_only("POSIX file locks of a SQLite file opened twice in one process")


def test_server_commits_survive_kill_9_after_a_second_open_and_another_process_closing(tmp_path: Path) -> None:
    path = tmp_path / "server.db"
    wal_kept = crash_after_a_second_open("server", path)

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = sorted(row[0] for row in conn.execute("SELECT destination FROM export_log"))
    finally:
        conn.close()
    assert rows == ["first", "second"], (
        f"the commit after the other process closed is lost (its -wal file was "
        f"{'kept' if wal_kept else 'deleted while still in use'})")
    assert wal_kept


@pytest.mark.parametrize("content", [b"x", b"my notes", b"these are notes\n" * 200])
def test_storage_refuses_a_file_that_is_not_sqlite_and_leaves_it_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "server.db"
    path.write_bytes(content)
    with pytest.raises(StorageError, match="not a SQLite database"):
        Storage(path)
    assert path.read_bytes() == content
