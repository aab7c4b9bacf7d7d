"""The participant's files are private: created 0700/0600, an older install tightened at start (said once)."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from studyapp.context import AppContext
from studyapp.private_files import create_private_file, loose_paths, tighten
from studyapp.store.conversations import ConversationStore

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def old_install(data_dir: Path) -> sqlite3.Connection:
    """A database as an older studyapp left it: the dir 0755, the database, -wal and -shm 0644.

    The connection returned keeps the WAL in place (another studyapp command beside the app); close it.
    """
    data_dir.mkdir(mode=0o755)
    os.chmod(data_dir, 0o755)
    ctx = AppContext.create(data_dir)
    ConversationStore(ctx.db).create("Garden")
    ctx.close()
    keep = sqlite3.connect(data_dir / "studyapp.db")
    keep.execute("PRAGMA wal_autocheckpoint = 0")
    keep.execute("INSERT INTO settings (key, value) VALUES ('x', '1')")
    keep.commit()
    for name in ("studyapp.db", "studyapp.db-wal", "studyapp.db-shm"):
        os.chmod(data_dir / name, 0o644)
    os.chmod(data_dir, 0o755)
    return keep


def test_a_fresh_data_dir_database_and_wal_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask, whatever the test runner's
    try:
        ctx = AppContext.create(tmp_path / "new" / "data")
        ConversationStore(ctx.db).create("Garden")  # a write: SQLite creates the -wal and -shm
        data_dir = ctx.data_dir
        assert mode(data_dir) == 0o700
        for name in ("studyapp.db", "studyapp.db-wal", "studyapp.db-shm"):
            assert mode(data_dir / name) == 0o600, name
        assert loose_paths(ctx.database_path) == []
        assert ctx.take_notice() is None  # nothing was loose: nothing to say
        ctx.close()
    finally:
        os.umask(old)


def test_an_older_install_is_tightened_at_start_and_said_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    keep = old_install(data_dir)
    ours = [data_dir / name for name in ("studyapp.db", "studyapp.db-wal", "studyapp.db-shm")]
    assert [mode(data_dir), *map(mode, ours)] == [0o755, 0o644, 0o644, 0o644]

    ctx = AppContext.create(data_dir)
    ctx.db  # noqa: B018 - opening is the start
    assert [mode(data_dir), *map(mode, ours)] == [0o700, 0o600, 0o600, 0o600]
    keep.close()
    database = ours[0]
    notice = ctx.take_notice()
    assert notice is not None and "only you can read them now" in notice and str(database) in notice
    assert ctx.take_notice() is None
    ctx.close()

    again = AppContext.create(data_dir)
    again.db  # noqa: B018
    assert again.take_notice() is None  # said once, also across starts
    again.close()


def test_nothing_is_loosened_and_other_files_are_left_alone(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    ctx = AppContext.create(data_dir)
    ctx.db  # noqa: B018
    ctx.close()
    database = data_dir / "studyapp.db"
    os.chmod(database, 0o400)  # stricter than ours: kept
    other = data_dir / "notes.txt"
    other.write_text("mine")
    os.chmod(other, 0o644)
    target = tmp_path / "elsewhere.db-wal"
    target.write_text("")
    os.chmod(target, 0o644)
    (data_dir / "studyapp.db-wal").symlink_to(target)  # a link is not ours to follow
    assert tighten(database) == []
    assert mode(database) == 0o400 and mode(other) == 0o644 and mode(target) == 0o644


def test_a_rollback_journal_gets_the_database_files_mode(tmp_path: Path) -> None:
    # Before the migrations switch to WAL, and in any non-WAL use, SQLite writes a -journal beside the file.
    database = tmp_path / "studyapp.db"
    create_private_file(database)
    conn = sqlite3.connect(database)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("BEGIN")
    conn.execute("INSERT INTO t VALUES (zeroblob(100000))")
    assert mode(tmp_path / "studyapp.db-journal") == 0o600
    conn.rollback()
    conn.close()
