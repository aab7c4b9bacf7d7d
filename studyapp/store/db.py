"""Opening the participant's database: checks, pragmas and migrations.

A file that is not ours (not SQLite, corrupt, or another program's database) is never touched:
we raise an error naming the path and what to do, and leave the file as it is.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlite_utils import Database

from studyapp.migrations.client import migrations
from studyapp.private_files import create_private_file

BUSY_TIMEOUT_MS = 5000


class UnusableDatabase(RuntimeError):
    """The participant's database file cannot be used; the message names the file and says what to do."""

    def __init__(self, path: Path, problem: str, advice: str) -> None:
        self.path = path
        self.problem = problem
        self.advice = advice
        super().__init__(f"{path}: {problem}. {advice}")


def _check_file(path: Path) -> None:
    # stat() only: opening the file with plain I/O and closing it would drop every fcntl lock this process
    # holds on it, so another process could checkpoint and delete the WAL our open connection writes to
    # (sqlite.org/howtocorrupt.html, 2.2). The header is checked through SQLite in open_database.
    if path.is_dir():
        raise UnusableDatabase(path, "is a directory, not a database file", "Choose another --data-dir.")
    # SQLite's unix VFS reports a 1-byte file as empty (an OS X workaround) and would write a database over it;
    # no SQLite database is 1 byte long. Every other size is judged by SQLite's own header check.
    if path.is_file() and path.stat().st_size == 1:
        raise _not_sqlite(path)


def _not_sqlite(path: Path) -> UnusableDatabase:
    return UnusableDatabase(
        path,
        "is not a SQLite database (the file header is wrong)",
        "It was left untouched. Move it aside or pass another --data-dir to start a new database.",
    )


def _is_not_a_database(exc: sqlite3.DatabaseError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_NOTADB


def _is_foreign(db: Database) -> bool:
    tables = set(db.table_names())
    if not tables:
        return False
    if "_sqlite_migrations" not in tables:
        return True
    return not migrations.applied(db)


def _corrupt(path: Path, detail: str) -> UnusableDatabase:
    return UnusableDatabase(path, f"is corrupt (integrity check: {detail})",
                         "It was left untouched. Restore a backup, or move it aside to start a new database.")


def integrity_problem(path: str | Path) -> UnusableDatabase | None:
    """Run SQLite's quick_check on its own read-only connection (safe from a worker thread).

    It reads the whole file (about 0.25 s per 100,000 messages), so the chat app runs it after its first
    frame instead of before.
    """
    path = Path(path)
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            quick = conn.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return _corrupt(path, str(exc))
    return None if quick == "ok" else _corrupt(path, quick)


def open_database(path: str | Path, *, migrate: bool = True, check_integrity: bool = True) -> Database:
    """Open (creating if needed) and migrate the database at ``path``.

    ``check_integrity=False`` leaves the full quick_check to the caller (see ``integrity_problem``);
    the header, a readable schema and the foreign-database check still come first.
    """
    path = Path(path)
    _check_file(path)
    # SQLite would create a missing file 0644 (under umask 022) and give its -wal/-shm that mode too.
    create_private_file(path)
    try:
        # check_same_thread stays on: every worker thread (record pump, review re-scrub, integrity check) opens
        # its own connection, so a connection used from two threads is a bug that should fail loudly.
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        try:
            # The first read checks the header (nothing is written): a file that is not SQLite fails here.
            conn.execute("PRAGMA schema_version").fetchone()
        except sqlite3.DatabaseError as exc:
            conn.close()
            if _is_not_a_database(exc):
                raise _not_sqlite(path) from exc
            raise
        if check_integrity:
            quick = conn.execute("PRAGMA quick_check").fetchone()[0]
            if quick != "ok":
                conn.close()
                raise _corrupt(path, quick)
        db = Database(conn)
        # Checked before any pragma that writes (journal_mode rewrites the header).
        if _is_foreign(db):
            conn.close()
            raise UnusableDatabase(
                path,
                "is a SQLite database of another program (it has tables but no studyapp schema)",
                "It was left untouched. Pass another --data-dir.",
            )
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as exc:
        raise UnusableDatabase(
            path,
            f"cannot be read as a SQLite database ({exc})",
            "It was left untouched. Move it aside or pass another --data-dir.",
        ) from exc
    if migrate:
        migrations.apply(db)
    return db


def database_file(db: Database) -> str | None:
    """The file behind a connection (None for an in-memory database)."""
    row = db.execute("PRAGMA database_list").fetchone()
    return row[2] or None


def schema_version(db: Database) -> str:
    applied = migrations.applied(db)
    return applied[-1].name if applied else "(empty)"


def pending_migrations(db: Database) -> list[str]:
    return [m.name for m in migrations.pending(db)]
