"""Small helpers shared by the store modules."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlite_utils import Database


def new_id() -> str:
    """A random id: never derived from a person."""
    return str(uuid.uuid4())


def now() -> str:
    """UTC ISO-8601 with microseconds, so ordering by the string orders by time."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def loads(text: str | None, default: Any = None) -> Any:
    if text is None:
        return default
    return json.loads(text)


@contextmanager
def atomic(db: Database) -> Iterator[None]:
    """One transaction, or a savepoint inside the caller's: commit (or release) on success, roll back on error.

    Every write of the stores goes through this. ``with db.conn:`` is not a transaction here: sqlite-utils
    commits each write statement by itself when no transaction is open, so the writes in such a block were
    never all-or-nothing, and it would also commit a caller's transaction that meant to keep going.
    """
    conn = db.conn
    if conn.in_transaction:
        name = f"atomic_{uuid.uuid4().hex}"
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            conn.execute(f"ROLLBACK TO {name}")
            conn.execute(f"RELEASE {name}")
            raise
        conn.execute(f"RELEASE {name}")
    else:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
